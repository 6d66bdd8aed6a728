"""WER drift of every precision against the PyTorch reference, on one or more speech sets, in one command.

    python -m qasr.benchmarks.drift OUT [--model CHECKPOINT] [--manifest eval.jsonl ...] [--export int8 ...]
        [--keep-float int8:encoder.conv,decoder.layer0 ...] [--work DIR] [--by variant] [--limit N]

For each named export (DRIFT_EXPORTS: fp32, fp16, static INT8 and its per-channel and SmoothQuant
forms, weight-only 8-bit, 4-bit by round-to-nearest, HQQ and GPTQ), the export is made once under
--work (reused when there), then each manifest is transcribed by the reference and every export in
one run (the WER benchmark's code: same normalisation, same decoding) and the change in WER (with its
95% paired-bootstrap interval) and the share of identical transcripts are compared with the project's
drift goals. Defaults: the shipped test model and its two held-out splits (unseen variants, unseen
accents). `--keep-float NAME:GROUPS` adds a mixed-precision form of export NAME: the same settings with
these groups (qasr.quantize.groups; chosen with `python -m qasr.benchmarks.sensitivity --choose`) kept
float besides the mode's defaults, named NAME-float-GROUP-..., judged by NAME's goal. Writes
OUT/drift.md and OUT/drift-<manifest>.json (<folder>-<manifest> where two sets share a file name) and
prints the tables.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from qasr.benchmarks.machine import cpu_description
from qasr.runtime.cli_support import Progress, handle_errors
from qasr.errors import QasrError

STATIC = {"precision": "int8"}
DRIFT_EXPORTS = {
    "fp32": {"precision": "fp32"},
    "fp16": {"precision": "fp16", "device": "cuda"},   # refused for --device cpu (slower than fp32 there)
    "int8": STATIC,
    "int8-per-channel": {**STATIC, "int8": {"weights": "per-channel"}},
    "int8-sq": {**STATIC, "int8": {"smooth_alpha": 0.5}},
    "int8-wo": {**STATIC, "int8": {"mode": "weight-only", "weight_bits": 8}},
    "int4-wo": {**STATIC, "int8": {"mode": "weight-only", "weight_bits": 4}},
    "int4-wo-hqq": {**STATIC, "int8": {"mode": "weight-only", "weight_bits": 4, "weight_algorithm": "hqq"}},
    "int4-wo-gptq": {**STATIC, "int8": {"mode": "weight-only", "weight_bits": 4, "weight_algorithm": "gptq"}},
    "int4-wo-awq": {**STATIC, "int8": {"mode": "weight-only", "weight_bits": 4, "weight_algorithm": "awq"}},
    # asr-export's CPU forms (--device cpu, the default): fused decoder, accuracy level 4, 4/8-bit lm_head + embedding
    "int4-cpu": {"precision": "int4", "attention": "gqa"},
    "int8-wo-cpu": {"precision": "int8", "attention": "gqa", "int8": {"mode": "weight-only", "weight_bits": 8}},
}
# the goals: |WER change| against the reference, in percentage points
GOALS = {"int4-cpu": 0.3, "int8-wo-cpu": 0.1, "fp16": 0.2, "int8": 0.5, "int8-per-channel": 0.5, "int8-sq": 0.5, "int8-wo": 0.1, "int4-wo": 0.5,
         "int4-wo-hqq": 0.5, "int4-wo-gptq": 0.5, "int4-wo-awq": 0.5}


def mixed_exports(specs: tuple[str, ...]) -> tuple[dict[str, dict], dict[str, float]]:
    """({name: export fields}, {name: goal}) for each --keep-float NAME:GROUP,GROUP, judged by NAME's goal
    (the spec is checked here; the group names by the export)."""
    from qasr.quantize.api import Int8Settings

    table, goals = {}, {}
    for spec in specs:
        base, _, groups = spec.partition(":")
        chosen = tuple(g for g in groups.split(",") if g)
        if DRIFT_EXPORTS.get(base, {}).get("precision") != "int8" or not chosen:
            raise QasrError(f"--keep-float {spec!r}: give NAME:GROUP[,GROUP...] with NAME one of "
                            f"{', '.join(n for n, f in DRIFT_EXPORTS.items() if f['precision'] == 'int8')}")
        int8 = DRIFT_EXPORTS[base].get("int8", {})
        defaults = Int8Settings(**int8).excluded()
        name = "-".join([base, "float", *chosen])
        table[name] = {**DRIFT_EXPORTS[base], "int8": {**int8, "exclude": defaults + chosen}}
        goals[name] = GOALS[base]
    return table, goals


def drift_table(summary: list[dict], names: list[str], goals: dict[str, float] = GOALS) -> str:
    from qasr.reference.wer import format_interval

    lines = ["| export | WER % | WER change pp | 95% interval pp | identical % | goal (abs. pp) | met |",
             "|---|---|---|---|---|---|---|"]
    for row, name in zip(summary, ["reference"] + names):
        goal = goals.get(name)
        met = "" if goal is None else ("yes" if abs(row["wer_change_pp"]) <= goal + 1e-9 else "**no**")
        lines.append(f"| {name} | {row['wer']:.2f} | {row['wer_change_pp']:+.2f} | "
                     f"{format_interval(row['wer_change_interval_pp'])} | {row['identical_to_first']:.1f} | "
                     f"{'' if goal is None else f'<= {goal}'} | {met} |")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", default=None, help="Checkpoint [default: the shipped test model].")
@click.option("--manifest", "manifests", multiple=True, type=click.Path(path_type=Path),
              help="JSONL speech set; repeatable [default: the shipped held-out splits].")
@click.option("--export", "export_names", multiple=True, type=click.Choice(list(DRIFT_EXPORTS)),
              help="Repeatable [default: all].")
@click.option("--keep-float", "keep_float", multiple=True, metavar="NAME:GROUP,GROUP",
              help="Also a mixed-precision form of export NAME with these groups float; repeatable.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where exports are written and reused [default: OUT/exports].")
@click.option("--by", "by_fields", multiple=True, metavar="FIELD", help="Also WER per group of this field.")
@click.option("--limit", type=click.IntRange(1), default=None, help="First N utterances of each manifest.")
@handle_errors
def main(out, model, manifests, export_names, keep_float, work, by_fields, limit):
    """Export every precision once, then measure each one's WER drift on each speech set."""
    from qasr.assets import ACCENTS_MANIFEST, EVAL_MANIFEST, TEST_MODEL
    from qasr.reference.wer import (INTERVAL, breakdown, check_breakdown_fields, format_breakdown, run_engine,
                                    run_reference, score)
    from qasr.runtime.speech_manifest import read_manifest
    from qasr.runtime.transcribe import TranscribeOptions

    from .suite import export_for

    progress = Progress()
    checkpoint = Path(model or TEST_MODEL)
    if not (checkpoint / "config.json").is_file():
        raise QasrError(f"{checkpoint}: not a checkpoint directory (no config.json)")
    manifests = manifests or (EVAL_MANIFEST, ACCENTS_MANIFEST)
    mixed, mixed_goals = mixed_exports(keep_float)
    goals = {**GOALS, **mixed_goals}
    names = list(export_names or DRIFT_EXPORTS) + list(mixed)
    work = work or out / "exports"
    out.mkdir(parents=True, exist_ok=True)
    sets = {Path(m): read_manifest(Path(m), limit) for m in manifests}  # checked before any export
    for manifest, (utterances, problems) in sets.items():
        check_breakdown_fields(by_fields, utterances, manifest)
        for problem in problems:
            click.echo(f"skipped: {problem}", err=True)
    exports = {name: export_for(checkpoint, checkpoint.name, name, work, progress, {**DRIFT_EXPORTS, **mixed})
               for name in names}
    options = TranscribeOptions(language="English")
    cpu = cpu_description()
    report = [f"# WER drift per precision ({time.strftime('%Y-%m-%d')})", "",
              f"Model: `{checkpoint}`; command: `python -m qasr.benchmarks.drift {' '.join(sys.argv[1:])}`", "",
              f"CPU: {cpu} (static INT8 results depend on its integer kernels)", "",
              f"{INTERVAL}; the goals are judged on the measured change.", ""]
    stems = [m.stem for m in sets]
    for manifest, (utterances, problems) in sets.items():
        label = manifest.stem if stems.count(manifest.stem) == 1 else f"{manifest.parent.name}-{manifest.stem}"
        progress(f"{manifest}: {len(utterances)} utterances, reference and {len(exports)} exports")
        results = [run_reference(str(checkpoint), utterances, options, progress)]
        results += [run_engine(str(path), utterances, options, progress) for path in exports.values()]
        summary, per_utt = score(results, utterances)
        table = drift_table(summary, names, goals)
        report += [f"## {label} ({manifest}; {summary[0]['utterances']} utterances)", "", table, ""]
        groups = {}
        for field in by_fields:
            groups[field] = breakdown(results, utterances, field)
            report += ["```", format_breakdown(groups[field], field, [r.name for r in results]), "```", ""]
        (out / f"drift-{label}.json").write_text(json.dumps(
            {"manifest": str(manifest), "model": str(checkpoint), "date": time.strftime("%Y-%m-%d"), "cpu": cpu,
             "exports": {n: str(p) for n, p in exports.items()}, "systems": summary, "breakdowns": groups,
             "skipped_lines": problems, "utterances": per_utt}, indent=1, ensure_ascii=False))
        click.echo(f"{manifest}:\n{table}")
    (out / "drift.md").write_text("\n".join(report) + "\n")
    click.echo(f"wrote {out / 'drift.md'}")


if __name__ == "__main__":
    main()

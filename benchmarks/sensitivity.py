"""Which layers can INT8 take? Quantize group by group and measure how far each result moves from fp32.

    python -m qasr.benchmarks.sensitivity --engine FP32_EXPORT [--mode static|weight-only]
           [--manifest HELD_OUT.jsonl] [--limit 60] [--rows single|leave-out] [--choose]
           [--int8-weights per-channel] [--smoothquant A]
           [--weight-bits 4 --weight-algorithm hqq --weight-block-size 16]
           [--markdown-out F]

Every row is a real quantized export derived from the fp32 export (qasr.quantize) with the settings given
and run on the speech set; it is measured against the fp32 export itself: the WER change, the share of
identical transcripts and the disagreement (word edits from the fp32 transcripts per 100 of their words:
unlike a WER change, no word got right cancels one got wrong).
- `--rows single`: one group quantized, every other one float (what each group costs alone);
- `--rows leave-out`: everything the settings quantize, but one more group kept float (what each group
  gives back). Both end with the whole-model rows: every group quantized, and the mode's defaults.
- `--choose`: from the defaults, keep in float the group whose leave-out row disagrees least, again from
  there, while each such group lowers the disagreement by at least --min-gain points, up to --max-float
  groups; prints the `--int8-exclude` flags of the result.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import click
import onnx

from qasr.quantize.api import BLOCK_SIZES, WEIGHT_ALGORITHMS, WEIGHT_GRANULARITIES, Int8Settings
from qasr.exportformat import names
from qasr.runtime.cli_support import Progress, handle_errors


def all_groups(fp32_dir: Path) -> list[str]:
    from qasr.quantize.groups import node_groups

    groups = []
    for graph in names.GRAPHS:
        groups += sorted(node_groups(graph, onnx.load(str(fp32_dir / f"{graph}.onnx"), load_external_data=False)))
    return groups


class Sweep:
    """One fp32 export, one speech set, one set of quantization settings: measure any set of float groups."""

    def __init__(self, fp32_dir: Path, manifest: Path, limit: int, settings, progress):
        from qasr.reference.wer import run_engine
        from qasr.runtime.speech_manifest import read_manifest
        from qasr.runtime.transcribe import TranscribeOptions

        self.fp32_dir, self.settings, self.progress = fp32_dir, settings, progress
        self.data = settings.check()   # bad combinations and calibration data: before any work
        self.utterances, _ = read_manifest(manifest, limit)
        self.options = TranscribeOptions(language="English")
        self.base = run_engine(str(fp32_dir), self.utterances, self.options, lambda _: None)
        # weight-only quantizes MatMul weights only: the attention products (two activations) hold none
        self.groups = [g for g in all_groups(fp32_dir)
                       if not (settings.mode == "weight-only" and g.endswith(".attention"))]
        self._tmp = tempfile.TemporaryDirectory(prefix="qasr-sweep-")
        self.count = 0

    def measure(self, label: str, exclude: tuple[str, ...] | None) -> dict:
        """One row: the export with these groups in float (None: the mode's defaults) against fp32."""
        from qasr.quantize.api import derive_int8_export
        from qasr.reference.wer import run_engine, score, transcribed_by_all, word_edits

        self.count += 1
        out = Path(self._tmp.name) / f"v{self.count}"
        settings = replace(self.settings, exclude=exclude)
        derive_int8_export(self.fp32_dir, out, settings, self.data, lambda _: None)
        result = run_engine(str(out), self.utterances, self.options, lambda _: None)
        summary, _ = score([self.base, result], self.utterances)
        keys = transcribed_by_all([self.base, result], self.utterances)
        # the fp32 transcripts stand where the true texts stand in a WER: word edits per 100 of their words
        _, words, (moved,) = word_edits([self.base.hypotheses[k] for k in keys],
                                        [[result.hypotheses[k] for k in keys]])
        row = {"group": label, "excluded": list(settings.excluded()), "wer": summary[1]["wer"],
               "wer_change_pp": summary[1]["wer_change_pp"], "identical": summary[1]["identical_to_first"],
               "disagreement": 100 * sum(moved) / max(sum(words), 1), "fp32_wer": summary[0]["wer"]}
        self.progress(f"[{self.count}] {label}: WER {row['wer']:.2f} ({row['wer_change_pp']:+.2f} pp), "
                      f"{row['identical']:.0f}% identical, disagreement {row['disagreement']:.2f}")
        shutil.rmtree(out, ignore_errors=True)
        return row

    def rows(self, kind: str) -> list[dict]:
        defaults = tuple(self.settings.excluded())
        quantized = [g for g in self.groups if g not in defaults]
        if kind == "single":
            rows = [self.measure(g, tuple(x for x in self.groups if x != g)) for g in quantized]
        else:
            rows = [self.measure(f"{g} float", defaults + (g,)) for g in quantized]
        return rows + [self.measure("(all groups)", ()), self.measure("(defaults)", None)]

    def choose(self, max_float: int, min_gain: float) -> tuple[list[dict], tuple[str, ...]]:
        """Greedy: add the float group that lowers the disagreement most, while it lowers it by min_gain."""
        chosen = tuple(self.settings.excluded())
        current = self.measure("(defaults)", chosen)
        steps = [current]
        for _ in range(max_float):
            left = [g for g in self.groups if g not in chosen]
            if not left:
                break
            trials = [self.measure(f"{' + '.join(chosen[len(self.settings.excluded()):] + (g,))} float",
                                   chosen + (g,)) for g in left]
            best = min(trials, key=lambda r: (r["disagreement"], -r["identical"]))
            if current["disagreement"] - best["disagreement"] < max(min_gain, 1e-9):
                self.progress(f"stop: the best next group lowers the disagreement by "
                              f"{current['disagreement'] - best['disagreement']:.2f} < {min_gain}")
                break
            chosen, current = tuple(best["excluded"]), best
            steps.append(best)
        return steps, chosen


def describe(settings) -> str:
    if settings.mode == "static":
        extra = f", {settings.weights} weights" + (f", SmoothQuant {settings.smooth_alpha}"
                                                   if settings.smooth_alpha is not None else "")
        return f"INT8 static ({settings.method} calibration{extra})"
    return f"{settings.weight_bits}-bit weight-only ({settings.weight_algorithm}, blocks of {settings.block_size})"


def format_markdown(rows: list[dict], title: str, count: int, sort: bool = True) -> str:
    lines = [f"Sensitivity sweep, {title}, {count} utterances; fp32 WER {rows[0]['fp32_wer']:.2f} %", "",
             "| row | WER % | change vs fp32 (pp) | identical to fp32 | disagreement (words per 100) |",
             "|---|---|---|---|---|"]
    if sort:
        rows = sorted(rows, key=lambda r: (r["group"].startswith("("), -r["disagreement"], r["identical"]))
    for r in rows:
        lines.append(f"| {r['group']} | {r['wer']:.2f} | {r['wer_change_pp']:+.2f} | {r['identical']:.0f} % | "
                     f"{r['disagreement']:.2f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--engine", "fp32_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An fp32 export directory.")
@click.option("--manifest", type=click.Path(path_type=Path), default=None,
              help="Held-out speech (JSONL) [default: the shipped held-out split].")
@click.option("--limit", type=click.IntRange(1), default=60, show_default=True)
@click.option("--mode", type=click.Choice(["static", "weight-only"]), default="static", show_default=True)
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax", show_default=True)
@click.option("--int8-weights", "weights", type=click.Choice(WEIGHT_GRANULARITIES), default="per-tensor",
              show_default=True, help="Static mode: MatMul weight scales.")
@click.option("--smoothquant", "smooth_alpha", type=click.FloatRange(0, 1), default=None,
              help="Static mode: SmoothQuant migration strength.")
@click.option("--weight-bits", type=click.Choice(["8", "4"]), default="8", show_default=True,
              help="Weight-only mode.")
@click.option("--weight-algorithm", type=click.Choice(WEIGHT_ALGORITHMS), default="rtn",
              show_default=True, help="Weight-only mode, 4-bit.")
@click.option("--weight-block-size", type=click.Choice([str(b) for b in BLOCK_SIZES]),
              default=str(Int8Settings.block_size), show_default=True, help="Weight-only mode.")
@click.option("--rows", type=click.Choice(["single", "leave-out"]), default="single", show_default=True,
              help="single: one group quantized alone; leave-out: all quantized but one group.")
@click.option("--choose", is_flag=True, help="Choose the groups to keep float (greedy; see --max-float, --min-gain) "
              "instead of printing the rows.")
@click.option("--max-float", type=click.IntRange(1), default=3, show_default=True)
@click.option("--min-gain", type=click.FloatRange(0), default=0.1, show_default=True,
              help="Disagreement points a chosen group must win.")
@click.option("--markdown-out", type=click.Path(path_type=Path), default=None)
@handle_errors
def main(fp32_dir, manifest, limit, mode, method, weights, smooth_alpha, weight_bits, weight_algorithm,
         weight_block_size, rows, choose, max_float, min_gain, markdown_out):
    """Quantize group by group and print the drift table (or choose the groups to keep float)."""
    from qasr.assets import EVAL_MANIFEST

    settings = Int8Settings(mode=mode, method=method, weights=weights, smooth_alpha=smooth_alpha,
                            weight_bits=int(weight_bits), weight_algorithm=weight_algorithm,
                            block_size=int(weight_block_size))
    sweep = Sweep(fp32_dir, manifest or EVAL_MANIFEST, limit, settings, Progress())
    title = describe(settings)
    if choose:
        steps, chosen = sweep.choose(max_float, min_gain)
        text = format_markdown(steps, f"{title}, greedy choice of float groups", len(sweep.utterances), sort=False)
        text += "\nchosen: " + (" ".join(f"--int8-exclude {g}" for g in chosen) or "(nothing in float)") + "\n"
    else:
        text = format_markdown(sweep.rows(rows), f"{title}, {rows} rows", len(sweep.utterances))
    click.echo(text)
    if markdown_out:
        markdown_out.write_text(text)


if __name__ == "__main__":
    main()

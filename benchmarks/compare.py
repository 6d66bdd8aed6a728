"""Compare two saved asr-wer reports of one speech set: is B better or worse than A, beyond the luck of the utterances?

    python -m qasr.benchmarks.compare A.json B.json [--system-a NAME] [--system-b NAME] [--json-out X.json]

Each report is asr-wer's `--json-out` (per-utterance transcripts included). By default the first system of each
is compared (the PyTorch reference when the report was made with `--model`): two checkpoints, for example a
fine-tune and its base, or two trainings of the test model. Nothing is transcribed again: the WER of each, the
change, its paired 95% bootstrap interval over utterances (as asr-wer's), the share of identical transcripts
and how many utterances got better or worse. Both reports must cover the same utterances with the same texts;
utterances are matched by their audio path relative to the report's manifest, so a speech set rebuilt in
another folder compares with reports made before.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from qasr.reference.wer import INTERVAL, format_interval, paired_interval, word_edits
from qasr.runtime.cli_support import handle_errors
from qasr.errors import QasrError


def _key(audio: str, manifest: str | None) -> str:
    """An utterance's audio path relative to its report's manifest folder where it lies under it: the same
    speech set rebuilt in another folder (same seed, same files) is still the same set."""
    if manifest:
        try:
            return Path(audio).relative_to(Path(manifest).parent).as_posix()
        except ValueError:
            pass
    return audio


def _transcripts(path: Path, system: str | None) -> tuple[str, dict[str, tuple[str, str]]]:
    """(system name, {audio: (text, transcript)}) for the utterances that system transcribed."""
    try:
        report = json.loads(path.read_text())
        names = [s["system"] for s in report["systems"]]
        name = system if system is not None else names[0] if names else None
        rows = {_key(r["audio"], report.get("manifest")): (r["text"], r[name])
                for r in report["utterances"] if r.get(name) is not None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise QasrError(f"{path}: not an asr-wer --json-out report ({type(e).__name__}: {e})") from None
    if not names:
        raise QasrError(f"{path}: the report has no systems")
    if name not in names:
        raise QasrError(f"{path}: no system {name!r} (it has {', '.join(names)})")
    return name, rows


def compare(a: dict[str, tuple[str, str]], b: dict[str, tuple[str, str]]) -> dict:
    """WER of A and B over their common utterances, B - A in pp with its paired interval, identical share and
    per-utterance counts; both must cover the same utterances with the same texts."""
    if set(a) != set(b):
        raise QasrError(f"the reports cover different utterances ({len(set(a) - set(b))} only in A, "
                        f"{len(set(b) - set(a))} only in B): reports of two speech sets, or utterances one "
                        f"system could not transcribe (asr-wer lists those it skipped)")
    keys = sorted(a)
    if not keys:
        raise QasrError("no utterance was transcribed in both reports")
    changed = [k for k in keys if a[k][0] != b[k][0]]
    if changed:
        raise QasrError(f"{len(changed)} utterances have other texts in the two reports (first: {changed[0]})")
    _, words, (edits_a, edits_b) = word_edits([a[k][0] for k in keys],
                                              [[a[k][1] for k in keys], [b[k][1] for k in keys]])
    wer_a, wer_b = (100 * sum(e) / sum(words) for e in (edits_a, edits_b))
    return {"utterances": len(keys), "words": sum(words), "wer_a": wer_a, "wer_b": wer_b,
            "errors_a": sum(edits_a), "errors_b": sum(edits_b), "wer_change_pp": wer_b - wer_a,
            "wer_change_interval_pp": paired_interval(edits_a, edits_b, words),
            "identical": 100 * sum(a[k][1] == b[k][1] for k in keys) / len(keys),
            "better": sum(eb < ea for ea, eb in zip(edits_a, edits_b)),
            "worse": sum(eb > ea for ea, eb in zip(edits_a, edits_b))}


def format_comparison(result: dict, name_a: str, name_b: str) -> str:
    r = result
    return "\n".join([
        f"{'':<12} {'WER %':>7} {'word errors':>12}",
        f"{'A':<12} {r['wer_a']:>7.2f} {r['errors_a']:>12}   {name_a}",
        f"{'B':<12} {r['wer_b']:>7.2f} {r['errors_b']:>12}   {name_b}",
        f"B - A: {r['wer_change_pp']:+.2f} pp {format_interval(r['wer_change_interval_pp'])} over {r['utterances']} "
        f"utterances ({r['words']} words); identical transcripts {r['identical']:.1f}%; B better on "
        f"{r['better']}, worse on {r['worse']}",
        INTERVAL])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("report_a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("report_b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system-a", default=None, help="System of REPORT_A to compare (default: its first).")
@click.option("--system-b", default=None, help="System of REPORT_B to compare (default: its first).")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
@handle_errors
def main(report_a, report_b, system_a, system_b, json_out):
    """Compare the transcripts of two asr-wer reports of one speech set (B against A)."""
    name_a, a = _transcripts(report_a, system_a)
    name_b, b = _transcripts(report_b, system_b)
    result = compare(a, b)
    click.echo(format_comparison(result, f"{report_a} [{name_a}]", f"{report_b} [{name_b}]"))
    if json_out:
        json_out.write_text(json.dumps({"a": {"report": str(report_a), "system": name_a},
                                        "b": {"report": str(report_b), "system": name_b}, **result}, indent=2))


if __name__ == "__main__":
    main()

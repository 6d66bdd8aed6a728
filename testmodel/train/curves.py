"""Learning curves of a training run, from the `training_log.json` the trainer writes beside the checkpoint.

    python -m testmodel.train.curves CHECKPOINT_DIR [--svg curves.svg] [--table]

A warm-started run's log carries the run it continued (`init`); the curves put both on one time axis
(minutes of training on this machine), so the plot shows the whole recipe. Dependency-free SVG.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from qasr.runtime.cli_support import handle_errors
from qasr.errors import QasrError

SERIES = (("wer", "held-out WER (the run's eval split)", "#4a78b5"),
          ("accents_wer", "held-out WER (unseen accents)", "#c0504d"),
          ("lm_loss", "decoder loss (train)", "#9bbb59"))


def stages(log: dict) -> list[dict]:
    """The runs of a recipe, oldest first, each {name, evals, steps, offset (minutes before it)}."""
    chain = []
    while log:
        chain.append(log)
        log = (log.get("init") or {}).get("log")
    out, offset = [], 0.0
    for i, run in enumerate(reversed(chain)):
        out.append({"name": f"run {i + 1}", "evals": run.get("evals", []), "steps": run.get("steps", []),
                    "offset": offset, "minutes": run.get("finished", {}).get("minutes", 0.0)})
        offset += out[-1]["minutes"]
    return out


def points(runs: list[dict], key: str) -> list[tuple[float, float]]:
    rows = [(run["offset"] + r["minutes"], r[key]) for run in runs
            for r in (run["steps"] if key == "lm_loss" else run["evals"]) if r.get(key) == r.get(key) and key in r]
    return [(m, v * (100 if key != "lm_loss" else 1)) for m, v in rows]


def svg(runs: list[dict]) -> str:
    width, height, left, top, bottom = 760, 360, 60, 30, 50
    total = max(run["offset"] + run["minutes"] for run in runs) or 1.0
    wer_max = min(100.0, max([v for k, _, _ in SERIES[:2] for _, v in points(runs, k)] + [10.0]))
    loss_max = max([v for _, v in points(runs, "lm_loss")] + [1.0])
    x = lambda m: left + (width - left - 20) * m / total  # noqa: E731
    y = lambda v, top_value: top + (height - top - bottom) * (1 - min(v, top_value) / top_value)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><text x="{left}" y="18" font-size="13">Learning curves (left axis: WER %, 0-'
             f'{wer_max:.0f}; decoder loss scaled to 0-{loss_max:.2f})</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 20}" y2="{height - bottom}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        yy = y(wer_max * frac, wer_max)
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{wer_max * frac:.0f}</text>')
        parts.append(f'<text x="{x(total * frac):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                     f'{total * frac:.0f}</text>')
    parts.append(f'<text x="{(width + left) / 2}" y="{height - 12}" text-anchor="middle">minutes of training</text>')
    for run in runs[1:]:
        parts.append(f'<line x1="{x(run["offset"]):.1f}" y1="{top}" x2="{x(run["offset"]):.1f}" '
                     f'y2="{height - bottom}" stroke="#999" stroke-dasharray="4 3"/>'
                     f'<text x="{x(run["offset"]) + 4:.1f}" y="{top + 12}">{run["name"]} (warm start)</text>')
    for i, (key, label, colour) in enumerate(SERIES):
        scale = loss_max if key == "lm_loss" else wer_max
        pts = points(runs, key)
        if pts:
            path = " ".join(f"{x(m):.1f},{y(v, scale):.1f}" for m, v in pts)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{path}"/>')
        parts.append(f'<rect x="{width - 250}" y="{top + 8 + i * 16}" width="12" height="3" fill="{colour}"/>'
                     f'<text x="{width - 232}" y="{top + 13 + i * 16}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def table(runs: list[dict]) -> str:
    lines = ["| run | step | minutes (recipe) | held-out WER % (the run's eval split) | unseen accents WER % |",
             "|---|---|---|---|---|"]
    for run in runs:
        for r in run["evals"]:
            wer, accents = (f"{100 * r[k]:.1f}" if k in r else "-" for k in ("wer", "accents_wer"))
            lines.append(f"| {run['name']} | {r['step']} | {run['offset'] + r['minutes']:.1f} | {wer} | {accents} |")
    return "\n".join(lines)


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--svg", "svg_out", type=click.Path(path_type=Path), default=None, help="Write the curves as SVG.")
@click.option("--table/--no-table", "show_table", default=True, show_default=True, help="Print the evaluations.")
@handle_errors
def main(checkpoint, svg_out, show_table):
    """Learning curves of the run that trained CHECKPOINT (its training_log.json)."""
    path = checkpoint / "training_log.json" if checkpoint.is_dir() else checkpoint
    if not path.is_file():
        raise QasrError(f"{path}: no training log (the trainer writes training_log.json beside the checkpoint)")
    runs = stages(json.loads(path.read_text()))
    if svg_out:
        svg_out.write_text(svg(runs))
        click.echo(f"wrote {svg_out}")
    if show_table:
        click.echo(table(runs))


if __name__ == "__main__":
    main()

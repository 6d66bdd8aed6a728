"""Parity of an export against the PyTorch reference, on the issue's audio lengths, as a table.

    python -m qasr.benchmarks.parity --model CHECKPOINT --engine EXPORT_DIR [--tokens 24]

Prints per-graph errors (max/mean |err| against max |ref|) and greedy token agreement for 0.3 s,
7.3 s, 8.0 s (one attention window) and 25.3 s (three windows and a partial one), unbatched,
batched, and with a forced language, plus the smallest top-2 logit margin of each sequence.
"""

from __future__ import annotations

import platform
import time

import click

from qasr.runtime.cli_support import Progress, handle_errors

LENGTHS = (0.3, 7.3, 8.0, 25.3)


@click.command()
@click.option("--model", required=True, help="Checkpoint (directory or hub id) the export was made from.")
@click.option("--engine", "engine_dir", required=True, help="Export directory.")
@click.option("--tokens", type=click.IntRange(1), default=24, show_default=True)
@handle_errors
def main(model: str, engine_dir: str, tokens: int) -> None:
    from qasr.export.checkpoint import load_checkpoint
    from qasr.reference.model import build_reference
    from qasr.reference.parity import format_report, parity
    from qasr.runtime.engine import Engine

    progress = Progress()
    engine = Engine(engine_dir)
    reference = build_reference(load_checkpoint(model))
    progress("per-graph parity; greedy tokens unbatched, batched, with a forced language")
    errors, checks = parity(reference, engine, LENGTHS, tokens, unbatched=True, forced_language="English")
    click.echo(f"parity of {engine_dir} against {model} ({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
               f"providers {engine.providers})")
    click.echo(format_report(errors, checks))


if __name__ == "__main__":
    main()

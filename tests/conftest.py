"""Shared fixtures: tiny random checkpoints in both layouts, exported once per session, and references."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach for the network

LAYOUTS = ("original", "hf")

# What makes a test slow: fixtures that export, load a reference or an engine. A test marked `fast` may use none.
SLOW_FIXTURES = {"exports", "references", "engines", "fused_export", "fused_engine", "shipped_export", "quantized",
                 "fp32_export", "corpus", "runtime_env", "server", "aligner_exports", "shipped_aligner"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("fast") and (slow := SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))):
            raise pytest.UsageError(f"{item.nodeid} is marked fast but uses {sorted(slow)} (docs/decisions/0023)")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    from qasr.export.tiny import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    return {layout: write_tiny_checkpoint(root / layout, layout=layout, seed=0) for layout in LAYOUTS}


@pytest.fixture(scope="session")
def exports(checkpoints, tmp_path_factory) -> dict[str, Path]:
    from qasr.export.api import ExportSettings, export

    root = tmp_path_factory.mktemp("exports")
    return {layout: export(ExportSettings(model=str(path), out=root / layout)) for layout, path in checkpoints.items()}


@pytest.fixture(scope="session")
def references(checkpoints):
    from qasr.export.checkpoint import load_checkpoint
    from qasr.reference.model import build_reference

    return {layout: build_reference(load_checkpoint(str(path))) for layout, path in checkpoints.items()}


@pytest.fixture(scope="session")
def engines(exports):
    from qasr.runtime.engine import Engine

    return {layout: Engine(path) for layout, path in exports.items()}


@pytest.fixture(scope="session")
def waves():
    """The issue's lengths: 0.3 s (padded to 0.5 s), 7.3 s, exactly one 8 s window, and over 24 s."""
    from qasr.runtime.synthetic_audio import synthetic_speech

    return {s: synthetic_speech(s, seed=i) for i, s in enumerate((0.3, 7.3, 8.0, 25.3))}


@pytest.fixture(scope="session")
def fused_export(checkpoints, tmp_path_factory) -> Path:
    """The original-layout tiny checkpoint with the fused decoder (--attention gqa)."""
    from qasr.export.api import ExportSettings, export

    root = tmp_path_factory.mktemp("fused")
    return export(ExportSettings(model=str(checkpoints["original"]), out=root / "gqa", attention="gqa"))


@pytest.fixture(scope="session")
def fused_engine(fused_export):
    from qasr.runtime.engine import Engine

    return Engine(fused_export)


@pytest.fixture(scope="session")
def shipped_export(tmp_path_factory) -> Path:
    """The shipped trained test model's default export (fp32, standard attention)."""
    from qasr.assets import TEST_MODEL
    from qasr.export.api import ExportSettings, export

    return export(ExportSettings(model=str(TEST_MODEL), out=tmp_path_factory.mktemp("shipped") / "fp32"))


@pytest.fixture(scope="session")
def aligner_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random forced aligners (Qwen3-ForcedAligner's form) in both layouts, the same weights."""
    from qasr.export.tiny import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("aligner-checkpoints")
    return {layout: write_tiny_checkpoint(root / layout, layout, seed=3, aligner=True) for layout in LAYOUTS}


@pytest.fixture(scope="session")
def aligner_exports(aligner_checkpoints, tmp_path_factory) -> dict[str, Path]:
    from qasr.export.api import ExportSettings, export

    root = tmp_path_factory.mktemp("aligner-exports")
    return {layout: export(ExportSettings(model=str(path), out=root / layout))
            for layout, path in aligner_checkpoints.items()}


@pytest.fixture(scope="session")
def shipped_aligner(tmp_path_factory) -> Path:
    """The shipped trained test aligner's fp32 export."""
    from qasr.assets import TEST_ALIGNER
    from qasr.export.api import ExportSettings, export

    return export(ExportSettings(model=str(TEST_ALIGNER), out=tmp_path_factory.mktemp("shipped-aligner") / "fp32"))

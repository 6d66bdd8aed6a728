"""Activation statistics of each exported graph on real audio (ONNX Runtime's calibrators), cached.

`collect(export_dir, data, method)` runs the fp32 export over the calibration set (calibration.record)
and feeds each graph's recorded inputs, one utterance at a time, to onnxruntime.quantization's
calibrator for that graph (min-max, percentile or entropy), so memory stays bounded by one
utterance. The ranges are cached as JSON under the cache directory, keyed by the graph's checksum,
the method and the calibration audio's checksum: a second export with the same inputs reuses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from qasr.exportformat import names
from qasr.runtime.engine import Engine
from qasr.errors import QasrError


from .data import CalibrationSet
from .record import recording_engine, trajectories

# The op types static INT8 quantizes (qasr.quantize.static); calibration records the ranges of their inputs.
QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")

METHODS = ("minmax", "percentile", "entropy")
STATS_VERSION = 2  # 2: only the tensors of the quantized op types are calibrated


def cache_dir() -> Path:
    root = os.environ.get("QASR_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "qasr")
    return Path(root) / "calibration"


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise QasrError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[method]


def cache_key(graph_sha256: str, graph: str, method: str, data_sha256: str, every_step: int) -> str:
    text = json.dumps([STATS_VERSION, graph_sha256, graph, method, data_sha256, every_step])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Feeds:
    """onnxruntime.quantization.CalibrationDataReader over a list of recorded feeds."""

    def __init__(self, feeds):
        self._iter = iter(feeds)

    def get_next(self):
        return next(self._iter, None)


def collect(export_dir: str | Path, data: CalibrationSet, method: str = "minmax", every_step: int = 1,
            progress: Callable[[str], None] = lambda _: None, cache: Path | None = None) -> dict[str, object]:
    """{graph name: onnxruntime.quantization.TensorsData} for every graph of the fp32 export."""
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import load_tensors_data, save_tensors_data

    ort_method = _ort_method(method)
    engine, recorder = recording_engine(export_dir, every_step)
    if engine.manifest.precision != "fp32":
        raise QasrError(f"{export_dir}: calibration runs on an fp32 export, this one is {engine.manifest.precision}")
    cache = cache or cache_dir()
    data_sha = data.checksum()
    files, graphs = engine.manifest.files, engine.manifest.graphs
    graph_sha = {g: "".join(meta.sha256 for name, meta in sorted(files.items()) if name.startswith(graphs[g].file))
                 for g in names.GRAPHS}  # the .onnx file and its external weights
    keys = {g: cache_key(graph_sha[g], g, method, data_sha, every_step) for g in names.GRAPHS}
    paths = {g: cache / f"{g}-{method}-{keys[g]}.json" for g in names.GRAPHS}
    if all(p.is_file() for p in paths.values()):
        progress(f"calibration statistics ({method}) reused from {cache}")
        return {g: load_tensors_data(p) for g, p in paths.items()}
    with tempfile.TemporaryDirectory(prefix="qasr-calib-") as tmp:
        extra = {"max_intermediate_outputs": 64} if method == "minmax" else {}
        # the tensors of the op types static INT8 quantizes, as onnxruntime.quantization.quantize_static does:
        # other tensors are never used, and some (attention masks filled with -1e9) break histogram binning
        calibrators = {g: create_calibrator(str(engine.manifest.graph_path(g)), list(QUANTIZED_OPS),
                                            str(Path(tmp) / f"{g}-augmented.onnx"), ort_method,
                                            use_external_data_format=True, providers=["CPUExecutionProvider"],
                                            extra_options=extra) for g in names.GRAPHS}
        steps = 0
        for i, feeds in enumerate(trajectories(engine, recorder, data), 1):
            for g in names.GRAPHS:
                if method == "minmax":
                    calibrators[g].collect_data(_Feeds(feeds[g]))
                else:  # histogram calibrators stack one call's outputs: decoder steps differ in shape
                    with contextlib.redirect_stdout(io.StringIO()):  # ORT prints a line per call
                        for feed in feeds[g]:
                            calibrators[g].collect_data(_Feeds([feed]))
            steps += len(feeds[names.DECODER])
            if i % 10 == 0 or i == len(data.files):
                progress(f"calibration ({method}): {i}/{len(data.files)} utterances, {steps} decoder runs")
        progress(f"computing {method} ranges")
        ranges = {g: c.compute_data() for g, c in calibrators.items()}
    cache.mkdir(parents=True, exist_ok=True)
    for g, tensors in ranges.items():
        save_tensors_data(tensors, paths[g])
    return ranges

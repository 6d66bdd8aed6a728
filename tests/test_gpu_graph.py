"""The fused decoder as a GPU graph, checked on the CPU: its structure (nodes per layer, no run-time shape
arithmetic, every node runnable by ONNX Runtime's CUDA provider at the export's float type), and the
refusals that keep a CUDA run from being silently wrong or silently on the CPU."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import onnx
import pytest

from qasr.exportformat import names
from qasr.runtime.cuda_support import cuda_problems, graph_cuda_problems
from qasr.errors import QasrError
from qasr.runtime.session import CUDA

CPU = "CPUExecutionProvider"
CUDA_PROVIDERS = [CUDA, CPU]
# Per layer: SkipSimplifiedLayerNormalization x 2 (the first layer's input norm is a plain one), MatMul x 4
# (q/k/v packed, o, gate/up packed, down), the q/k norms (Reshape, Split, SimplifiedLayerNormalization x 2,
# Concat, Reshape), GroupQueryAttention, and SiLU x up (Split, QuickGelu, Mul).
NODES_PER_LAYER = 16
# The rest: embedding with audio placeholders (4), final norm, last-token gather (2), lm_head, next token (2).
NODES_OUTSIDE_LAYERS = 10


@pytest.fixture(scope="module")
def fp16_gqa(checkpoints, tmp_path_factory):
    from qasr.export.api import ExportSettings, export

    return export(ExportSettings(model=str(checkpoints["original"]), out=tmp_path_factory.mktemp("g") / "fp16",
                                 precision="fp16", attention="gqa", device="cuda"))


def _graph(export_dir):
    return onnx.load(str(export_dir / "decoder.onnx"), load_external_data=False).graph


def test_node_count_per_layer(fused_export):
    graph = _graph(fused_export)
    layers = json.loads((fused_export / names.MANIFEST).read_text())["model"]["text"]["layers"]
    per_layer = collections.Counter(n.name.split("/")[0].split(".")[1] for n in graph.node if n.name.startswith("layers."))
    assert set(per_layer.values()) == {NODES_PER_LAYER} and len(per_layer) == layers
    assert len(graph.node) == layers * NODES_PER_LAYER + NODES_OUTSIDE_LAYERS
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["GroupQueryAttention"] == layers and ops["SkipSimplifiedLayerNormalization"] == 2 * layers
    assert ops["SimplifiedLayerNormalization"] == 2 * layers + 1 and ops["MatMul"] == 4 * layers
    for decomposed in ("Pow", "ReduceMean", "Sqrt", "Reciprocal", "Softmax", "Sigmoid"):
        assert decomposed not in ops


def test_no_shape_arithmetic_and_cuda_types(fused_export, fp16_gqa):
    """No Shape/Size and no graph-computed shape input anywhere; fp16 runs whole on CUDA; fp32's attention
    cannot (GroupQueryAttention's CUDA kernels are fp16/bf16 only)."""
    for export_dir in (fused_export, fp16_gqa):
        graph = _graph(export_dir)
        assert not {"Shape", "Size", "ConstantOfShape", "Range"} & {n.op_type for n in graph.node}
        constants = {i.name for i in graph.initializer}
        for node in graph.node:
            if node.op_type in ("Reshape", "Split", "Unsqueeze"):
                assert node.input[1] in constants, node.name
    assert graph_cuda_problems(fp16_gqa / "decoder.onnx") == []
    problems = graph_cuda_problems(fused_export / "decoder.onnx")
    assert problems and all("GroupQueryAttention" in p and "float32" in p for p in problems)


def test_static_check_catches_shape_ops_and_untyped_kernels():
    """The checker itself: a Shape-fed Reshape and an op with no known CUDA kernel are both reported."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["b", 4])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
             helper.make_node("Erf", ["r"], ["y"], name="erf")]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)])
    problems = cuda_problems(graph)
    assert any("shape" in p and "run time" in p for p in problems)
    assert any("'reshape' takes input 1" in p for p in problems)
    assert any("Erf" in p and "no CUDA kernel" in p for p in problems)


def test_fp32_fused_export_is_refused_on_cuda(fused_export):
    from qasr.runtime.engine import Engine

    with pytest.raises(QasrError, match="cannot run on CUDA: GroupQueryAttention .* in float32"):
        Engine(fused_export, providers=CUDA_PROVIDERS)


def test_cuda_asked_without_the_provider_is_an_error(fp16_gqa, exports):
    """Here ONNX Runtime has no CUDA provider: asking for it fails with one line instead of running on the CPU."""
    import onnxruntime

    from qasr.runtime.engine import Engine

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    for export_dir in (fp16_gqa, exports["original"]):
        with pytest.raises(QasrError, match="no CUDAExecutionProvider"):
            Engine(export_dir, providers=CUDA_PROVIDERS)
    wav = fp16_gqa.parent / "a.wav"
    import numpy as np
    import soundfile as sf

    sf.write(wav, np.zeros(8000, dtype=np.float32), 16000)
    tool = os.path.join(os.path.dirname(sys.executable), "asr-transcribe")
    result = subprocess.run([tool, "--engine", str(fp16_gqa), "--device", "cuda", str(wav)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "CUDAExecutionProvider" in result.stderr


def test_gqa_refused_before_export_for_odd_head_dim(tmp_path):
    """head_dim 36 (not a multiple of 8): refused with one line before any graph is written."""
    from qasr.export.api import ExportSettings, export
    from qasr.export.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "odd", text={"head_dim": 36})
    progress = []
    with pytest.raises(QasrError, match="head_dim that is a multiple of 8.*head_dim 36"):
        export(ExportSettings(model=str(checkpoint), out=tmp_path / "out", attention="gqa"), progress.append)
    assert not any("exporting" in p for p in progress) and not (tmp_path / "out").exists()


def test_max_positions_needs_gqa(checkpoints, tmp_path):
    from qasr.export.api import ExportSettings

    with pytest.raises(QasrError, match="--max-positions applies to --attention gqa"):
        ExportSettings(model=str(checkpoints["original"]), out=tmp_path / "x", max_positions=64).check()


def test_weight_only_fused_export_keeps_fp16_activations(checkpoints, tmp_path, waves):
    """Weight-only INT4 with the fused decoder for the GPU (--device cuda): MatMulNBits with fp16 activations,
    no float32 attention anywhere, and the runtime loads it with an fp16 cache."""
    from qasr.export.api import ExportSettings, export
    from qasr.quantize.api import Int8Settings
    from qasr.runtime.engine import Engine

    path = export(ExportSettings(model=str(checkpoints["original"]), out=tmp_path / "w4", precision="int8",
                                 attention="gqa", int8=Int8Settings(mode="weight-only", weight_bits=4), device="cuda"))
    graph = _graph(path)
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["MatMulNBits"] == 4 * json.loads((path / names.MANIFEST).read_text())["model"]["text"]["layers"]
    assert graph_cuda_problems(path / "decoder.onnx") == []
    engine = Engine(path)
    assert engine.dtype.name == "float16"
    assert json.loads((path / names.MANIFEST).read_text())["export"]["quantization"]["activations"].startswith("float16")


@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="needs onnxruntime-gpu and a GPU (scripts/gpu_session.sh); the same moves run on the CPU "
                           "provider in tests/test_cancellation.py")
def test_cancelled_rows_leave_a_cuda_graph_batch(fp16_gqa, waves):
    """On CUDA with graphs: 4 rows replay bucket 4; with 3 cancelled before step 5, the row left moves to the front of
    the device cache and replays bucket 1 with the same tokens as the run nobody cancelled."""
    from qasr.runtime.engine import Engine
    from qasr.runtime.generate import Prompt
    from qasr.runtime.stopping import DecodeOptions

    engine = Engine(fp16_gqa, providers=CUDA_PROVIDERS, cuda_graph=True)
    embeds = engine.encode([engine.features(w) for w in waves.values()])
    prompts = [Prompt(engine.prompts.build(len(e)), e, 30) for e in embeds]
    options = DecodeOptions(max_new_tokens=30, min_new_tokens=30, repetition_max_period=0)
    whole = engine.generate(prompts, options)
    assert engine.generator.last_run["cuda_graph"] is True
    asked = []
    cut = engine.generate(prompts, options,
                          cancelled=lambda: (asked.append(1), [len(asked) > 5 and r < 3 for r in range(4)])[1])
    assert engine.generator.last_run["rows_left"] == 1 and engine.generator.last_run["rows"] == 1
    assert engine.generator.last_run["cuda_graph"] is True
    assert cut[3].tokens == whole[3].tokens

"""CPU exports (asr-export --device cpu, the default): the fused decoder with MatMulNBits at accuracy level 4 and
the lm_head / embedding as one block-quantized table, checked op by op against numpy and end to end on the
shipped trained model; and the refusals that keep a slow kind from being exported for the CPU."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from qasr.exportformat import names
from qasr.errors import QasrError

BIN = os.path.dirname(sys.executable)


def _tied_model(vocab: int, hidden: int, table: np.ndarray):
    """Gather (embedding) and Gemm (tied lm_head) over one table, named as the fused decoder names them."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows"], name="embed_tokens/Gather"),
             helper.make_node("Gemm", ["x", "table"], ["logits"], name="lm_head/Gemm", transB=1)]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, [None]),
                                              helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, hidden])],
                              [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, hidden]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, vocab])],
                              [numpy_helper.from_array(table, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("bits", [4, 8])
def test_one_quantized_table_serves_embedding_and_lm_head(bits):
    """GatherBlockQuantized returns exactly the dequantized rows; MatMulNBits (fp32 compute) gives x @ table^T of
    the same dequantized table; at accuracy level 4 (int8 activations) within 2% of it; the float table is gone."""
    import onnxruntime as ort

    from qasr.quantize.tied_head import dequantize_rows, quantize_rows, quantize_tied_head

    vocab, hidden, block = 300, 64, 32
    rng = np.random.default_rng(bits)
    table = rng.normal(size=(vocab, hidden)).astype(np.float32)
    ids = rng.integers(0, vocab, 17)
    x = rng.normal(size=(3, hidden)).astype(np.float32)
    deq = dequantize_rows(*quantize_rows(table, bits, block), bits)
    assert np.abs(deq - table).max() < (0.2 if bits == 4 else 0.02) * np.abs(table).max()
    for level, tolerance in ((0, 1e-4), (4, 2e-2)):
        model = _tied_model(vocab, hidden, table)
        done = quantize_tied_head(model, bits, block, level, onnx.TensorProto.FLOAT)
        assert done["tied"] and not any(i.name == "table" for i in model.graph.initializer)
        ops = collections.Counter(n.op_type for n in model.graph.node)
        assert ops["GatherBlockQuantized"] == 1 and ops["MatMulNBits"] == 1 and "Gemm" not in ops
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        rows, logits = session.run(None, {"ids": ids, "x": x})
        np.testing.assert_allclose(rows, deq[ids], rtol=0, atol=1e-6)
        expected = x @ deq.T
        assert np.abs(logits - expected).max() <= tolerance * np.abs(expected).max(), level


def test_cpu_int4_export_of_the_shipped_model(tmp_path):
    """--precision int4 for the CPU: the fused decoder, fp32 activations and cache, every MatMulNBits at accuracy
    level 4 (the lm_head too), the embedding read from the lm_head's 4-bit table (no float vocabulary table left),
    recorded in the manifest; and it transcribes the shipped example (unseen voice, 44.1 kHz stereo) right."""
    from qasr.assets import TEST_MODEL
    from qasr.export.api import ExportSettings, export
    from qasr.runtime.engine import Engine
    from qasr.runtime.transcribe import Transcriber

    path = export(ExportSettings(model=str(TEST_MODEL), out=tmp_path / "int4", precision="int4", attention="auto"))
    manifest = json.loads((path / names.MANIFEST).read_text())
    export_info = manifest["export"]
    assert export_info["precision"] == "int4" and export_info["device"] == "cpu" and export_info["attention"] == "gqa"
    assert export_info["quantization"]["accuracy_level"] == 4 and "GatherBlockQuantized" in export_info["quantization"]["lm_head"]
    model = onnx.load(str(path / "decoder.onnx"), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    layers = manifest["model"]["text"]["layers"]
    assert ops["MatMulNBits"] == 4 * layers + 1 and ops["GatherBlockQuantized"] == 1
    assert "Gemm" not in ops and "MatMul" not in ops
    levels = {a.i for n in model.graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "accuracy_level"}
    assert levels == {4}
    table = [manifest["model"]["text"]["vocab_size"], manifest["model"]["text"]["hidden_size"]]
    assert not [i.name for i in model.graph.initializer if list(i.dims) in (table, table[::-1])]
    engine = Engine(path)
    assert engine.dtype.name == "float32"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = Transcriber(engine).transcribe([os.path.join(root, "examples", "call.flac")])[0]
    expected = open(os.path.join(root, "examples", "call.txt")).read().strip()
    assert result.text.lower().strip(" .") == expected.lower().strip(" .")


def test_slow_kinds_are_refused_for_the_cpu(tmp_path):
    """fp16 is slower than fp32 on ONNX Runtime's CPU provider: refused for --device cpu with one line, allowed for
    cuda. --precision int4 is 4-bit weight-only: contradicting options are refused."""
    from qasr.export.api import ExportSettings
    from qasr.quantize.api import Int8Settings

    with pytest.raises(QasrError, match="--precision fp16 is slower than fp32"):
        ExportSettings(model="m", out=tmp_path / "a", precision="fp16").check()
    assert ExportSettings(model="m", out=tmp_path / "a", precision="fp16", device="cuda").check() is None
    with pytest.raises(QasrError, match="--precision int4 is 4-bit weight-only"):
        ExportSettings(model="m", out=tmp_path / "a", precision="int4", int8=Int8Settings(mode="static")).check()
    with pytest.raises(QasrError, match="unknown --device"):
        ExportSettings(model="m", out=tmp_path / "a", device="tpu").check()
    for args, message in ((["--precision", "fp16"], "--precision fp16 is slower than fp32"),
                          (["--precision", "int4", "--weight-bits", "8"], "--precision int4 is 4-bit weight-only"),
                          (["--precision", "int4", "--int8-mode", "static"], "--precision int4 is 4-bit weight-only")):
        result = subprocess.run([os.path.join(BIN, "asr-export"), "--model", "testmodel/test-model",
                                 "--out", str(tmp_path / "x"), *args], capture_output=True, text=True, timeout=120)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and "Traceback" not in result.stderr and len(errors) == 1, result.stderr
        assert message in errors[0]
        assert not (tmp_path / "x").exists()

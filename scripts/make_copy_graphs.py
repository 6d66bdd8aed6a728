"""Make runtime/data/copy_{float32,float16}.onnx: one Identity from a 1-D input to a 1-D output.

The fused decoder's runtime binds both ends to addresses inside its device KV cache to move a row's keys and
values from one place to another on the device (device_cache.DeviceKVCache.copy_rows); ONNX Runtime's Python
API copies only whole tensors. Run once; the files are shipped (tests/test_fused.py checks they are these).
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

DATA = Path(__file__).resolve().parent.parent / "runtime" / "data"
TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}


def copy_graph(dtype: str) -> bytes:
    kind = TYPES[dtype]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], f"copy_{dtype}",
                              [helper.make_tensor_value_info("x", kind, ["n"])],
                              [helper.make_tensor_value_info("y", kind, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="qasr")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main() -> None:
    for dtype in TYPES:
        path = DATA / f"copy_{dtype}.onnx"
        path.write_bytes(copy_graph(dtype))
        print(path, path.stat().st_size, "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

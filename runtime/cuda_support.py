"""What ONNX Runtime's CUDA provider can run, checked on a graph before a session is made.

A node the CUDA provider has no kernel for is placed on the CPU, silently: in the first fused
decoder, fp32 GroupQueryAttention ran on the CPU, never wrote the device KV cache and gave wrong
tokens. So the fused decoder is checked statically here (a CPU can do it) and refused on CUDA with
one line, and its CUDA session is also made with `session.disable_cpu_ep_fallback` (session.py).

CUDA_FLOAT_TYPES lists, per op type we emit with a float input, the float types that the CUDA
kernels of onnxruntime-gpu 1.31.1 are registered for (read off its provider library's kernel
classes, 2026-11-24); ops not listed are type-generic there (Reshape, Gather, Where, Cast, ...).
"""

from __future__ import annotations

from pathlib import Path

FLOAT_TYPES = ("float32", "float16", "bfloat16", "float64")
_ALL = frozenset(FLOAT_TYPES)
CUDA_FLOAT_TYPES: dict[str, frozenset[str]] = {
    "GroupQueryAttention": frozenset({"float16", "bfloat16"}),
    "SimplifiedLayerNormalization": _ALL,
    "SkipSimplifiedLayerNormalization": frozenset({"float32", "float16", "bfloat16"}),
    "QuickGelu": _ALL,
    "MatMul": _ALL,
    "Gemm": _ALL,
    "MatMulNBits": frozenset({"float32", "float16", "bfloat16"}),
    "ArgMax": frozenset({"float32", "float16", "float64"}),
}
TYPE_GENERIC = {"Reshape", "Gather", "Where", "Cast", "Add", "Mul", "Sub", "Div", "Split", "Unsqueeze", "Squeeze",
                "Equal", "Concat", "Transpose", "Identity", "Slice"}
# Ops whose outputs are shapes: ONNX Runtime puts them (and what they feed) on the CPU.
SHAPE_OPS = {"Shape", "Size"}
# Inputs that must be constants for a graph to stay on the GPU (shape-like inputs read on the host).
CONSTANT_INPUTS = {"Reshape": (1,), "Unsqueeze": (1,), "Squeeze": (1,), "Split": (1,), "Expand": (1,), "Tile": (1,),
                   "Slice": (1, 2, 3, 4), "Range": (0, 1, 2), "ConstantOfShape": (0,)}

ONNX_TYPES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64", 7: "int64", 6: "int32", 9: "bool",
               3: "int8", 2: "uint8"}


def tensor_types(graph) -> dict[str, str]:
    """Element type of every tensor, propagated through the nodes (contrib ops have no onnx schema)."""
    types = {v.name: ONNX_TYPES.get(v.type.tensor_type.elem_type, "other") for v in graph.input}
    types.update({i.name: ONNX_TYPES.get(i.data_type, "other") for i in graph.initializer})
    fixed = {"ArgMax": "int64", "ArgMin": "int64", "Equal": "bool", "Less": "bool", "Greater": "bool",
             "Shape": "int64", "Size": "int64", "QuantizeLinear": "int8"}
    for node in graph.node:
        floats = [types[i] for i in node.input if i and types.get(i) in FLOAT_TYPES]
        if node.op_type == "Cast":
            out = ONNX_TYPES.get(next(a.i for a in node.attribute if a.name == "to"), "other")
        elif node.op_type == "DequantizeLinear":
            out = types.get(node.input[1], "float32")
        elif node.op_type in fixed:
            out = fixed[node.op_type]
        else:
            out = floats[0] if floats else (types.get(node.input[0], "other") if node.input else "other")
        for name in node.output:
            if name:
                types[name] = out
    return types


def cuda_problems(graph) -> list[str]:
    """Why ONNX Runtime would not run every node of `graph` (an onnx GraphProto) on CUDA; [] if it would."""
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    types = tensor_types(graph)
    problems = []
    for node in graph.node:
        label = f"{node.op_type} {node.name or node.output[0]!r}"
        if node.op_type in SHAPE_OPS:
            problems.append(f"{label} computes a shape at run time (ONNX Runtime runs it on the CPU)")
            continue
        for index in CONSTANT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                problems.append(f"{label} takes input {index} from the graph, not a constant (read on the CPU)")
        floats = {types[i] for i in node.input if i and types.get(i) in FLOAT_TYPES}
        allowed = CUDA_FLOAT_TYPES.get(node.op_type)
        if allowed is None:
            if node.op_type not in TYPE_GENERIC and floats:
                problems.append(f"{label}: no CUDA kernel known to qasr for this op")
            continue
        for dtype in sorted(floats - allowed):
            problems.append(f"{label} in {dtype}: its CUDA kernel takes {', '.join(sorted(allowed))} only")
    return problems


def graph_cuda_problems(path: Path) -> list[str]:
    import onnx

    return cuda_problems(onnx.load(str(path), load_external_data=False).graph)


def onnxruntime_problem(minimum: str) -> str | None:
    """Why the installed ONNX Runtime is too old for a graph needing `minimum` (e.g. "1.31"), or None."""
    import onnxruntime

    def parts(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())

    if parts(onnxruntime.__version__) < parts(minimum):
        return (f"needs onnxruntime >= {minimum} (the fused decoder's contrib ops); "
                f"this one is {onnxruntime.__version__}")
    return None

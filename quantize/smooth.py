"""SmoothQuant (Xiao et al., 2023) for static W8A8: move activation outliers into the weights.

Per-tensor int8 activations lose the small channels when a few channels are large. For a MatMul
`y = x W` whose input comes from a per-channel scale it does not share (a norm's gamma, or the up
projection whose output multiplies the gate), dividing channel j of x by s_j and multiplying row j
of W by s_j leaves y unchanged and flattens x: s_j = max|x_j|^alpha / max|W_j,:|^(1 - alpha), with
max|x_j| measured on the calibration audio. The float graphs compute the same thing before and after
(tested); only the quantization error changes.

Smoothed here (graph patterns, read off the graphs, not names):
- norm -> MatMuls: Mul by a 1-D gamma, LayerNormalization (scale and bias), SimplifiedLayerNormalization
  and SkipSimplifiedLayerNormalization (its normalised output), when every consumer is a MatMul with
  a constant weight used nowhere else (q/k/v, gate/up, the encoder's fc1, the projector);
- up -> down: a MatMul whose input is `Mul(a, x W_up)`, with W_up's output used only there: the
  columns of W_up are divided (gate x up -> down in the decoder MLP).
The tied lm_head is never touched (its weight is the embedding table too).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from qasr.exportformat import names

NORMS = {"LayerNormalization": (1, 2), "SimplifiedLayerNormalization": (1,), "SkipSimplifiedLayerNormalization": (2,)}


@dataclass
class SmoothGroup:
    activation: str              # the tensor whose channels are smoothed (input of every consumer)
    owner_inputs: list[str]      # initializers divided by s along their last axis (gamma, beta, W_up columns)
    consumers: list[str]         # MatMul weight initializers multiplied by s along axis 0


def smooth_groups(graph) -> list[SmoothGroup]:
    initializers = {i.name: i for i in graph.initializer}
    uses: dict[str, list] = {}
    producer = {}
    for node in graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node
    outputs = {o.name for o in graph.output}

    def private_weight(node) -> bool:  # a MatMul with a constant 2-D weight that nothing else reads
        return (node.op_type == "MatMul" and node.input[1] in initializers and len(initializers[node.input[1]].dims) == 2
                and len(uses[node.input[1]]) == 1)

    def matmul_consumers(tensor: str):
        users = uses.get(tensor, [])
        if tensor in outputs or not users or not all(private_weight(u) and u.input[0] == tensor for u in users):
            return None
        return [u.input[1] for u in users]

    groups = []
    for node in graph.node:
        owner = None
        if node.op_type == "Mul":
            consts = [n for n in node.input if n in initializers and len(initializers[n].dims) == 1]
            if len(consts) == 1 and len(uses[consts[0]]) == 1:
                owner = consts
        elif node.op_type in NORMS:
            owner = [node.input[i] for i in NORMS[node.op_type] if i < len(node.input) and node.input[i]]
            if not all(n in initializers and len(uses[n]) == 1 for n in owner):
                owner = None
        if owner:
            consumers = matmul_consumers(node.output[0])
            if consumers:
                groups.append(SmoothGroup(node.output[0], owner, consumers))
                continue
        if node.op_type == "MatMul" and private_weight(node):  # up -> down: the down projection's input
            mul = producer.get(node.input[0])
            if mul is None or mul.op_type != "Mul" or len(uses[mul.output[0]]) != 1:
                continue
            for side in mul.input:
                up = producer.get(side)
                if up is not None and private_weight(up) and len(uses[side]) == 1 and side not in outputs:
                    groups.append(SmoothGroup(node.input[0], [up.input[1]], [node.input[1]]))
                    break
    return groups


def tensor_session(model_path: Path, tensors: list[str]):
    """An unoptimised CPU session of the graph at `model_path` that also outputs `tensors`."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    present = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in present:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def channel_maxima(model_path: Path, tensors: list[str], feeds: list[dict]) -> dict[str, np.ndarray]:
    """max |x_j| per channel (last axis) of each tensor over every feed, read as extra graph outputs."""
    session = tensor_session(model_path, tensors)
    maxima: dict[str, np.ndarray] = {}
    for feed in feeds:
        values = session.run(tensors, feed)
        for name, value in zip(tensors, values):
            peak = np.abs(value.astype(np.float32)).reshape(-1, value.shape[-1]).max(axis=0)
            maxima[name] = peak if name not in maxima else np.maximum(maxima[name], peak)
    return maxima


def scale_groups(model, groups: list[SmoothGroup], choose: Callable[[SmoothGroup, np.ndarray], np.ndarray | None]) -> None:
    """For each group, s = choose(group, its consumers' weights side by side [K, N]) (None: left as it is):
    the owners divided by s along their last axis, the consumers' rows multiplied by s; the float graph
    computes the same function afterwards."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    arrays = {}

    def array(name):
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(initializers[name]).copy()
        return arrays[name]

    for group in groups:
        s = choose(group, np.concatenate([array(c).astype(np.float32) for c in group.consumers], axis=1))
        if s is None:
            continue
        for name in group.owner_inputs:
            arrays[name] = (array(name) / s).astype(array(name).dtype)
        for name in group.consumers:
            arrays[name] = (array(name) * s[:, None]).astype(array(name).dtype)
    for name, value in arrays.items():
        initializers[name].CopyFrom(numpy_helper.from_array(value, name))


def smooth_graph(src: Path, dst: Path, feeds: list[dict], alpha: float) -> int:
    """Write the smoothed graph of `src` to `dst` (external data beside it); returns the groups smoothed."""
    import onnx

    model = onnx.load(str(src))
    groups = smooth_groups(model.graph)
    if groups:
        maxima = channel_maxima(src, [g.activation for g in groups], feeds)

        def choose(group: SmoothGroup, weights: np.ndarray) -> np.ndarray:
            w_max = np.maximum(np.abs(weights).max(axis=1), 1e-5)
            x_max = np.maximum(maxima[group.activation], 1e-5)
            return np.clip(x_max ** alpha / w_max ** (1 - alpha), 1e-4, 1e4).astype(np.float32)

        scale_groups(model, groups, choose)
    onnx.save(model, str(dst), save_as_external_data=True, location=f"{dst.name}.data")
    return len(groups)


def smooth_export(fp32_dir: Path, out_dir: Path, data, alpha: float,
                  progress: Callable[[str], None] = lambda _: None) -> dict:
    """A complete fp32 export in `out_dir` whose graphs are smoothed on the calibration audio `data`
    (the runtime records every graph's real feeds while the fp32 export transcribes it)."""
    from qasr.calibration.record import recorded_feeds
    from qasr.exportformat import read_manifest, write_manifest

    manifest = read_manifest(fp32_dir)
    feeds = recorded_feeds(fp32_dir, data, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [manifest.graphs[g].file for g in names.GRAPHS]
    for path in fp32_dir.iterdir():
        if path.is_file() and path.name != names.MANIFEST and not any(path.name.startswith(f) for f in files):
            shutil.copy(path, out_dir / path.name)
    counts = {}
    for g, file in zip(names.GRAPHS, files):
        counts[g] = smooth_graph(fp32_dir / file, out_dir / file, feeds[g], alpha)
        progress(f"smoothquant: {g}: {counts[g]} groups smoothed (alpha {alpha})")
    write_manifest(out_dir, manifest)
    return {"alpha": alpha, "groups": counts}

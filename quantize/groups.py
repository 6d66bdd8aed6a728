"""Named groups of quantizable nodes, read from the module scopes torch.onnx records on each node.

A group is what the sensitivity sweep quantizes alone and what `--int8-exclude` keeps in float:
- `<graph>.conv`: the encoder's convolutional front end (conv2d1-3, conv_out);
- `<graph>.layer<i>`: the weight products (Linear) of transformer layer i;
- `<graph>.attention`: the activation x activation products (Q.K^T and P.V, the KV cache included);
- `projector`: both projector linears; `decoder.lm_head`: the (tied) output projection.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict

import onnx

from .static import QUANTIZED_OPS

SCOPES = "pkg.torch.onnx.name_scopes"   # traced graphs: torch.onnx's module scopes
SCOPE = "qasr.scope"                     # built graphs (the fused decoder): the weight's module name


def _scope(node: onnx.NodeProto) -> str:
    for prop in node.metadata_props:
        if prop.key == SCOPE:
            return prop.value
        if prop.key == SCOPES:
            scopes = ast.literal_eval(prop.value)
            return scopes[-2] if len(scopes) >= 2 else ""
    return ""


def node_groups(graph_name: str, model: onnx.ModelProto) -> dict[str, list[str]]:
    """{group: [node names]} over the nodes static INT8 would quantize."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    groups: dict[str, list[str]] = defaultdict(list)
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        scope = _scope(node)
        has_weight = any(i in constants for i in node.input[1:2])
        if not has_weight:
            group = "attention"
        elif node.op_type == "Conv" or scope.startswith("conv"):
            group = "conv"
        elif match := re.match(r"layers\.(\d+)\.", scope):
            group = f"layer{int(match.group(1))}"
        elif scope in ("lm_head", "score") or node.op_type == "Gemm":
            group = "lm_head"
        else:
            group = "other"
        groups[f"{graph_name}.{group}" if graph_name != "projector" else "projector"].append(node.name)
    return dict(groups)


def possible_groups(encoder_layers: int, decoder_layers: int, text_graph: str = "decoder") -> set[str]:
    """Every group name node_groups can give for a model of these sizes: `--int8-exclude` is checked against
    it before any export work (the groups of the graphs themselves are known only once they are written)."""
    names = {"encoder.conv", "encoder.attention", "encoder.other", "projector", f"{text_graph}.attention",
             f"{text_graph}.lm_head", f"{text_graph}.other"}
    names |= {f"encoder.layer{i}" for i in range(encoder_layers)} | {f"{text_graph}.layer{i}" for i in range(decoder_layers)}
    return names


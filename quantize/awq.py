"""AWQ-style 4-bit weights (Lin et al., 2024): activation-aware channel scales, then round to nearest.

Round-to-nearest 4-bit treats every input channel of a weight alike, yet the channels that carry large
activations matter most to the output. AWQ multiplies row j of the weights (input channel j) by s_j
before rounding and divides the input by s_j, so that the salient rows lose less: `y = (x / s) (s W)`
is the same in float, and the division is folded into what produces x. The groups are SmoothQuant's
(smooth.smooth_groups: a norm's gamma or the up projection, feeding MatMuls whose weights nothing else
reads), so the float graph computes the same thing before and after (tested). Per group,
s = mean|x_j|^alpha (normalised so that max(s) * min(s) = 1), with alpha chosen on a grid of 0..1 to
minimise the output error ||X (Q(s W) / s - W)||^2 over the calibration audio's activations X, where Q
is ONNX Runtime's own 4-bit block rounding (the kernel the quantizer then applies); alpha 0 is plain
round to nearest, so the search never chooses worse than it on the recorded activations. The scaled
graph is then quantized by weight_only (rtn). The tied lm_head is never touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .smooth import scale_groups, smooth_groups, tensor_session

ALPHAS = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))
SCALE_RANGE = (1e-2, 1e2)   # s is clipped here: a dead channel (mean |x| ~ 0) must not send a weight row or a
                            # gamma past fp16's range (weight-only with the fused decoder keeps fp16 graphs)
MAX_ROWS = 4096   # activation rows kept per tensor for the search (a seeded sample of all recorded rows)


def fake_quant_4bit(weight: np.ndarray, block_size: int) -> np.ndarray:
    """`weight` [K, N] as ONNX Runtime's symmetric 4-bit MatMulNBits holds it (blocks of `block_size`
    along K per column), dequantized: the same kernel (quantize_matmul_4bits) the quantizer runs."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    k, n = weight.shape
    blocks = -(-k // block_size)
    padded = np.zeros((blocks * block_size, n), np.float32)
    padded[:k] = weight
    packed = np.zeros((n, blocks, block_size // 2), np.uint8)
    zero_points = np.zeros((n, (blocks + 1) // 2), np.uint8)
    scales = np.zeros((n, blocks), np.float32)
    quantize_matmul_4bits(packed, padded, scales, zero_points, block_size, n, blocks * block_size, True)
    values = np.stack([packed & 15, packed >> 4], axis=-1).reshape(n, blocks, block_size).astype(np.float32)
    return ((values - 8) * scales[:, :, None]).reshape(n, blocks * block_size)[:, :k].T


def activation_rows(model_path: Path, tensors: list[str], feeds: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Up to MAX_ROWS rows [R, channels] of each tensor over every feed (read as extra graph outputs): a
    seeded uniform sample when there are more, drawn as the feeds run (each row gets a random key, the
    MAX_ROWS smallest keys stay), so memory stays at MAX_ROWS rows per tensor at any model size."""
    session = tensor_session(model_path, tensors)
    rng = np.random.default_rng(seed)
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for feed in feeds:
        for name, value in zip(tensors, session.run(tensors, feed)):
            rows = value.astype(np.float32).reshape(-1, value.shape[-1])
            keys = rng.random(len(rows))
            if name in kept:
                rows, keys = np.concatenate([kept[name][0], rows]), np.concatenate([kept[name][1], keys])
            if len(rows) > MAX_ROWS:
                keep = np.sort(np.argpartition(keys, MAX_ROWS)[:MAX_ROWS])
                rows, keys = rows[keep], keys[keep]
            kept[name] = (rows, keys)
    return {name: rows for name, (rows, _) in kept.items()}


def channel_scales(mean: np.ndarray, alpha: float) -> np.ndarray:
    """s = mean|x|^alpha, normalised so that max(s) * min(s) = 1, clipped to SCALE_RANGE."""
    s = np.maximum(mean, 1e-8) ** alpha
    return np.clip(s / np.sqrt(s.max() * s.min()), *SCALE_RANGE).astype(np.float32)


def search_scale(x: np.ndarray, weight: np.ndarray, block_size: int) -> tuple[float, np.ndarray, float, float]:
    """(alpha, s, error at alpha, error at alpha 0) for activations x [R, K] and weights [K, N]."""
    mean = np.abs(x).mean(axis=0)
    best = None
    baseline = None
    for alpha in ALPHAS:
        s = channel_scales(mean, alpha)
        error = float(np.square(x @ (fake_quant_4bit(weight * s[:, None], block_size) / s[:, None] - weight)).sum())
        if alpha == 0.0:
            baseline = error
        if best is None or error < best[2]:
            best = (float(alpha), s, error)
    return best[0], best[1], best[2], baseline


def awq_graph(src: Path, dst: Path, feeds: list[dict], block_size: int, progress=lambda _: None) -> list[dict]:
    """Write `src` with AWQ-style scales to `dst` (external data beside it); returns one record per group:
    its activation, the alpha chosen and the output error relative to plain round to nearest (a progress
    line per group: at the 0.6B shape the search is minutes per graph on a CPU)."""
    import onnx

    model = onnx.load(str(src))
    groups = smooth_groups(model.graph)
    records = []
    if groups:
        activations = activation_rows(src, [g.activation for g in groups], feeds)

        def choose(group, weights: np.ndarray) -> np.ndarray | None:
            alpha, s, error, baseline = search_scale(activations[group.activation], weights, block_size)
            records.append({"activation": group.activation, "alpha": alpha,
                            "error_vs_rtn": round(error / baseline, 4) if baseline else 1.0})
            progress(f"awq: {src.stem}: group {len(records)}/{len(groups)} ({group.activation}): alpha {alpha:g}, "
                     f"error {records[-1]['error_vs_rtn']:.2f} of round to nearest")
            return s if alpha > 0.0 else None

        scale_groups(model, groups, choose)
    onnx.save(model, str(dst), save_as_external_data=True, location=f"{dst.name}.data")
    return records

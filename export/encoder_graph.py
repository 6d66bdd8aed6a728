"""Audio encoder graph: conv front end over 100-frame chunks + transformer attending within windows.

Reproduces transformers' Qwen3ASREncoder for any batch of lengths with tensor ops only (no Python
loops over data), so that one ONNX graph serves every input:
- features are cut into chunks of 2*n_window frames (zero padded past each row's length), each run
  through three stride-2 convolutions, `conv_out`, and sinusoidal positions that restart per chunk;
- attention runs within windows of n_window_infer frames (n_window_infer / (2*n_window) chunks),
  with the padding tokens of the last, partial chunk masked out as keys;
- rows come back padded to chunks * tokens_per_chunk; a row's valid tokens are its first
  audio_token_count(length) positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from qasr.exportformat import names

from .graph_spec import GraphSpec, TensorSpec, dtype_name
from .spec import AudioSpec

NEG_INF = -1e9  # finite, so that a window with no valid key stays finite (and is discarded)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2).float())
    scaled = torch.arange(length)[:, None].float() * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


def post_conv_length(lengths: torch.Tensor) -> torch.Tensor:
    for _ in range(3):
        lengths = torch.where(lengths > 0, (lengths - 1) // 2 + 1, torch.zeros_like(lengths))
    return lengths


class EncoderAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        shape = (n, length, self.heads, self.head_dim)
        q = self.q_proj(x).reshape(shape).transpose(1, 2)
        k = self.k_proj(x).reshape(shape).transpose(1, 2)
        v = self.v_proj(x).reshape(shape).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * (self.head_dim ** -0.5) + key_bias
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(n, length, dim)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    def __init__(self, audio: AudioSpec):
        super().__init__()
        self.self_attn = EncoderAttention(audio.d_model, audio.heads)
        self.self_attn_layer_norm = nn.LayerNorm(audio.d_model)
        self.fc1 = nn.Linear(audio.d_model, audio.ffn_dim)
        self.fc2 = nn.Linear(audio.ffn_dim, audio.d_model)
        self.final_layer_norm = nn.LayerNorm(audio.d_model)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), key_bias)
        x = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        if x.dtype == torch.float16:  # the reference clamps fp16 activations the same way
            limit = torch.finfo(torch.float16).max - 1000
            x = torch.clamp(x, min=-limit, max=limit)
        return x


class AudioEncoderGraph(nn.Module):
    def __init__(self, audio: AudioSpec):
        super().__init__()
        self.audio = audio
        c = audio.downsample_hidden_size
        self.conv2d1 = nn.Conv2d(1, c, 3, 2, padding=1)
        self.conv2d2 = nn.Conv2d(c, c, 3, 2, padding=1)
        self.conv2d3 = nn.Conv2d(c, c, 3, 2, padding=1)
        self.conv_out = nn.Linear(c * audio.conv_freq_bins, audio.d_model, bias=False)
        self.layers = nn.ModuleList(EncoderLayer(audio) for _ in range(audio.layers))
        self.ln_post = nn.LayerNorm(audio.d_model)
        self.register_buffer("positions", sinusoids(audio.tokens_per_chunk, audio.d_model), persistent=False)

    def forward(self, input_features: torch.Tensor, feature_lengths: torch.Tensor) -> torch.Tensor:
        a = self.audio
        batch, mels, frames = input_features.shape
        k, t, w = a.chunk_frames, a.tokens_per_chunk, a.chunks_per_window
        chunks = frames // k
        x = input_features.reshape(batch, mels, chunks, k).permute(0, 2, 1, 3).reshape(batch * chunks, 1, mels, k)
        x = F.gelu(self.conv2d1(x))
        x = F.gelu(self.conv2d2(x))
        x = F.gelu(self.conv2d3(x))
        n, channels, freq, steps = x.shape
        x = self.conv_out(x.permute(0, 3, 1, 2).reshape(n, steps, channels * freq))
        x = x + self.positions.to(x.dtype)

        starts = torch.arange(chunks, device=x.device) * k
        chunk_len = torch.clamp(feature_lengths[:, None] - starts[None, :], min=0, max=k)
        valid = torch.arange(t, device=x.device)[None, None, :] < post_conv_length(chunk_len)[:, :, None]

        windows = (chunks + w - 1) // w
        pad = windows * w - chunks
        x = F.pad(x.reshape(batch, chunks, t, a.d_model), (0, 0, 0, 0, 0, pad))
        valid = F.pad(valid, (0, 0, 0, pad))
        x = x.reshape(batch * windows, w * t, a.d_model)
        key_bias = torch.where(valid.reshape(batch * windows, 1, 1, w * t), 0.0, NEG_INF)
        for layer in self.layers:
            x = layer(x, key_bias)
        x = self.ln_post(x)
        return x.reshape(batch, windows * w * t, a.d_model)[:, : chunks * t]


def encoder_graph_spec(audio: AudioSpec, dtype: torch.dtype) -> GraphSpec:
    def example() -> tuple[torch.Tensor, ...]:
        frames = 3 * audio.chunk_frames
        feats = torch.randn(2, audio.num_mel_bins, frames, dtype=dtype)
        return feats, torch.tensor([frames, audio.chunk_frames + 7], dtype=torch.int64)

    dt = dtype_name(dtype)
    return GraphSpec(
        name=names.ENCODER,
        inputs=(
            TensorSpec(names.INPUT_FEATURES, dt, ("batch", audio.num_mel_bins, "frames")),
            TensorSpec(names.FEATURE_LENGTHS, "int64", ("batch",)),
        ),
        outputs=(TensorSpec(names.AUDIO_HIDDEN, dt, ("batch", "audio_tokens", audio.d_model)),),
        example_inputs=example,
    )

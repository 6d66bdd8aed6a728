"""Aligner graph (Qwen3-ForcedAligner): the text model in one pass without a cache, the classification head at
the `<timestamp>` slots only.

The input is the official one: `<|audio_start|>`, the audio placeholders (their embeddings replaced by the
projector's, position by position, as in the ASR decoder), `<|audio_end|>`, then each word followed by two
`<timestamp>` tokens. Attention is causal, as in the reference (Qwen3ASRForTokenClassification keeps the
decoder's mask), so rows may be right padded without a mask: no real position sees a padded one. Positions
are 0..T-1. The head is read at `slot_positions` only (a few rows of [T, 5000]); the graph returns those
scores (float32) and their argmax, the time bin.
"""

from __future__ import annotations

import torch
from torch import nn

from qasr.exportformat import names

from .decoder_graph import NEG_INF, DecoderLayer, RMSNorm, token_inputs
from .graph_spec import GraphSpec, TensorSpec, dtype_name
from .spec import TextSpec


class AlignerGraph(nn.Module):
    def __init__(self, text: TextSpec, audio_token_id: int, classes: int):
        super().__init__()
        self.audio_token_id = audio_token_id
        self.embed_tokens = nn.Embedding(text.vocab_size, text.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(text) for _ in range(text.layers))
        self.norm = RMSNorm(text.hidden_size, text.rms_norm_eps)
        self.score = nn.Linear(text.hidden_size, classes, bias=False)
        exponent = torch.arange(0, text.head_dim, 2, dtype=torch.int64).float() / text.head_dim
        self.register_buffer("inv_freq", 1.0 / (text.rope_theta ** exponent), persistent=False)

    def forward(self, input_ids, audio_embeds, slot_positions):
        x = self.embed_tokens(input_ids)
        x = torch.where((input_ids == self.audio_token_id)[..., None], audio_embeds.to(x.dtype), x)
        steps = input_ids.shape[1]
        positions = torch.arange(steps, device=x.device)
        freqs = positions[:, None].float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)[None, None]           # [1, 1, T, head_dim]
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril()
        bias = torch.where(causal, 0.0, NEG_INF)[None, None, None]      # [1, 1, 1, T, T]
        for layer in self.layers:
            x, _, _ = layer(x, None, None, cos, sin, None, bias)
        index = slot_positions[..., None].expand(-1, -1, x.shape[-1])
        slots = torch.gather(x, 1, index)                               # [B, S, hidden]
        logits = self.score(self.norm(slots)).float()
        return logits, logits.argmax(-1)


def aligner_graph_spec(text: TextSpec, classes: int, dtype: torch.dtype) -> GraphSpec:
    dt = dtype_name(dtype)

    def example() -> tuple[torch.Tensor, ...]:
        batch, steps = 2, 7
        ids = torch.randint(0, text.vocab_size, (batch, steps))
        audio = torch.randn(batch, steps, text.hidden_size, dtype=dtype)
        return ids, audio, torch.tensor([[3, 4, 6], [2, 3, 3]])

    return GraphSpec(
        name=names.ALIGNER,
        inputs=(*token_inputs(text, dt), TensorSpec(names.SLOT_POSITIONS, "int64", ("batch", "slots"))),
        outputs=(TensorSpec(names.SLOT_LOGITS, "float32", ("batch", "slots", classes)),
                 TensorSpec(names.SLOT_BINS, "int64", ("batch", "slots"))),
        example_inputs=example,
    )

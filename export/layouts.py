"""Weight names of both checkpoint layouts, mapped through one table onto the canonical names.

Canonical names are those of transformers' `Qwen3ASRForConditionalGeneration` (the `-hf` layout), so
the PyTorch reference loads a canonical state dict as is. `expected_shapes` says what a checkpoint of
a given spec must hold, so that loading can list every missing, extra or mis-shaped weight.
"""

from __future__ import annotations

from .spec import HF, ORIGINAL, ModelSpec

# (prefix in the checkpoint, canonical prefix); the first matching row wins.
PREFIX_TABLE: dict[str, tuple[tuple[str, str], ...]] = {
    ORIGINAL: (
        ("thinker.audio_tower.proj1.", "model.multi_modal_projector.linear_1."),
        ("thinker.audio_tower.proj2.", "model.multi_modal_projector.linear_2."),
        ("thinker.audio_tower.", "model.audio_tower."),
        ("thinker.model.", "model.language_model."),
        ("thinker.lm_head.", "lm_head."),
    ),
    HF: (
        ("model.audio_tower.", "model.audio_tower."),
        ("model.multi_modal_projector.", "model.multi_modal_projector."),
        ("model.language_model.", "model.language_model."),
        ("lm_head.", "lm_head."),
    ),
}

# An aligner's classification head: canonical `score` (transformers' Qwen3ASRForTokenClassification); the original
# layout stores it where the ASR models keep their LM head.
ALIGNER_HEAD = {ORIGINAL: "thinker.lm_head.", HF: "score."}
SCORE = "score."

# Buffers some exporters of checkpoints leave in; they are recomputed, never read.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "positional_embedding.positional_embedding", "positional_embedding")


def canonical_name(layout: str, name: str, aligner: bool = False) -> str | None:
    if aligner and name.startswith(ALIGNER_HEAD[layout]):
        return SCORE + name[len(ALIGNER_HEAD[layout]):]
    for source, target in PREFIX_TABLE[layout]:
        if name.startswith(source):
            return target + name[len(source):]
    return None


def checkpoint_name(layout: str, canonical: str) -> str:
    """The inverse of canonical_name: how `layout` spells a canonical weight."""
    if canonical.startswith(SCORE):
        return ALIGNER_HEAD[layout] + canonical[len(SCORE):]
    for source, target in PREFIX_TABLE[layout]:
        if canonical.startswith(target):
            return source + canonical[len(target):]
    raise KeyError(canonical)


def _linear(shapes: dict, name: str, out_dim: int, in_dim: int, bias: bool) -> None:
    shapes[f"{name}.weight"] = (out_dim, in_dim)
    if bias:
        shapes[f"{name}.bias"] = (out_dim,)


def _norm(shapes: dict, name: str, dim: int, bias: bool) -> None:
    shapes[f"{name}.weight"] = (dim,)
    if bias:
        shapes[f"{name}.bias"] = (dim,)


def _audio_shapes(spec: ModelSpec, shapes: dict) -> None:
    a = spec.audio
    base = "model.audio_tower"
    c = a.downsample_hidden_size
    shapes[f"{base}.conv2d1.weight"] = (c, 1, 3, 3)
    for conv in ("conv2d2", "conv2d3"):
        shapes[f"{base}.{conv}.weight"] = (c, c, 3, 3)
    for conv in ("conv2d1", "conv2d2", "conv2d3"):
        shapes[f"{base}.{conv}.bias"] = (c,)
    _linear(shapes, f"{base}.conv_out", a.d_model, c * a.conv_freq_bins, bias=False)
    for i in range(a.layers):
        layer = f"{base}.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            _linear(shapes, f"{layer}.self_attn.{proj}", a.d_model, a.d_model, bias=True)
        _norm(shapes, f"{layer}.self_attn_layer_norm", a.d_model, bias=True)
        _linear(shapes, f"{layer}.fc1", a.ffn_dim, a.d_model, bias=True)
        _linear(shapes, f"{layer}.fc2", a.d_model, a.ffn_dim, bias=True)
        _norm(shapes, f"{layer}.final_layer_norm", a.d_model, bias=True)
    _norm(shapes, f"{base}.ln_post", a.d_model, bias=True)
    _linear(shapes, "model.multi_modal_projector.linear_1", a.d_model, a.d_model, bias=True)
    _linear(shapes, "model.multi_modal_projector.linear_2", a.output_dim, a.d_model, bias=True)


def _text_shapes(spec: ModelSpec, shapes: dict) -> None:
    t = spec.text
    base = "model.language_model"
    shapes[f"{base}.embed_tokens.weight"] = (t.vocab_size, t.hidden_size)
    for i in range(t.layers):
        layer = f"{base}.layers.{i}"
        _norm(shapes, f"{layer}.input_layernorm", t.hidden_size, bias=False)
        _linear(shapes, f"{layer}.self_attn.q_proj", t.heads * t.head_dim, t.hidden_size, bias=False)
        _linear(shapes, f"{layer}.self_attn.k_proj", t.kv_heads * t.head_dim, t.hidden_size, bias=False)
        _linear(shapes, f"{layer}.self_attn.v_proj", t.kv_heads * t.head_dim, t.hidden_size, bias=False)
        _linear(shapes, f"{layer}.self_attn.o_proj", t.hidden_size, t.heads * t.head_dim, bias=False)
        _norm(shapes, f"{layer}.self_attn.q_norm", t.head_dim, bias=False)
        _norm(shapes, f"{layer}.self_attn.k_norm", t.head_dim, bias=False)
        _norm(shapes, f"{layer}.post_attention_layernorm", t.hidden_size, bias=False)
        _linear(shapes, f"{layer}.mlp.gate_proj", t.ffn_dim, t.hidden_size, bias=False)
        _linear(shapes, f"{layer}.mlp.up_proj", t.ffn_dim, t.hidden_size, bias=False)
        _linear(shapes, f"{layer}.mlp.down_proj", t.hidden_size, t.ffn_dim, bias=False)
    _norm(shapes, f"{base}.norm", t.hidden_size, bias=False)
    if spec.alignment is not None:
        shapes["score.weight"] = (spec.alignment.classes, t.hidden_size)
    else:
        shapes["lm_head.weight"] = (t.vocab_size, t.hidden_size)


def expected_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every canonical weight a checkpoint of this spec holds, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    _audio_shapes(spec, shapes)
    _text_shapes(spec, shapes)
    return shapes


def optional_weights(spec: ModelSpec) -> set[str]:
    """Weights a checkpoint may leave out: lm_head when tied to the embeddings."""
    return {"lm_head.weight"} if spec.text.tie_word_embeddings and spec.alignment is None else set()

"""The PyTorch reference: transformers' Qwen3ASRForConditionalGeneration built from a loaded checkpoint.

Original-layout checkpoints are mapped onto it through the same name table as the export
(qasr.export.layouts), so the reference and the export read identical weights.
"""

from __future__ import annotations

import numpy as np
import torch

from qasr.export.checkpoint import Checkpoint
from qasr.export.spec import ModelSpec


def hf_config(spec: ModelSpec):
    from transformers import Qwen3ASRConfig

    a, t = spec.audio, spec.text
    audio_config = {
        "model_type": "qwen3_asr_encoder",
        "num_mel_bins": a.num_mel_bins,
        "encoder_layers": a.layers,
        "encoder_attention_heads": a.heads,
        "encoder_ffn_dim": a.ffn_dim,
        "d_model": a.d_model,
        "n_window": a.n_window,
        "n_window_infer": a.n_window_infer,
        "downsample_hidden_size": a.downsample_hidden_size,
        "output_dim": a.output_dim,
        "activation_function": a.activation,
    }
    text_config = {
        "model_type": "qwen3",
        "vocab_size": t.vocab_size,
        "hidden_size": t.hidden_size,
        "intermediate_size": t.ffn_dim,
        "num_hidden_layers": t.layers,
        "num_attention_heads": t.heads,
        "num_key_value_heads": t.kv_heads,
        "head_dim": t.head_dim,
        "rms_norm_eps": t.rms_norm_eps,
        "hidden_act": t.activation,
        "rope_parameters": {"rope_type": "default", "rope_theta": t.rope_theta},
        "tie_word_embeddings": t.tie_word_embeddings,
        "max_position_embeddings": 65536,
    }
    aligner = {}
    if spec.alignment is not None:   # Qwen3ASRForTokenClassification: `num_labels` bins, no bias (its default)
        aligner = {"num_labels": spec.alignment.classes, "timestamp_token_id": spec.alignment.timestamp_token_id,
                   "token_classification_bias": False}
    return Qwen3ASRConfig(
        audio_config=audio_config,
        text_config=text_config,
        audio_token_id=spec.audio_token_id,
        eos_token_id=list(spec.eos_token_ids),
        pad_token_id=spec.pad_id,
        tie_word_embeddings=t.tie_word_embeddings,
        **aligner,
    )


def build_reference(checkpoint: Checkpoint, dtype: torch.dtype = torch.float32):
    """The transformers model with the checkpoint's weights, in eval mode: Qwen3ASRForConditionalGeneration, or
    Qwen3ASRForTokenClassification for a forced aligner."""
    from transformers import Qwen3ASRForConditionalGeneration, Qwen3ASRForTokenClassification

    kind = Qwen3ASRForTokenClassification if checkpoint.spec.alignment else Qwen3ASRForConditionalGeneration
    model = kind(hf_config(checkpoint.spec))
    missing, unexpected = load_weights(model, checkpoint.weights, dtype)
    if missing or unexpected:
        raise RuntimeError(f"reference model does not take the checkpoint: missing {missing}, unexpected {unexpected}")
    return model.to(dtype).eval()


def load_weights(model, weights: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
                 ) -> tuple[list[str], list[str]]:
    """Load canonical checkpoint weights into a transformers Qwen3-ASR model; returns (missing, unexpected)
    names, leaving out what a checkpoint never holds (the computed positional embedding, the tied lm_head)."""
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=False)
    return [k for k in missing if not k.endswith("positional_embedding") and k != "lm_head.weight"], unexpected


def batch_features(features: list[np.ndarray], chunk_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance features, zero padded to a common multiple of the chunk, and their frame mask."""
    longest = max(f.shape[1] for f in features)
    frames = -(-longest // chunk_frames) * chunk_frames
    out = np.zeros((len(features), features[0].shape[0], frames), dtype=np.float32)
    mask = np.zeros((len(features), frames), dtype=np.int64)
    for i, f in enumerate(features):
        out[i, :, : f.shape[1]] = f
        mask[i, : f.shape[1]] = 1
    return torch.from_numpy(out), torch.from_numpy(mask)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, length - len(p):] = torch.tensor(p)
        mask[i, length - len(p):] = 1
    return ids, mask


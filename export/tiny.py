"""Tiny, seeded, random Qwen3-ASR checkpoints in either layout, written offline.

They have the real checkpoints' files and structure (config.json, model.safetensors in bf16, a
byte-level BPE tokenizer as vocab.json + merges.txt + tokenizer_config.json with the same special
tokens, preprocessor_config.json, generation_config.json, chat template), only small. Weights are
random but peaky (large embeddings), so that greedy argmax has clear margins and the transcripts
are varied noise: good for proving that graphs match, useless for accuracy.

    python -m qasr.export.tiny OUT_DIR [--layout original|hf] [--seed N]
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from .layouts import checkpoint_name, expected_shapes
from .spec import ORIGINAL, ModelSpec, read_spec

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
PLAIN_ADDED_TOKENS = ["<asr_text>"]  # an added token that decoding keeps (the real tokenizer does the same)
TIMESTAMP_TOKEN = "<timestamp>"      # the aligner's slot token (a special token of the real vocabulary)
ALIGNER_CLASSES = 5000               # Qwen3-ForcedAligner's bins: 5000 x 80 ms = 400 s
SEGMENT_MS = 80
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = (
    "language English the quick brown fox jumps over the lazy dog while seven small birds sing "
    "one two three four five six seven eight nine ten hundred thousand numbers speech audio model "
    "hello world this is a test of the transcription system please say it again louder and slower"
)

AUDIO = {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 64,
         "d_model": 32, "n_window": 50, "n_window_infer": 800, "downsample_hidden_size": 8, "output_dim": 64,
         "activation_function": "gelu", "max_source_positions": 1500}
TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "hidden_act": "silu", "tie_word_embeddings": True, "max_position_embeddings": 65536}


# Full-size shapes of the real checkpoints (../shared/QWEN3_ASR_FACTS.md), for speed and scale checks with
# random weights; "tiny" is the default used by tests and the demo.
SIZES = {
    "tiny": ({}, {}),
    "0.6b": ({"encoder_layers": 18, "encoder_attention_heads": 14, "encoder_ffn_dim": 3584, "d_model": 896,
              "downsample_hidden_size": 480, "output_dim": 1024},
             {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
              "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936}),
    # Qwen3-ForcedAligner-0.6B: the 1.7B model's audio tower (24 layers, d_model 1024) before the 0.6B text model
    "0.6b-aligner": ({"encoder_layers": 24, "encoder_attention_heads": 16, "encoder_ffn_dim": 4096, "d_model": 1024,
                      "downsample_hidden_size": 480, "output_dim": 1024},
                     {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
                      "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936}),
    "1.7b": ({"encoder_layers": 24, "encoder_attention_heads": 16, "encoder_ffn_dim": 4096, "d_model": 1024,
              "downsample_hidden_size": 480, "output_dim": 2048},
             {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
              "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936}),
}


# What the official processor (qwen-asr's and transformers' Qwen3ASRProcessor) reads from the tokenizer:
# the audio placeholder and its delimiters, declared as the real checkpoints declare them.
AUDIO_TOKENS = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>"}
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def _write_tokenizer(out: Path, texts: list[str], vocab_size: int, aligner: bool = False) -> dict[str, int]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.model.save(str(out))  # vocab.json + merges.txt, the real checkpoints' format
    base = tok.get_vocab_size()
    special = SPECIAL_TOKENS + ([TIMESTAMP_TOKEN] if aligner else [])
    ids = {t: base + i for i, t in enumerate(SPECIAL_TOKENS + PLAIN_ADDED_TOKENS + ([TIMESTAMP_TOKEN] if aligner else []))}
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": t in special} for t, i in ids.items()}
    config = {"tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": added, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "bos_token": None, "unk_token": None, "errors": "replace",
              "model_max_length": 65536, "clean_up_tokenization_spaces": False, "split_special_tokens": False,
              "chat_template": CHAT_TEMPLATE, "extra_special_tokens": AUDIO_TOKENS}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    # the real repositories ship the template as a file too: the official processor reads it from there
    (out / CHAT_TEMPLATE_FILE).write_text(CHAT_TEMPLATE)
    return ids


def aligner_config(config: dict, layout: str, timestamp_token_id: int, classes: int = ALIGNER_CLASSES) -> dict:
    """An ASR checkpoint's config.json made a forced aligner's, as each layout writes it."""
    config = json.loads(json.dumps(config))
    if layout == ORIGINAL:
        fields = {"classify_num": classes, "timestamp_token_id": timestamp_token_id, "timestamp_segment_time": SEGMENT_MS}
        config["thinker_config"].update({"model_type": "qwen3_forced_aligner", **fields})
        config["thinker_config"]["text_config"]["tie_word_embeddings"] = False
        config.update({"architectures": ["Qwen3ForcedAligner"], "timestamp_token_id": timestamp_token_id,
                       "timestamp_segment_time": SEGMENT_MS})
    else:
        config.update({"architectures": ["Qwen3ASRForTokenClassification"], "timestamp_token_id": timestamp_token_id,
                       "id2label": {str(i): f"LABEL_{i}" for i in range(classes)}})
    return config


def _configs(ids: dict[str, int], layout: str, vocab: int, audio_size: dict, text_size: dict) -> dict:
    text = {**TEXT, "vocab_size": vocab, **text_size}
    audio = {**AUDIO, **audio_size}
    tokens = {"audio_token_id": ids["<|audio_pad|>"], "audio_start_token_id": ids["<|audio_start|>"],
              "audio_end_token_id": ids["<|audio_end|>"], "user_token_id": ids["<|im_start|>"]}
    if layout == ORIGINAL:
        text["rope_scaling"] = {"mrope_section": [4, 2, 2], "interleaved": True, "rope_type": "default"}
        thinker = {"model_type": "qwen3_asr_thinker", "audio_config": dict(audio, model_type="qwen3_asr_audio_encoder"),
                   "text_config": dict(text, model_type="qwen3_asr_text"), **tokens}
        return {"architectures": ["Qwen3ASRForConditionalGeneration"], "model_type": "qwen3_asr",
                "support_languages": ["English", "Chinese"], "thinker_config": thinker}
    return {"architectures": ["Qwen3ASRForConditionalGeneration"], "model_type": "qwen3_asr",
            "audio_config": dict(audio, model_type="qwen3_asr_encoder"), "text_config": dict(text, model_type="qwen3"),
            "audio_token_id": tokens["audio_token_id"], "tie_word_embeddings": True,
            "eos_token_id": [ids["<|endoftext|>"], ids["<|im_end|>"]], "pad_token_id": ids["<|im_end|>"]}


def _random_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in sorted(shapes.items()):
        if name == "model.language_model.norm.weight":
            w = torch.randn(shape, generator=gen)  # random signs: the tied lm_head stops echoing the input token
        elif name.endswith(("q_norm.weight", "k_norm.weight")):
            w = 2.5 + 0.5 * torch.randn(shape, generator=gen)  # sharp, position-dependent attention
        elif name.endswith("norm.weight") or name.endswith("layer_norm.weight") or name.endswith("ln_post.weight"):
            w = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith("embed_tokens.weight"):
            w = torch.randn(shape, generator=gen)  # peaky logits through the tied lm_head
        elif name.endswith(".bias"):
            w = 0.05 * torch.randn(shape, generator=gen)
        else:
            fan_in = shape[1] if len(shape) == 2 else int(torch.tensor(shape[1:]).prod())
            w = torch.randn(shape, generator=gen) * (1.5 / fan_in ** 0.5)
        weights[name] = w.to(torch.bfloat16)
    return weights


def write_checkpoint_files(out: str | Path, layout: str, texts: list[str], tokenizer_vocab: int,
                           audio: dict, text: dict, max_audio_seconds: float | None = None,
                           segment_pauses: str | None = None, aligner: bool = False) -> ModelSpec:
    """Everything of a checkpoint but its weights: tokenizer trained on `texts`, configs; returns its spec.
    `max_audio_seconds`: the longest segment the model takes, when it is less than the official 1200 s;
    `segment_pauses`: "split" for a model that takes one utterance per segment (qasr_segment_pauses)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = _write_tokenizer(out, texts, tokenizer_vocab, aligner)
    vocab = text.get("vocab_size") or ((max(ids.values()) + 1 + 63) // 64) * 64
    config = _configs(ids, layout, vocab, audio, text)
    if aligner:
        config = aligner_config(config, layout, ids[TIMESTAMP_TOKEN])
    if max_audio_seconds is not None:
        config["qasr_max_audio_seconds"] = max_audio_seconds
    if segment_pauses is not None:
        config["qasr_segment_pauses"] = segment_pauses
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "pad_token_id": ids["<|endoftext|>"],
         "do_sample": False}, indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128, "sampling_rate": 16000,
         "hop_length": 160, "n_fft": 400, "chunk_length": 30, "padding_value": 0.0, "padding_side": "right",
         "return_attention_mask": True, "dither": 0.0}, indent=2))
    return read_spec(out)


def save_weights(out: str | Path, layout: str, weights: dict[str, torch.Tensor]) -> None:
    """Canonical weights to `model.safetensors` in bf16 under the layout's own names (lm_head left out: tied)."""
    from safetensors.torch import save_file

    tensors = {checkpoint_name(layout, k): v.to(torch.bfloat16).contiguous() for k, v in weights.items()
               if k != "lm_head.weight"}
    save_file(tensors, str(Path(out) / "model.safetensors"))


def write_tiny_checkpoint(out: str | Path, layout: str = ORIGINAL, seed: int = 0, size: str = "tiny",
                          text: dict | None = None, aligner: bool = False) -> Path:
    """A random checkpoint of one of SIZES; `text` overrides text-config fields (e.g. an odd head_dim); `aligner`:
    a forced aligner's (a 5000-bin classification head instead of the LM head)."""
    audio_size, text_size = SIZES[size]
    spec = write_checkpoint_files(out, layout, [CORPUS] * 4, 300, audio_size, {**text_size, **(text or {})},
                                  aligner=aligner or size.endswith("-aligner"))
    shapes = {k: v for k, v in expected_shapes(spec).items() if k != "lm_head.weight"}
    save_weights(out, layout, _random_weights(shapes, seed))
    return Path(out)


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--layout", type=click.Choice(["original", "hf"]), default="original", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--aligner", is_flag=True, help="A forced aligner's checkpoint (Qwen3-ForcedAligner's head and token).")
@click.option("--size", type=click.Choice(list(SIZES)), default="tiny", show_default=True,
              help="tiny, or the full 0.6B / 1.7B shapes (random weights, for speed and scale checks).")
def main(out: str, layout: str, seed: int, size: str, aligner: bool) -> None:
    """Write a random Qwen3-ASR checkpoint to OUT (for tests and demos; it transcribes noise)."""
    path = write_tiny_checkpoint(out, layout, seed, size, aligner=aligner)
    kind = "aligner" if aligner or size.endswith("-aligner") else "checkpoint"
    click.echo(f"wrote a random {size} {layout}-layout {kind} to {path}")


if __name__ == "__main__":
    main()

"""Train the project's small Qwen3-ASR test model on the synthetic corpus (CPU is enough).

    python -m qasr.training.train --corpus CORPUS_DIR --out CHECKPOINT_DIR [--seed 0] [--minutes 90] [--steps N]

The model is transformers' Qwen3ASRForConditionalGeneration (the reference class itself) at a small
size, trained with teacher forcing on the official prompt + `language English<asr_text>{text}<|im_end|>`
(loss on the assistant turn only). It is saved in the original Qwen3-ASR layout (thinker_config,
thinker.* weights in bf16, byte-level BPE tokenizer trained on the training sentences), so everything
that loads Qwen/Qwen3-ASR-0.6B loads it unchanged.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

from qasr.export.layouts import expected_shapes
from qasr.export.reference import hf_config
from qasr.export.spec import ORIGINAL, audio_token_count
from qasr.export.tiny import save_weights, write_checkpoint_files
from qasr.runtime.audio import load_audio
from qasr.runtime.cli_support import Progress, handle_errors
from qasr.runtime.features import FeatureSettings, LogMel
from qasr.runtime.prompt import LANGUAGE_PREFIX, prompt_text

SMALL_AUDIO = {"encoder_layers": 4, "encoder_attention_heads": 4, "encoder_ffn_dim": 768, "d_model": 192,
               "downsample_hidden_size": 64, "output_dim": 256}
SMALL_TEXT = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 64}
TOKENIZER_VOCAB = 1024


@dataclass(frozen=True)
class TrainSettings:
    corpus: Path
    out: Path
    seed: int = 0
    steps: int = 100_000
    minutes: float = 90.0
    batch_frames: int = 12_000    # mel frames per batch (about 120 s of audio)
    lr: float = 1.5e-3
    warmup: int = 300
    language: str = "English"


@dataclass
class Example:
    features: np.ndarray   # [128, frames] float16
    prompt: list[int]
    target: list[int]


def _examples(settings: TrainSettings, tokenizer, spec, progress) -> list[Example]:
    rows = [json.loads(l) for l in (settings.corpus / "train.jsonl").read_text().splitlines() if l.strip()]
    mel = LogMel(FeatureSettings())
    examples = []
    for i, row in enumerate(rows, 1):
        feats = mel(load_audio(settings.corpus / row["audio"], 16000))
        count = audio_token_count(feats.shape[1], spec.audio)
        prompt = tokenizer.encode(prompt_text("<|audio_pad|>", count), add_special_tokens=False)
        target = tokenizer.encode(LANGUAGE_PREFIX.format(language=settings.language) + row["text"] + "<|im_end|>",
                                  add_special_tokens=False)
        examples.append(Example(feats.astype(np.float16), prompt, target))
        if i % 2000 == 0 or i == len(rows):
            progress(f"features: {i}/{len(rows)}")
    return examples


def _batches(examples: list[Example], batch_frames: int, rng: random.Random) -> list[list[Example]]:
    ordered = sorted(examples, key=lambda e: e.features.shape[1])
    batches, batch = [], []
    for example in ordered:
        if batch and (len(batch) + 1) * example.features.shape[1] > batch_frames:
            batches.append(batch)
            batch = []
        batch.append(example)
    if batch:
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def _collate(batch: list[Example], pad_id: int, chunk: int) -> dict[str, torch.Tensor]:
    frames = -(-max(e.features.shape[1] for e in batch) // chunk) * chunk
    feats = torch.zeros(len(batch), 128, frames)
    feat_mask = torch.zeros(len(batch), frames, dtype=torch.long)
    length = max(len(e.prompt) + len(e.target) for e in batch)
    ids = torch.full((len(batch), length), pad_id)
    mask = torch.zeros(len(batch), length, dtype=torch.long)
    labels = torch.full((len(batch), length), -100)
    for i, e in enumerate(batch):
        n = e.features.shape[1]
        feats[i, :, :n] = torch.from_numpy(e.features.astype(np.float32))
        feat_mask[i, :n] = 1
        seq = e.prompt + e.target
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        labels[i, len(e.prompt):len(seq)] = torch.tensor(e.target)
    # transformers shifts labels inside the loss: position t predicts token t+1
    return {"input_ids": ids, "attention_mask": mask, "input_features": feats, "input_features_mask": feat_mask,
            "labels": labels}


def train(settings: TrainSettings, progress=print) -> Path:
    from transformers import AutoTokenizer, Qwen3ASRForConditionalGeneration

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    texts = [json.loads(l)["text"] for l in (settings.corpus / "train.jsonl").read_text().splitlines() if l.strip()]
    spec = write_checkpoint_files(settings.out, ORIGINAL, texts, TOKENIZER_VOCAB, SMALL_AUDIO, SMALL_TEXT)
    tokenizer = AutoTokenizer.from_pretrained(str(settings.out))
    model = Qwen3ASRForConditionalGeneration(hf_config(spec))
    params = sum(p.numel() for p in model.parameters())
    progress(f"model: {params / 1e6:.2f}M parameters")
    examples = _examples(settings, tokenizer, spec, progress)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01, betas=(0.9, 0.98))
    pad_id = spec.pad_token_id if spec.pad_token_id is not None else spec.eos_token_ids[0]
    start, step, losses = time.monotonic(), 0, []
    deadline = start + settings.minutes * 60
    model.train()
    while step < settings.steps and time.monotonic() < deadline:
        for batch in _batches(examples, settings.batch_frames, rng):
            lr = settings.lr * min(1.0, (step + 1) / settings.warmup)
            progress_frac = min(1.0, (time.monotonic() - start) / (deadline - start))
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * progress_frac))
            loss = model(**_collate(batch, pad_id, spec.audio.chunk_frames)).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0:
                progress(f"step {step}: loss {np.mean(losses[-50:]):.3f} ({(time.monotonic() - start) / 60:.1f} min)")
            if step >= settings.steps or time.monotonic() >= deadline:
                break
    shapes = expected_shapes(spec)
    save_weights(settings.out, ORIGINAL, {k: v.detach() for k, v in model.state_dict().items() if k in shapes})
    progress(f"saved {settings.out} after {step} steps, last loss {np.mean(losses[-50:]):.3f}")
    return settings.out


@click.command()
@click.option("--corpus", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--minutes", type=click.FloatRange(0.01), default=90.0, show_default=True)
@handle_errors
def main(corpus, out, seed, steps, minutes):
    """Train the small Qwen3-ASR test model on CORPUS (made by qasr.training.corpus) into OUT."""
    train(TrainSettings(corpus=corpus, out=out, seed=seed, steps=steps, minutes=minutes), Progress())


if __name__ == "__main__":
    main()

"""The test aligner: a Qwen3-ForcedAligner made from the shipped test model the way the real one is made from
Qwen3-ASR (the same audio tower and text model, the LM head replaced by a 5000-bin classification head over
80 ms bins, `<timestamp>` slots after each word), trained on separately spoken words with exact boundaries
(words.py).

    python -m testmodel.train.aligner OUT [--asr testmodel/test-model] [--minutes 45] [--voices 16]

One run, a fixed time budget (docs/decisions/0025-word-timestamps.md): what it reaches ships as
testmodel/test-aligner. The training objective is transformers' own: Qwen3ASRForTokenClassification's
cross entropy at the slot positions (every other position -100); the input is the official one,
`<|audio_start|>` + audio placeholders + `<|audio_end|>` + each word followed by two `<timestamp>` tokens.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path

import click
import numpy as np
import torch

from qasr.export.layouts import IGNORED_SUFFIXES
from qasr.export.spec import audio_token_count, read_spec
from qasr.benchmarks.aligner import boundary_summary
from qasr.export.tiny import TIMESTAMP_TOKEN, aligner_config, save_weights
from qasr.reference.model import hf_config, load_weights
from qasr.runtime.cli_support import Progress, handle_errors
from qasr.runtime.features import FeatureSettings, LogMel

from .corpus import vocabulary
from .words import utterance, voices, word_bank

ROOT = Path(__file__).resolve().parents[1]
TEST_MODEL = ROOT / "test-model"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "chat_template.jinja", "preprocessor_config.json",
                   "generation_config.json")


def aligner_checkpoint_files(asr: Path, out: Path) -> int:
    """The aligner's checkpoint files but its weights: the ASR model's tokenizer with `<timestamp>` added (the
    next id; the embedding table has room), its config made an aligner's. Returns the timestamp token's id."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (asr / name).is_file():
            shutil.copy(asr / name, out / name)
    tokenizer = json.loads((asr / "tokenizer_config.json").read_text())
    added = tokenizer["added_tokens_decoder"]
    token_id = max(int(i) for i in added) + 1
    added[str(token_id)] = {"content": TIMESTAMP_TOKEN, "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "special": True}
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=2))
    config = json.loads((asr / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("qasr_")}
    vocab = config["thinker_config"]["text_config"]["vocab_size"]
    if token_id >= vocab:
        raise click.ClickException(f"{asr}: no embedding row left for {TIMESTAMP_TOKEN} (vocab_size {vocab})")
    (out / "config.json").write_text(json.dumps(aligner_config(config, "original", token_id), indent=2))
    return token_id


class Examples:
    """Utterances of separately spoken words made into the aligner's inputs and labels."""

    def __init__(self, spec, tokenizer, token_id: int):
        self.spec, self.tokenizer, self.token_id = spec, tokenizer, token_id
        self.mel = LogMel(FeatureSettings())
        vocab = tokenizer.get_vocab()
        self.start, self.end = vocab["<|audio_start|>"], vocab["<|audio_end|>"]
        self.bin_seconds = spec.alignment.segment_ms / 1000.0

    def make(self, audio: np.ndarray, truth: list[dict]) -> dict:
        features = self.mel(audio)
        tokens = audio_token_count(features.shape[1], self.spec.audio)
        text = "".join(t["word"] + TIMESTAMP_TOKEN * 2 for t in truth)
        ids = [self.start] + [self.spec.audio_token_id] * tokens + [self.end] + \
            self.tokenizer(text, add_special_tokens=False)["input_ids"]
        slots = [i for i, t in enumerate(ids) if t == self.token_id]
        times = [x for t in truth for x in (t["start"], t["end"])]
        bins = [min(self.spec.alignment.classes - 1, round(x / self.bin_seconds)) for x in times]
        assert len(slots) == len(bins), (len(slots), len(bins))
        return {"features": features, "ids": ids, "slots": slots, "bins": bins, "times": times}

    def batch(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        chunk = self.spec.audio.chunk_frames
        frames = -(-max(e["features"].shape[1] for e in examples) // chunk) * chunk
        length = max(len(e["ids"]) for e in examples)
        feats = torch.zeros(len(examples), self.spec.audio.num_mel_bins, frames)
        feat_mask = torch.zeros(len(examples), frames, dtype=torch.long)
        ids = torch.full((len(examples), length), self.spec.pad_id)
        mask = torch.zeros(len(examples), length, dtype=torch.long)
        labels = torch.full((len(examples), length), -100)
        for i, e in enumerate(examples):
            n = e["features"].shape[1]
            feats[i, :, :n] = torch.from_numpy(e["features"])
            feat_mask[i, :n] = 1
            ids[i, :len(e["ids"])] = torch.tensor(e["ids"])
            mask[i, :len(e["ids"])] = 1
            labels[i, e["slots"]] = torch.tensor(e["bins"])
        return {"input_ids": ids, "attention_mask": mask, "input_features": feats, "input_features_mask": feat_mask,
                "labels": labels}


def boundary_errors(model, examples: list[dict], batcher: Examples) -> np.ndarray:
    """|predicted - true| in seconds over every boundary of `examples` (the raw argmax, no monotonic fix)."""
    errors = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), 8):
            part = examples[i:i + 8]
            batch = batcher.batch(part)
            batch.pop("labels")
            logits = model(**batch).logits
            for row, e in enumerate(part):
                bins = logits[row, e["slots"]].argmax(-1).numpy()
                errors.extend(np.abs(bins * batcher.bin_seconds - np.array(e["times"])))
    model.train()
    return np.array(errors)


def train(out: Path, asr: Path, minutes: float, voice_count: int, batch_size: int, lr: float, seed: int,
          progress) -> dict:
    from transformers import AutoTokenizer, Qwen3ASRForTokenClassification

    from qasr.export.checkpoint import load_checkpoint

    torch.manual_seed(seed)
    rng = random.Random(seed)
    token_id = aligner_checkpoint_files(asr, out)
    spec = read_spec(out)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = Qwen3ASRForTokenClassification(hf_config(spec))
    weights = {k: v for k, v in load_checkpoint(str(asr)).weights.items() if k != "lm_head.weight"}
    missing, unexpected = load_weights(model, weights)
    if missing != ["score.weight"] or unexpected:
        raise click.ClickException(f"{asr} does not fit the aligner: missing {missing}, unexpected {unexpected}")
    torch.nn.init.normal_(model.score.weight, std=spec.text.hidden_size ** -0.5)
    batcher = Examples(spec, tokenizer, token_id)

    words = vocabulary()
    progress(f"speaking {len(words)} words with {voice_count} training voices and 6 held-out ones")
    bank = word_bank(voices(voice_count, seed, held_out=False), words, progress=progress)
    held_bank = word_bank(voices(6, seed + 1, held_out=True), rng.sample(words, 300), progress=progress)
    held_rng = random.Random(seed + 2)
    held = [batcher.make(*utterance(held_bank, held_rng)) for _ in range(64)]

    head = [model.score.weight]
    body = [p for n, p in model.named_parameters() if n != "score.weight"]
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": lr * 5}], weight_decay=0.01)
    base = [g["lr"] for g in optimizer.param_groups]
    log, step, start = [], 0, time.monotonic()
    budget = minutes * 60
    model.train()
    while (elapsed := time.monotonic() - start) < budget:
        scale = min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        for group, lr0 in zip(optimizer.param_groups, base):
            group["lr"] = lr0 * scale
        batch = batcher.batch([batcher.make(*utterance(bank, rng)) for _ in range(batch_size)])
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 250 == 0:
            held_out = boundary_summary(boundary_errors(model, held, batcher))
            log.append({"step": step, "minutes": round(elapsed / 60, 2), "loss": round(float(loss), 4), **held_out})
            progress(f"step {step} ({elapsed / 60:.1f} min): loss {float(loss):.3f}, held-out mean "
                     f"{held_out['mean_ms']} ms, median {held_out['median_ms']} ms, within 160 ms "
                     f"{held_out['within_160ms']:.1%}")
    final = boundary_summary(boundary_errors(model, held, batcher))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(IGNORED_SUFFIXES)}
    save_weights(out, "original", state)
    report = {"steps": step, "minutes": round((time.monotonic() - start) / 60, 1), "batch": batch_size, "lr": lr,
              "voices": voice_count, "seed": seed, "held_out": final, "curve": log}
    (out / "training_log.json").write_text(json.dumps(report, indent=2))
    return report


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--asr", type=click.Path(file_okay=False, path_type=Path), default=TEST_MODEL, show_default=True,
              help="The ASR checkpoint the aligner is made from.")
@click.option("--minutes", type=float, default=45.0, show_default=True)
@click.option("--voices", "voice_count", type=int, default=16, show_default=True)
@click.option("--batch", "batch_size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True)
@handle_errors
def main(out: Path, asr: Path, minutes: float, voice_count: int, batch_size: int, lr: float, seed: int,
         force: bool) -> None:
    """Train the test aligner from ASR into OUT (one run of MINUTES)."""
    if out.exists() and any(out.iterdir()) and not force:
        raise click.ClickException(f"{out} exists and is not empty; pass --force to replace it")
    progress = Progress()
    report = train(out, asr, minutes, voice_count, batch_size, lr, seed, progress)
    progress(f"wrote {out}: {report['steps']} steps; held-out {json.dumps(report['held_out'])}")


if __name__ == "__main__":
    main()

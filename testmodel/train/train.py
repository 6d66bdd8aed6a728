"""Train the project's small Qwen3-ASR test model on the synthetic corpus (CPU is enough).

    python -m testmodel.train.train --corpus CORPUS_DIR --out CHECKPOINT_DIR [--seed 0] [--minutes 90] [--steps N]

The model is transformers' Qwen3ASRForConditionalGeneration (the reference class itself) at a small
size, trained with teacher forcing on the official prompt + `language English<asr_text>{text}<|im_end|>`
(loss on the assistant turn only). It is saved in the original Qwen3-ASR layout (thinker_config,
thinker.* weights in bf16, byte-level BPE tokenizer trained on the training sentences), so everything
that loads Qwen/Qwen3-ASR-0.6B loads it unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

from qasr.export.layouts import expected_shapes
from qasr.reference.model import hf_config, load_weights
from qasr.export.spec import ORIGINAL, audio_token_count, read_spec
from qasr.export.tiny import save_weights, write_checkpoint_files
from qasr.runtime.audio import load_audio
from qasr.runtime.cli_support import Progress, handle_errors
from qasr.errors import QasrError
from qasr.runtime.features import FeatureSettings, LogMel
from qasr.runtime.prompt import LANGUAGE_PREFIX, parse_output, prompt_text
from testmodel.train.augment import Augmentation
from testmodel.train.corpus import TRAIN_SPLITS

# The longest segment the trained model is given (its config's qasr_max_audio_seconds). Measured on v2 (25
# held-out utterances joined with 0.6 s pauses): 5 s limit 45.0% WER (one by one, same limit: 43.6%),
# 8 s 64.4%, 30 s 86.6%: given two utterances in one segment it mostly writes only the first, although
# 4% of its training utterances are 20-30 s of several sentences.
MAX_AUDIO_SECONDS = 5.0
# It learns single utterances, so long audio reaches it one speech region per segment (qasr_segment_pauses;
# docs/decisions/, "Pauses"): v6, 115 held-out utterances joined, 7.97% WER against 16.99% merged (4.36% alone).
SEGMENT_PAUSES = "split"
SMALL_AUDIO = {"encoder_layers": 4, "encoder_attention_heads": 4, "encoder_ffn_dim": 768, "d_model": 192,
               "downsample_hidden_size": 32, "output_dim": 256}
SMALL_TEXT = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 64}
TOKENIZER_VOCAB = 2048  # whole words for almost all of the ~1,500-word corpus vocabulary


@dataclass(frozen=True)
class TrainSettings:
    corpus: Path
    out: Path
    seed: int = 0
    steps: int = 100_000          # step cap: the learning-rate schedule spans this many steps or `minutes`,
    minutes: float = 85.0         # whichever ends first (on 2 cores the 85-minute wall time governs), then stops
    batch_frames: int = 6_000     # mel frames per batch (about 60 s of audio)
    lr: float = 1.5e-3
    warmup: int = 200
    ctc_weight: float = 1.0       # training-only character CTC head on the projected audio embeddings
    token_ctc_weight: float = 0.0  # token CTC through the tied text embeddings (experimental, unmeasured)
    guided_weight: float = 1.0    # guided attention: 2 decoder heads pulled towards the spoken word's audio
    encoder_minutes: float = 20.0  # stage 1: the audio tower and projector alone on the CTC loss (cheap steps)
    conv_channels: int = SMALL_AUDIO["downsample_hidden_size"]  # the conv front end's width (most of the encoder's cost)
    curriculum: int = 0           # steps over which the longest allowed sentence grows from 4 words to all
    easy_minutes: float = 0.0     # first phase: only easy utterances (is_easy), no augmentation, for this long
    eval_every: int = 400         # steps between held-out checks (greedy WER on eval_count utterances)
    eval_count: int = 40          # per held-out split (unseen variants; unseen accents where the corpus has them)
    language: str = "English"
    init: Path | None = None      # warm start: a checkpoint with this size and tokenizer (stage 1 is skipped)
    max_audio_seconds: float = MAX_AUDIO_SECONDS
    device: str = "cpu"           # "cuda": the GPU machine (testmodel/gpu_train.sh); the checkpoint is the same
    warp: float = 0.0             # share of training utterances frequency-warped (augment.warp_frequency)
    spec_augment: float = 0.0     # share of training utterances given SpecAugment masks (augment.mask)
    joined: int = 0               # examples of 1-3 utterances joined as long-recording segments (joined_examples)
    more_corpora: tuple[Path, ...] = ()  # further corpora (other seeds) whose training splits are read too
    average: int = 1              # the checkpoint is the mean of the weights at the last `average` evaluations
    bf16: bool = False            # forward passes under bf16 autocast (weights and optimizer stay fp32), only where
                                  # the device computes bf16 natively (check_bf16); slower for the 5.7M test model
                                  # on a 2-core AMX CPU (docs/decisions/)
    workers: int = 1              # processes computing the features before training (16 on the GPU machine)


@dataclass
class Example:
    features: np.ndarray   # [128, frames] float16
    prompt: list[int]
    target: list[int]      # language prefix + text + <|im_end|>
    text: str
    easy: bool = False     # is_easy(its manifest row): what the --easy-minutes phase trains on


EASY_MAX_WORDS, EASY_MIN_SNR_DB = 10, 15.0


def is_easy(row: dict) -> bool:
    """An utterance a model from scratch learns to hear first: one sentence of at most EASY_MAX_WORDS words,
    no reverberation, and clean or under coloured noise at EASY_MIN_SNR_DB or more (no babble of other voices).
    14,316 of corpus v5's 44,000 training utterances."""
    return (not row.get("sentences") and not row.get("reverb") and len(row["text"].split()) <= EASY_MAX_WORDS
            and (row.get("noise") is None
                 or (row["noise"] != "babble" and row.get("snr_db") is not None and row["snr_db"] >= EASY_MIN_SNR_DB)))


def _rows(corpus: Path, split: str) -> list[dict]:
    """The manifest lines of one corpus split ([] when the corpus has no such split)."""
    path = corpus / f"{split}.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []


def _example(features: np.ndarray, text: str, tokenizer, spec, language: str, easy: bool = False) -> Example:
    """One training example: the official prompt with an audio token per 80 ms, and the assistant turn."""
    prompt = tokenizer.encode(prompt_text("<|audio_pad|>", audio_token_count(features.shape[1], spec.audio)),
                              add_special_tokens=False)
    target = tokenizer.encode(LANGUAGE_PREFIX.format(language=language) + text + "<|im_end|>",
                              add_special_tokens=False)
    return Example(features.astype(np.float16), prompt, target, text, easy)


HELD_OUT_SPLITS = ("eval", "eval_accents", "calibration")


def held_out_texts(corpus: Path) -> frozenset[str]:
    """The sentences of `corpus`'s held-out and calibration splits: never trained on from a further corpus."""
    return frozenset(r["text"] for name in HELD_OUT_SPLITS for r in _rows(corpus, name))


def _examples(settings: TrainSettings, split: str, tokenizer, spec, progress, limit: int | None = None,
              corpus: Path | None = None, exclude: frozenset[str] = frozenset(),
              features: FeaturePool | None = None) -> list[Example]:
    """The examples of one split of `corpus` (settings.corpus by default), leaving out rows whose sentence
    is in `exclude` (said in progress)."""
    label = split if corpus is None else f"{split}@{corpus.name}"
    corpus = corpus or settings.corpus
    rows = _rows(corpus, split)[:limit]
    kept = [r for r in rows if r["text"] not in exclude]
    if len(kept) < len(rows):
        progress(f"{label}: {len(rows) - len(kept)} sentences of the held-out splits left out")
    rows = kept
    examples = []
    paths = [corpus / row["audio"] for row in rows]
    for i, (row, feats) in enumerate(zip(rows, (features or FeaturePool(1)).map(paths)), 1):
        examples.append(_example(feats, row["text"], tokenizer, spec, settings.language, is_easy(row)))
        if i % 2000 == 0 or i == len(rows):
            progress(f"{label} features: {i}/{len(rows)}")
    return examples


_MEL: LogMel | None = None


def _features_of(path: Path) -> np.ndarray:
    """The log-mel features of one audio file, as float16 (what an Example keeps)."""
    global _MEL
    _MEL = _MEL or LogMel(FeatureSettings())
    return _MEL(load_audio(path, 16000)).astype(np.float16)


# one thread each for the numerical libraries of the worker processes: 16 workers each running 16 BLAS threads
# made the features 20x slower on the GPU machine's 16 cores (2026-12-04), slower than one process
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


class FeaturePool:
    """The features of lists of audio files, in order: in this process, or in `workers` spawned processes
    started once and used for every split (the same numbers: each file's features depend on that file alone).
    Spawned, not forked: the trainer holds torch's threads, which a forked child must not inherit."""

    def __init__(self, workers: int):
        self.workers, self._pool = workers, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def map(self, paths: list[Path]):
        if self.workers <= 1 or len(paths) < 64:
            yield from map(_features_of, paths)
            return
        if self._pool is None:
            saved = {name: os.environ.get(name) for name in _ONE_THREAD}
            os.environ.update(_ONE_THREAD)   # read by the children as they start, here
            try:
                self._pool = multiprocessing.get_context("spawn").Pool(self.workers)
            finally:
                for name, value in saved.items():
                    if value is None:
                        del os.environ[name]
                    else:
                        os.environ[name] = value
        yield from self._pool.imap(_features_of, paths, chunksize=32)


def joined_examples(settings: TrainSettings, count: int, tokenizer, spec, progress, seed: int = 0) -> list[Example]:
    """Training examples shaped like the segments the runtime cuts from long recordings: 1-3 training
    utterances (at most the segment limit in all) joined by pauses of 0.3-1.0 s, with 0-0.2 s before and
    0-0.5 s after (the voice activity detector's padding), the gaps filled with quiet noise. The target is
    their texts in order. v3 wrote only the first of two utterances in one segment and added words on the
    silence after one: its training audio had neither."""
    rng = np.random.default_rng(seed)
    rows = [{**r, "audio": settings.corpus / r["audio"]} for r in _rows(settings.corpus, "train")]
    held = held_out_texts(settings.corpus)
    for extra in settings.more_corpora:  # other seeds' `train` splits too, without --corpus's held-out sentences
        rows += [{**r, "audio": extra / r["audio"]} for r in _rows(extra, "train") if r["text"] not in held]
    rows = [r for r in rows if not r.get("sentences")]
    if not rows:
        raise QasrError(f"--joined: no `train` split in {settings.corpus} or the further corpora to join utterances of")
    mel, rate, limit = LogMel(FeatureSettings()), 16000, settings.max_audio_seconds
    quiet = lambda seconds: (rng.standard_normal(int(seconds * rate)) * 0.002).astype(np.float32)  # noqa: E731
    examples = []
    while len(examples) < count:
        parts, texts, total = [quiet(rng.uniform(0, 0.2))], [], 0.0
        for _ in range(int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2]))):
            row = rows[int(rng.integers(len(rows)))]
            audio = load_audio(row["audio"], rate)
            gap = quiet(rng.uniform(0.3, 1.0)) if texts else np.zeros(0, np.float32)
            if texts and total + (len(gap) + len(audio)) / rate > limit - 0.5:
                break
            parts += [gap, audio]
            texts.append(row["text"])
            total += (len(gap) + len(audio)) / rate
        parts.append(quiet(rng.uniform(0, 0.5)))
        examples.append(_example(mel(np.concatenate(parts)), " ".join(texts), tokenizer, spec, settings.language))
        if len(examples) % 1000 == 0 or len(examples) == count:
            progress(f"joined segments: {len(examples)}/{count}")
    return examples


CURRICULUM_START_WORDS = 4


def allowed_words(step: int, curriculum: int, longest: int) -> int:
    """Longest sentence (in words) trained on at `step`: short sentences first, because a decoder-only
    model finds the alignment between audio and words much sooner when there are few words to place."""
    if step >= curriculum:
        return longest
    return CURRICULUM_START_WORDS + int((longest - CURRICULUM_START_WORDS) * step / curriculum)


def batch_stream(examples: list[Example], batch_frames: int, rng: random.Random, curriculum: int):
    """Endless batches (one per training step); while the curriculum runs, only sentences up to
    allowed_words(step) words, re-drawn every 50 batches."""
    longest = max(len(e.text.split()) for e in examples)
    step = 0
    while True:
        limit = allowed_words(step, curriculum, longest)
        pool = [e for e in examples if len(e.text.split()) <= limit] or examples
        batches = _batches(pool, batch_frames, rng)
        if limit < longest:
            batches = batches[:50]
        for batch in batches:
            yield batch
            step += 1


def _batches(examples: list[Example], batch_frames: int, rng: random.Random) -> list[list[Example]]:
    ordered = sorted(examples, key=lambda e: (e.features.shape[1], rng.random()))
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


def init_audio_front_end(model) -> None:
    """Variance-preserving initialisation of the audio tower's convolutions and `conv_out`.

    transformers initialises every weight with std 0.02 (right for fine-tuning, where the weights are
    loaded anyway). Through three stacked convolutions that shrinks the audio content to ~1e-3 of the
    sinusoidal position embedding it is added to, so a model trained from scratch sees only positions
    and never learns to listen. Kaiming-normal convolutions and a 1/sqrt(fan_in) `conv_out` keep the
    content at the scale of the positions.
    """
    tower = model.model.audio_tower
    for conv in (tower.conv2d1, tower.conv2d2, tower.conv2d3):
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    torch.nn.init.normal_(tower.conv_out.weight, std=2.5 * tower.conv_out.weight.shape[1] ** -0.5)


CTC_ALPHABET = " abcdefghijklmnopqrstuvwxyz'"  # index 0 is the CTC blank; characters are 1..
CTC_UPSAMPLE = 4  # each 80 ms audio token predicts 4 characters' slots (speech runs ~15 characters/s)


def ctc_targets(text: str) -> list[int]:
    return [CTC_ALPHABET.index(c) + 1 for c in text.lower() if c in CTC_ALPHABET]


class AudioCtc(torch.nn.Module):
    """A character CTC head on the projected audio embeddings, for training only.

    Decoder-only ASR learns slowly to find the words in the audio tokens: with random word strings the
    decoder first learns word frequencies and ignores the audio. A CTC loss on the audio embeddings
    makes the encoder listen from the first steps; characters (each audio token predicting
    CTC_UPSAMPLE slots) are shared by every word, so they are learnt much faster than word-sized
    tokens. The head is not saved: the checkpoint stays exactly Qwen3-ASR.
    """

    def __init__(self, model, dim: int, spec_audio):
        super().__init__()
        self.symbols = len(CTC_ALPHABET) + 1
        self.head = torch.nn.Linear(dim, CTC_UPSAMPLE * self.symbols)
        self.spec_audio = spec_audio
        self.captured: torch.Tensor | None = None
        model.model.multi_modal_projector.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        self.captured = output

    def logits(self, batch: list[Example]) -> list[torch.Tensor]:
        counts = [audio_token_count(e.features.shape[1], self.spec_audio) for e in batch]
        slots = self.head(self.captured).reshape(-1, self.symbols)
        return list(torch.split(slots, [CTC_UPSAMPLE * c for c in counts]))

    def loss(self, batch: list[Example]) -> torch.Tensor:
        pieces = self.logits(batch)
        log_probs = torch.nn.utils.rnn.pad_sequence([p.float().log_softmax(-1) for p in pieces])  # [T, B, C]
        targets = [ctc_targets(e.text) for e in batch]
        return torch.nn.functional.ctc_loss(
            log_probs, torch.tensor([t for ts in targets for t in ts], device=log_probs.device),
            torch.tensor([len(p) for p in pieces]),
            torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)

    def greedy(self, batch: list[Example]) -> list[str]:
        out = []
        for piece in self.logits(batch):
            best = piece.argmax(-1).tolist()
            out.append("".join(CTC_ALPHABET[t - 1] for i, t in enumerate(best) if t and (i == 0 or t != best[i - 1])))
        return out


def token_ctc_loss(model, ctc: AudioCtc, batch: list[Example], tokenizer, spec, blank: int) -> torch.Tensor:
    """CTC over text tokens with logits = audio embeds . (tied) token embeddings: pulls each audio token
    towards the embedding of the word spoken there, so the decoder's task becomes copying (an
    induction pattern transformers learn quickly) instead of discovering an alignment."""
    counts = [audio_token_count(e.features.shape[1], spec.audio) for e in batch]
    logits = ctc.captured @ model.model.language_model.embed_tokens.weight.T
    pieces = torch.split(logits, counts)
    log_probs = torch.nn.utils.rnn.pad_sequence([p.float().log_softmax(-1) for p in pieces])
    targets = [tokenizer.encode(e.text, add_special_tokens=False) for e in batch]
    return torch.nn.functional.ctc_loss(
        log_probs, torch.tensor([t for ts in targets for t in ts]), torch.tensor(counts),
        torch.tensor([len(t) for t in targets]), blank=blank, zero_infinity=True)


GUIDED_LAYER, GUIDED_HEADS = 1, (0, 1)
GUIDED_WIDTH = 0.08  # of the audio length, plus one token


def guided_attention_loss(attentions, batch: dict[str, torch.Tensor], audio_token_id: int, prefix_len: int
                          ) -> torch.Tensor:
    """Guided attention (Tachibana et al., 2017, for TTS alignment), for training only.

    A decoder-only model has to discover on its own which audio tokens hold the word it is about to
    write; from scratch that search is the slowest part of training. Two heads of one decoder layer
    are rewarded for the attention mass they put near where the word should be if words were spread
    evenly over the audio (a Gaussian around (k + 0.5) / words of the audio span, width 8% of it):
    a soft prior that speech only roughly follows, enough to start the content-based alignment that
    the other heads and layers refine. The checkpoint is unchanged by it (a loss, not a layer).
    """
    weights = attentions[GUIDED_LAYER][:, list(GUIDED_HEADS)]  # [batch, heads, queries, keys]
    losses = []
    for row in range(weights.shape[0]):
        audio = torch.nonzero(batch["input_ids"][row] == audio_token_id).squeeze(-1)
        targets = torch.nonzero(batch["labels"][row] != -100).squeeze(-1)[prefix_len:-1]  # words, not prefix/EOS
        if len(audio) == 0 or len(targets) == 0:
            continue
        n, words = len(audio), len(targets)
        centre = (torch.arange(words, device=weights.device) + 0.5) / words * n
        keys = torch.arange(n, device=weights.device)
        prior = torch.exp(-((keys[None] - centre[:, None]) ** 2) / (2 * (GUIDED_WIDTH * n + 1.0) ** 2))
        mass = (weights[row][:, targets - 1][:, :, audio[0]: audio[0] + n] * prior).sum(-1)  # [heads, words]
        losses.append(1 - mass.mean())
    return torch.stack(losses).mean() if losses else weights.sum() * 0


@torch.no_grad()
def held_out_wer(model, ctc: AudioCtc, examples: list[Example], tokenizer, spec, pad_id: int) -> dict[str, float]:
    """Greedy WER of the decoder (what the checkpoint will do) and of the training-only CTC head."""
    import jiwer

    from qasr.reference.wer import normalise

    model.eval()
    refs, hyps, ctc_hyps = [], [], []
    device = next(model.parameters()).device
    for e in examples:
        batch = {k: v.to(device) for k, v in _collate([e], pad_id, spec.audio.chunk_frames).items()}
        prompt = torch.tensor([e.prompt], device=device)
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                             input_features=batch["input_features"], input_features_mask=batch["input_features_mask"],
                             max_new_tokens=len(e.target) + 16, do_sample=False, num_beams=1,
                             eos_token_id=list(spec.eos_token_ids), pad_token_id=pad_id)
        decoded = tokenizer.decode(out[0, prompt.shape[1]:].cpu(), skip_special_tokens=True)
        hyps.append(normalise(parse_output(decoded).text))
        model(**batch)  # fills ctc.captured for this utterance
        ctc_hyps.append(normalise(ctc.greedy([e])[0]))
        refs.append(normalise(e.text))
    model.train()
    return {"wer": jiwer.wer(refs, hyps), "ctc_wer": jiwer.wer(refs, ctc_hyps), "example": hyps[0]}


def _checkpoint_files_from(init: Path, out: Path, max_audio_seconds: float):
    """A warm start's checkpoint files: everything of `init` but its weights and log (same tokenizer and
    sizes), with this run's segment limit and pauses."""
    out.mkdir(parents=True, exist_ok=True)
    for path in Path(init).iterdir():
        if path.is_file() and path.name not in ("model.safetensors", "training_log.json"):
            shutil.copy(path, out / path.name)
    config = json.loads((out / "config.json").read_text())
    config["qasr_max_audio_seconds"] = max_audio_seconds
    config["qasr_segment_pauses"] = SEGMENT_PAUSES
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return read_spec(out)


def _load_weights(model, init: Path) -> None:
    from qasr.export.checkpoint import load_checkpoint

    missing, unexpected = load_weights(model, load_checkpoint(str(init)).weights)
    if missing or unexpected:
        raise QasrError(f"{init} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()


def check_bf16(device: str) -> None:
    """--bf16 runs only where the device computes bf16 natively (on a CPU: AVX512-BF16 or AMX, which oneDNN
    reports); elsewhere bf16 is emulated and training would be slower, not faster: refused in one line."""
    native = (torch.cuda.is_bf16_supported() if device == "cuda"
              else torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not native:
        raise QasrError(f"--bf16: this {device.upper()} has no native bf16 arithmetic (on a CPU: AVX512-BF16 or AMX); "
                        "train without --bf16")


@contextlib.contextmanager
def _sigterm_stops(stop: list[bool]):
    """While the block runs, SIGTERM appends to `stop` instead of ending the process (main thread only:
    Python takes signals there); the previous handler comes back however the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(settings: TrainSettings, progress=print, force: bool = False) -> Path:
    """Train into settings.out; a directory that already holds files is refused unless `force` (then emptied)."""
    import jiwer  # noqa: F401  (the held-out checks need it: fail now, not after minutes of features)
    from transformers import AutoTokenizer, Qwen3ASRForConditionalGeneration

    out = Path(settings.out)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise QasrError(f"{out} already holds files (an earlier checkpoint?); add --force to replace them")
        shutil.rmtree(out)
    elif out.exists() and not out.is_dir():
        raise QasrError(f"{out} is a file, not a directory for the checkpoint")

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise QasrError("--device cuda: this torch has no CUDA device")
    if settings.bf16:
        check_bf16(settings.device)
    names = [c.name for c in settings.more_corpora]
    if len(set(names)) < len(names) or settings.corpus.resolve() in {c.resolve() for c in settings.more_corpora}:
        raise QasrError("--more-corpus: each further corpus must be another directory, with a name of its own "
                        f"(given {', '.join(names)} beside --corpus {settings.corpus})")
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    if settings.workers < 1:
        raise QasrError(f"--workers must be at least 1 (given {settings.workers})")
    texts = [row["text"] for corpus in (settings.corpus, *settings.more_corpora) for split in TRAIN_SPLITS
             for row in _rows(corpus, split)]
    audio_size = {**SMALL_AUDIO, "downsample_hidden_size": settings.conv_channels}
    if settings.init:
        spec = _checkpoint_files_from(settings.init, settings.out, settings.max_audio_seconds)
    else:
        spec = write_checkpoint_files(settings.out, ORIGINAL, texts, TOKENIZER_VOCAB, audio_size, SMALL_TEXT,
                                      max_audio_seconds=settings.max_audio_seconds, segment_pauses=SEGMENT_PAUSES)
    tokenizer = AutoTokenizer.from_pretrained(str(settings.out))
    config = hf_config(spec)
    if settings.guided_weight:
        config.text_config._attn_implementation = "eager"  # attention weights for the guided loss
    model = Qwen3ASRForConditionalGeneration(config)
    if settings.init:
        _load_weights(model, settings.init)
    else:
        init_audio_front_end(model)
    prefix_len = len(tokenizer.encode(LANGUAGE_PREFIX.format(language=settings.language), add_special_tokens=False))
    params = sum(p.numel() for p in model.parameters())
    progress(f"model: {params / 1e6:.2f}M parameters")
    pad_id = spec.pad_id
    ctc = AudioCtc(model, spec.text.hidden_size, spec.audio)
    with FeaturePool(settings.workers) as pool:
        per_split = {split: _examples(settings, split, tokenizer, spec, progress, features=pool)
                     for split in TRAIN_SPLITS}
        # from further corpora (other seeds), no sentence of this corpus's held-out and calibration splits
        held = held_out_texts(settings.corpus)
        for extra in settings.more_corpora:
            per_split.update({f"{split}@{extra.name}": _examples(settings, split, tokenizer, spec, progress,
                                                                 corpus=extra, exclude=held, features=pool)
                              for split in TRAIN_SPLITS if (extra / f"{split}.jsonl").is_file()})
    if settings.joined:
        per_split["joined"] = joined_examples(settings, settings.joined, tokenizer, spec, progress, settings.seed)
    examples = [e for examples_ in per_split.values() for e in examples_]
    if not examples:
        raise QasrError(f"no training utterance in {settings.corpus}"
                        + (" or the further corpora" if settings.more_corpora else ""))
    augment, augment_rng = Augmentation(warp_share=settings.warp, mask_share=settings.spec_augment), \
        random.Random(settings.seed + 1)
    held_out = {"wer": _examples(settings, "eval", tokenizer, spec, progress, settings.eval_count),
                "accents_wer": _examples(settings, "eval_accents", tokenizer, spec, progress, settings.eval_count)}
    model.to(settings.device)
    ctc.to(settings.device)
    # fused: one kernel for every tensor (CPU and CUDA), the same update to rounding; the per-tensor loop
    # took 21-27 ms of a 0.42 s step on 2 cores, fused 5.5 ms (docs/decisions/, "fourth run")
    trained = list(model.parameters()) + list(ctc.parameters())
    optimizer = torch.optim.AdamW(trained, lr=settings.lr, weight_decay=0.01, betas=(0.9, 0.98), fused=True)
    start, step, log = time.monotonic(), 0, {"settings": {k: str(v) for k, v in vars(settings).items()},
                                             "examples": {k: len(v) for k, v in per_split.items()},
                                             "steps": [], "evals": []}
    if settings.init:  # what this run continues: the starting checkpoint's own training, as its log says
        init_log = Path(settings.init) / "training_log.json"
        log["init"] = {"path": str(settings.init),
                       "log": json.loads(init_log.read_text()) if init_log.is_file() else None}
    losses = []
    encoder_minutes = 0.0 if settings.init else settings.encoder_minutes
    stage2 = None if encoder_minutes else 0
    deadline = start + settings.minutes * 60
    model.train()
    shapes = expected_shapes(spec)
    snapshots = []  # the weights at the last `average` evaluations

    def evaluate(snapshot=True):
        result = {}
        for name, examples_ in held_out.items():
            if examples_:
                r = held_out_wer(model, ctc, examples_, tokenizer, spec, pad_id)
                result.update({name: r["wer"], name.replace("wer", "ctc_wer"): r["ctc_wer"],
                               name.replace("wer", "example"): r["example"]})
        minutes = (time.monotonic() - start) / 60
        log["evals"].append({"step": step, "minutes": round(minutes, 2), **result})
        if snapshot and settings.average > 1:
            snapshots.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k in shapes})
            del snapshots[:-settings.average]
        if not result:  # a corpus without held-out splits (e.g. one made with --only train_accents)
            progress(f"step {step}: no held-out split in {settings.corpus} to evaluate on")
            return
        said = ([f"held-out WER {100 * result['wer']:.1f}% (CTC head {100 * result['ctc_wer']:.1f}%)"]
                if "wer" in result else [])
        said += [f"unseen accents {100 * result['accents_wer']:.1f}%"] if "accents_wer" in result else []
        example = result.get("example", result.get("accents_example"))
        progress(f"step {step}: {', '.join(said)} e.g. {example!r}")

    easy_until = start + settings.easy_minutes * 60
    easy = [e for e in examples if e.easy]
    if settings.easy_minutes and not easy:
        raise QasrError(f"--easy-minutes: no easy utterance in the training splits of {settings.corpus} "
                        f"(one sentence of <= {EASY_MAX_WORDS} words, no reverberation, clean or noise at "
                        f">= {EASY_MIN_SNR_DB:g} dB, no babble)")
    easy_stream = batch_stream(easy, settings.batch_frames, rng, settings.curriculum) if settings.easy_minutes else None
    if easy_stream:
        log["easy_phase"] = {"examples": len(easy), "minutes": settings.easy_minutes, "steps": 0}
        progress(f"easy phase: {log['easy_phase']['examples']} of {len(examples)} training utterances "
                 f"for {settings.easy_minutes:g} min, no augmentation")
    # SIGTERM (`timeout`, a job scheduler) ends the run as the wall-time cap does: the step in progress is
    # finished, then the last evaluation, the average and the checkpoint are written as usual
    stop: list[bool] = []
    with _sigterm_stops(stop):
        for batch in batch_stream(examples, settings.batch_frames, rng, settings.curriculum):
            if easy_stream and time.monotonic() < easy_until:
                batch = next(easy_stream)  # the full stream's batch is skipped, not kept for later
                log["easy_phase"]["steps"] += 1
            elif augment:
                batch = [dataclasses.replace(e, features=augment(e.features.astype(np.float32), augment_rng))
                         for e in batch]
            encoder_only = time.monotonic() - start < encoder_minutes * 60
            if not encoder_only and stage2 is None:
                stage2 = step
                progress(f"step {step}: stage 2, the whole model")
            warm = min(1.0, (step + 1 - (stage2 or 0)) / settings.warmup)
            # cosine decay over the steps, or over the wall-time cap if that comes first (slow machines)
            done = min(1.0, max(step / settings.steps, (time.monotonic() - start) / (deadline - start)))
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * warm * 0.5 * (1 + math.cos(math.pi * done))
            inputs = {k: v.to(settings.device) for k, v in _collate(batch, pad_id, spec.audio.chunk_frames).items()}
            with torch.autocast(settings.device, dtype=torch.bfloat16, enabled=settings.bf16):
                if encoder_only:  # the projector's forward hook captures the embeddings for the CTC head
                    model.model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
                    lm_loss = torch.full((), float("nan"), device=settings.device)
                else:
                    out = model(**inputs, output_attentions=bool(settings.guided_weight))
                    lm_loss = out.loss
                ctc_loss = ctc.loss(batch)
                loss = ctc_loss if encoder_only else lm_loss + settings.ctc_weight * ctc_loss
                guided = torch.zeros((), device=settings.device)
                if settings.guided_weight and not encoder_only:
                    guided = guided_attention_loss(out.attentions, inputs, spec.audio_token_id, prefix_len)
                    loss = loss + settings.guided_weight * guided
                if settings.token_ctc_weight:
                    loss = loss + settings.token_ctc_weight * token_ctc_loss(model, ctc, batch, tokenizer, spec, pad_id)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            # kept on the device and read every 25 steps: reading each step's loss would wait for the GPU every step
            losses.append(torch.stack([lm_loss.detach().float(), ctc_loss.detach().float(), guided.detach().float()]))
            step += 1
            if step % 25 == 0:
                recent = torch.stack(losses[-25:]).cpu().numpy()
                del losses[:-25]
                lm, c, g = (np.nanmean(recent, axis=0) if not encoder_only
                            else (float("nan"), *np.mean(recent, axis=0)[1:]))
                minutes = (time.monotonic() - start) / 60
                log["steps"].append({"step": step, "minutes": round(minutes, 2), "lm_loss": round(float(lm), 4),
                                     "ctc_loss": round(float(c), 4), "guided_loss": round(float(g), 4)})
                progress(f"step {step}: decoder loss {lm:.3f}, CTC loss {c:.3f}, guided {g:.3f} ({minutes:.1f} min)")
            if step % settings.eval_every == 0:
                evaluate()
            if step >= settings.steps or time.monotonic() >= deadline or stop:
                if stop:
                    progress(f"step {step}: stopped (SIGTERM); saving what was trained")
                    log["stopped"] = {"step": step, "by": "SIGTERM"}
                break
    if not log["evals"] or log["evals"][-1]["step"] != step:
        evaluate()
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items() if k in shapes}
    if len(snapshots) > 1:  # checkpoint averaging: the mean of the last evaluations' weights
        weights = {k: torch.stack([s[k].float() for s in snapshots]).mean(0).to(v.dtype) for k, v in weights.items()}
        model.load_state_dict(weights, strict=False)
        log["averaged"] = [e["step"] for e in log["evals"][-len(snapshots):]]
        progress(f"averaged the weights of steps {log['averaged']}")
        evaluate(snapshot=False)  # the mean is not a snapshot of its own
        log["evals"][-1]["averaged"] = True
    save_weights(settings.out, ORIGINAL, weights)
    log["finished"] = {"steps": step, "minutes": round((time.monotonic() - start) / 60, 2), "parameters": params}
    (settings.out / "training_log.json").write_text(json.dumps(log, indent=1))
    progress(f"saved {settings.out} after {step} steps")
    return settings.out


# the options both training commands take (this one and the one-command form, testmodel.train's __main__,
# which gives some of them the recipe's defaults): spelled once, here
SHARED_OPTIONS: dict[str, tuple[tuple[str, ...], dict]] = {
    "seed": (("--seed",), dict(type=int, default=0)),
    "steps": (("--steps",), dict(type=click.IntRange(1), default=TrainSettings.steps)),
    "minutes": (("--minutes",), dict(type=click.FloatRange(0.01), default=TrainSettings.minutes,
                                     help="Wall-time cap; the run stops there even if the steps are not done.")),
    "init": (("--init",), dict(type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                               show_default=False,
                               help="Warm start from this checkpoint (same sizes and tokenizer); skips stage 1.")),
    "encoder_minutes": (("--encoder-minutes",), dict(
        type=click.FloatRange(0), default=TrainSettings.encoder_minutes,
        help="Stage 1: train the audio tower alone on the CTC loss for this long (not with --init).")),
    "easy_minutes": (("--easy-minutes",), dict(
        type=click.FloatRange(0), default=TrainSettings.easy_minutes,
        help=f"First train this long on easy utterances only (one sentence of <= {EASY_MAX_WORDS} words, no "
             f"reverberation, clean or coloured noise at >= {EASY_MIN_SNR_DB:g} dB), without augmentation.")),
    "eval_every": (("--eval-every",), dict(type=click.IntRange(1), default=TrainSettings.eval_every,
                                           help="Steps between held-out checks (the learning curves).")),
    "lr": (("--lr",), dict(type=click.FloatRange(1e-6, 1.0), default=TrainSettings.lr)),
    "ctc_weight": (("--ctc-weight",), dict(type=click.FloatRange(0), default=TrainSettings.ctc_weight,
                                           help="Weight of the training-only character CTC loss.")),
    "warp": (("--warp",), dict(type=click.FloatRange(0, 1), default=TrainSettings.warp,
                               help="Share of training utterances frequency-warped (vocal tract length, "
                                    "x0.85-1.5).")),
    "spec_augment": (("--spec-augment",), dict(type=click.FloatRange(0, 1), default=TrainSettings.spec_augment,
                                               help="Share of training utterances given SpecAugment masks.")),
    "average": (("--average",), dict(type=click.IntRange(1), default=TrainSettings.average,
                                     help="Save the mean of the weights at the last N evaluations (every "
                                          "--eval-every steps).")),
    "bf16": (("--bf16",), dict(is_flag=True, show_default=False,
                               help="Forward passes under bf16 autocast (fp32 weights and optimizer); only where "
                                    "the device computes bf16 natively (AVX512-BF16 or AMX CPUs, recent GPUs).")),
    "workers": (("--workers",), dict(type=click.IntRange(1), default=min(os.cpu_count() or 1, 16),
                                     show_default="cores, at most 16",
                                     help="Processes computing the features before training.")),
}


def shared_option(name: str, **override):
    """The click option `name` of SHARED_OPTIONS, with `override` (another default, say) applied."""
    decls, settings = SHARED_OPTIONS[name]
    return click.option(*decls, **{"show_default": True, **settings, **override})


@click.command()
@click.option("--corpus", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@shared_option("seed")
@shared_option("steps")
@shared_option("minutes")
@shared_option("eval_every")
@click.option("--token-ctc-weight", type=click.FloatRange(0), default=TrainSettings.token_ctc_weight, show_default=True,
              help="Token CTC through the tied embeddings.")
@click.option("--guided-weight", type=click.FloatRange(0), default=TrainSettings.guided_weight, show_default=True,
              help="Weight of the guided-attention loss on two decoder heads (0: off).")
@shared_option("encoder_minutes")
@click.option("--conv-channels", type=click.IntRange(8), default=TrainSettings.conv_channels, show_default=True)
@click.option("--batch-frames", type=click.IntRange(500), default=TrainSettings.batch_frames, show_default=True)
@shared_option("lr")
@shared_option("ctc_weight")
@shared_option("init")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--eval-count", type=click.IntRange(1), default=TrainSettings.eval_count, show_default=True)
@click.option("--curriculum", type=click.IntRange(0), default=TrainSettings.curriculum, show_default=True,
              help="Steps over which the longest allowed sentence grows to the longest in the corpus.")
@shared_option("easy_minutes")
@shared_option("warp")
@shared_option("spec_augment")
@click.option("--joined", type=click.IntRange(0), default=TrainSettings.joined, show_default=True,
              help="Add this many segments of 1-3 training utterances joined by pauses (as long recordings are cut).")
@click.option("--more-corpus", "more_corpora", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also train on this corpus's training splits (another seed; repeatable). Sentences of "
                   "--corpus's held-out and calibration splits are left out.")
@shared_option("average")
@shared_option("bf16")
@shared_option("workers")
@click.option("--force", is_flag=True, help="Replace what OUT holds.")
@handle_errors
def main(corpus, out, seed, steps, minutes, eval_every, token_ctc_weight, batch_frames, lr, curriculum,
         guided_weight, encoder_minutes, conv_channels, init, eval_count, ctc_weight, device, warp, spec_augment,
         joined, more_corpora, average, bf16, easy_minutes, workers, force):
    """Train the small Qwen3-ASR test model on CORPUS (made by testmodel.train.corpus) into OUT."""
    train(TrainSettings(corpus=corpus, out=out, seed=seed, steps=steps, minutes=minutes, eval_every=eval_every,
                        token_ctc_weight=token_ctc_weight, batch_frames=batch_frames, lr=lr, curriculum=curriculum,
                        guided_weight=guided_weight, encoder_minutes=encoder_minutes,
                        conv_channels=conv_channels, init=init, eval_count=eval_count,
                        ctc_weight=ctc_weight, device=device, warp=warp, spec_augment=spec_augment, joined=joined,
                        more_corpora=tuple(more_corpora), average=average, bf16=bf16, easy_minutes=easy_minutes,
                        workers=workers),
          Progress(), force)


if __name__ == "__main__":
    main()

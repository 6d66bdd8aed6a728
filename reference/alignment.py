"""An aligner export against the PyTorch reference, transformers' Qwen3ASRForTokenClassification.

Per graph: the encoder and projector (as for speech recognition) and the aligner graph's slot scores, each fed
the reference's own inputs. End to end: the share of `<timestamp>` slots whose time bin agrees with the
reference's argmax, and how far the others are (bins), with the reference's input ids built from the
checkpoint's own tokenizer (transformers) so that the runtime's input is checked too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qasr.exportformat import names
from qasr.runtime.aligner import Aligner
from qasr.runtime.words import split_words

from .model import batch_features
from .parity import GraphError, audio_parity, format_errors, graph_error


@dataclass
class SlotCheck:
    label: str
    reference: list[int]     # the reference's bin at each slot
    ours: list[int]          # the export's, end to end (its own encoder, projector and aligner graph)
    margins: list[float]     # the reference's top-1 minus top-2 score at each slot

    @property
    def min_margin(self) -> float:
        return min(self.margins, default=0.0)

    def near(self, min_margin: float = 0.0, bins: int = 1) -> tuple[int, int]:
        """(slots within `bins` of the reference's, slots) over the slots whose reference margin is at least
        `min_margin` (where a small numeric change cannot flip the reference's own choice)."""
        pairs = [(a, b) for a, b, m in zip(self.reference, self.ours, self.margins) if m >= min_margin]
        return sum(abs(a - b) <= bins for a, b in pairs), len(pairs)

    @property
    def agree(self) -> int:
        return sum(a == b for a, b in zip(self.reference, self.ours))

    @property
    def max_diff(self) -> int:
        return max((abs(a - b) for a, b in zip(self.reference, self.ours)), default=0)


def reference_ids(tokenizer, aligner: Aligner, words: list[str], audio_tokens: int) -> list[int]:
    """The official input string through the checkpoint's transformers tokenizer, the one placeholder then
    expanded to the audio's tokens (as the processor does)."""
    slot = aligner.alignment.timestamp_token
    text = "<|audio_start|><|audio_pad|><|audio_end|>" + "".join(w + slot + slot for w in words)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    at = ids.index(aligner.audio_id)
    return ids[:at] + [aligner.audio_id] * audio_tokens + ids[at + 1:]


@torch.no_grad()
def reference_slots(ref, aligner: Aligner, tokenizer, waves: list[np.ndarray], texts: list[str],
                    language: str | None = None) -> tuple[list[list[int]], torch.Tensor, list[np.ndarray]]:
    """The reference's whole forward pass: (input ids per row, slot scores [rows, slots, classes] padded, slot
    positions per row)."""
    feats = [aligner.front.features(w) for w in waves]
    batch, fmask = batch_features(feats, aligner.front.chunk_frames)
    rows = []
    for f, text in zip(feats, texts):
        words = [w for w, _ in split_words(text, language)]
        rows.append(reference_ids(tokenizer, aligner, words, aligner.front.audio_tokens(f.shape[1])))
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), aligner.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    logits = ref(input_ids=ids, attention_mask=mask, input_features=batch, input_features_mask=fmask).logits.float()
    slots = [np.flatnonzero(np.array(r) == aligner.slot_id) for r in rows]
    width = max(len(s) for s in slots)
    out = torch.zeros(len(rows), width, logits.shape[-1])
    for i, s in enumerate(slots):
        out[i, :len(s)] = logits[i, torch.from_numpy(s)]
    return rows, out, slots


@torch.no_grad()
def aligner_parity(ref, aligner: Aligner, tokenizer, waves: list[np.ndarray], texts: list[str],
                   labels: list[str] | None = None) -> tuple[list[GraphError], list[SlotCheck]]:
    """Graph errors (each graph fed the reference's inputs) and end-to-end slot bins against the reference."""
    labels = labels or [f"{len(w) / 16000:.2f}s" for w in waves]
    errors, embeds = audio_parity(ref, aligner.front, waves)
    rows, ref_scores, slots = reference_slots(ref, aligner, tokenizer, waves, texts)
    ours_rows = [aligner.ids(len(e), [w for w, _ in split_words(t)]) for e, t in zip(embeds, texts)]
    if ours_rows != rows:
        bad = next(i for i, (a, b) in enumerate(zip(ours_rows, rows)) if a != b)
        raise AssertionError(f"the runtime's aligner input differs from the reference tokenizer's ({labels[bad]})")
    ours_scores = aligner.slot_outputs(rows, embeds, names.SLOT_LOGITS)
    ref_valid = np.concatenate([ref_scores[i, :len(s)].numpy() for i, s in enumerate(slots)])
    errors.append(graph_error(f"{names.ALIGNER} (slot scores)", np.concatenate(ours_scores), ref_valid))
    ours_embeds = aligner.front.encode([aligner.front.features(w) for w in waves])
    end_to_end = aligner.slot_outputs(rows, ours_embeds)
    checks = []
    for i, s in enumerate(slots):
        scores = ref_scores[i, :len(s)]
        top2 = scores.topk(2, dim=-1).values
        checks.append(SlotCheck(labels[i], scores.argmax(-1).tolist(), [int(b) for b in end_to_end[i]],
                                (top2[:, 0] - top2[:, 1]).tolist()))
    return errors, checks


def format_alignment_report(errors: list[GraphError], checks: list[SlotCheck]) -> str:
    lines = format_errors(errors)
    lines.append("")
    lines.append(f"{'input':<28} {'slots':>6} {'agree':>6} {'max diff (bins)':>15} {'min margin':>10}")
    for c in checks:
        lines.append(f"{c.label:<28} {len(c.reference):>6} {c.agree:>6} {c.max_diff:>15} {c.min_margin:>10.3f}")
    total = sum(len(c.reference) for c in checks)
    agree = sum(c.agree for c in checks)
    lines.append(f"slot bin agreement: {agree}/{total} ({100.0 * agree / max(total, 1):.1f}%)")
    return "\n".join(lines)

"""An export against the PyTorch reference: per-graph errors and greedy token agreement.

`parity` is the recipe (reference + engine + synthetic audio -> graph errors + greedy tokens): asr-export's
check (qasr.reference.verify), the parity and suite benchmarks and the tests all run it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qasr.exportformat import names
from qasr.runtime.engine import Engine
from qasr.runtime.generate import Prompt
from qasr.runtime.stopping import DecodeOptions, suppress_tokens_before

from .model import batch_features, left_pad


@dataclass
class GraphError:
    graph: str
    max_abs: float
    mean_abs: float
    scale: float   # max |reference|, to read the errors against


@dataclass
class TokenCheck:
    label: str
    reference: list[int]
    ours: list[int]
    min_margin: float   # smallest top-1 minus top-2 reference logit along the sequence

    @property
    def equal(self) -> bool:
        return self.reference == self.ours

    @property
    def distinct(self) -> int:
        return len(set(self.reference))


def graph_error(graph: str, ours: np.ndarray, ref: np.ndarray) -> GraphError:
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    return GraphError(graph, float(diff.max()), float(diff.mean()), float(np.abs(ref).max()))


@torch.no_grad()
def graph_parity(ref, engine: Engine, waves: list[np.ndarray], context: str = "") -> list[GraphError]:
    """Each graph alone against its reference module, fed the reference's own inputs."""
    errors, per_row = audio_parity(ref, engine.front, waves)
    prompts = [engine.prompts.build(len(e), context) for e in per_row]
    errors += _decoder_parity(ref, engine, prompts, per_row)
    return errors


@torch.no_grad()
def audio_parity(ref, front, waves: list[np.ndarray]) -> tuple[list[GraphError], list[np.ndarray]]:
    """The encoder and projector graphs (an Engine's or an Aligner's AudioFront) against the reference's audio
    tower and projector, each fed the reference's inputs; also the reference's audio embeddings per row."""
    feats = [front.features(w) for w in waves]
    batch, mask = batch_features(feats, front.chunk_frames)
    lengths = mask.sum(-1)
    ref_hidden = ref.model.audio_tower(batch, mask).last_hidden_state.numpy()
    ours = front.encoder.infer({names.INPUT_FEATURES: batch.numpy().astype(front.feature_dtype),
                                names.FEATURE_LENGTHS: lengths.numpy()})[names.AUDIO_HIDDEN]
    counts = [front.audio_tokens(int(n)) for n in lengths]
    ours_packed = np.concatenate([ours[i, :c] for i, c in enumerate(counts)])
    errors = [graph_error(names.ENCODER, ours_packed, ref_hidden)]

    hidden = torch.from_numpy(ref_hidden)
    ref_embeds = ref.model.multi_modal_projector(hidden).numpy()
    ours_embeds = front.projector.infer({names.AUDIO_HIDDEN: ref_hidden[None].astype(front.feature_dtype)}
                                        )[names.AUDIO_EMBEDS][0]
    errors.append(graph_error(names.PROJECTOR, ours_embeds, ref_embeds))
    return errors, np.split(ref_embeds, np.cumsum(counts)[:-1])


def _decoder_parity(ref, engine: Engine, prompts: list[list[int]], embeds: list[np.ndarray]) -> list[GraphError]:
    """Prefill logits, then one cached step, against the reference's full forward pass."""
    ids, mask = left_pad(prompts, engine.generator.pad_id)
    inputs_embeds = ref.model.language_model.embed_tokens(ids)
    audio = ids == engine.generator.audio_token_id
    inputs_embeds[audio] = torch.from_numpy(np.concatenate(embeds)).to(inputs_embeds.dtype)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    ref_logits = ref(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids).logits[:, -1]
    gen = [Prompt(p, e, budget=2) for p, e in zip(prompts, embeds)]
    ours_prefill, ours_step, chosen = _our_two_steps(engine, gen)
    next_ids = torch.from_numpy(chosen)[:, None]
    embeds2 = torch.cat([inputs_embeds, ref.model.language_model.embed_tokens(next_ids)], 1)
    mask2 = torch.cat([mask, torch.ones_like(next_ids)], 1)
    pos2 = (mask2.cumsum(-1) - 1).clamp(min=0)
    ref_step = ref(inputs_embeds=embeds2, attention_mask=mask2, position_ids=pos2).logits[:, -1]
    return [graph_error(f"{names.DECODER} (prefill logits)", ours_prefill, ref_logits.numpy()),
            graph_error(f"{names.DECODER} (cached step logits)", ours_step, ref_step.numpy())]


def _our_two_steps(engine: Engine, prompts: list[Prompt]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seen = []

    def record(logits: np.ndarray, step: int) -> None:
        seen.append(logits.copy())

    options = DecodeOptions(max_new_tokens=2, repetition_max_period=0)
    # EOS is kept out so that the second step always runs; the record filter sees raw logits
    engine.generator.generate(prompts, options, [record, suppress_tokens_before(engine.eos_ids, 2)])
    return seen[0], seen[1], seen[0].argmax(-1)


@torch.no_grad()
def token_parity(ref, engine: Engine, waves: list[np.ndarray], new_tokens: int, language: str | None = None,
                 batched: bool = True, labels: list[str] | None = None) -> list[TokenCheck]:
    """Greedy tokens of our runtime against the reference's generate(), EOS suppressed for `new_tokens`."""
    labels = labels or [f"{len(w) / 16000:.2f}s" for w in waves]
    groups = [list(range(len(waves)))] if batched else [[i] for i in range(len(waves))]
    checks: list[TokenCheck] = []
    options = DecodeOptions(max_new_tokens=new_tokens, min_new_tokens=new_tokens, repetition_max_period=0)
    for group in groups:
        feats = [engine.features(waves[i]) for i in group]
        embeds = engine.encode(feats)
        prompts = [engine.prompts.build(len(e), "", language) for e in embeds]
        ours = engine.generate([Prompt(p, e, new_tokens) for p, e in zip(prompts, embeds)], options)
        ref_tokens, margins = _reference_tokens(ref, engine, prompts, feats, new_tokens)
        for row, i in enumerate(group):
            checks.append(TokenCheck(labels[i] + (" (batched)" if batched and len(group) > 1 else ""),
                                     ref_tokens[row], ours[row].tokens, margins[row]))
    return checks


def _reference_tokens(ref, engine: Engine, prompts, feats, new_tokens: int):
    batch, fmask = batch_features(feats, engine.chunk_frames)
    ids, mask = left_pad(prompts, engine.generator.pad_id)
    eos = list(engine.eos_ids)
    out = ref.generate(input_ids=ids, attention_mask=mask, input_features=batch, input_features_mask=fmask,
                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                       eos_token_id=eos, pad_token_id=engine.generator.pad_id, output_scores=True,
                       return_dict_in_generate=True)
    tokens = out.sequences[:, ids.shape[1]:].tolist()
    scores = torch.stack(out.scores, 1).float()          # [batch, steps, vocab], EOS already at -inf
    top2 = scores.topk(2, dim=-1).values
    margins = (top2[..., 0] - top2[..., 1]).min(dim=1).values.tolist()
    return tokens, margins


def format_errors(errors: list[GraphError]) -> list[str]:
    """The per-graph error table's lines (ASR and aligner reports)."""
    lines = [f"{'graph':<32} {'max |err|':>10} {'mean |err|':>11} {'max |ref|':>10}"]
    return lines + [f"{e.graph:<32} {e.max_abs:>10.2e} {e.mean_abs:>11.2e} {e.scale:>10.3g}" for e in errors]


def format_report(errors: list[GraphError], checks: list[TokenCheck]) -> str:
    lines = format_errors(errors)
    lines.append("")
    lines.append(f"{'input':<28} {'tokens':>6} {'agree':>6} {'distinct':>8} {'min margin':>10}")
    for c in checks:
        agree = sum(a == b for a, b in zip(c.reference, c.ours))
        lines.append(f"{c.label:<28} {len(c.reference):>6} {agree:>6} {c.distinct:>8} {c.min_margin:>10.3f}")
    total = sum(len(c.reference) for c in checks)
    agree = sum(sum(a == b for a, b in zip(c.reference, c.ours)) for c in checks)
    lines.append(f"greedy token agreement: {agree}/{total} ({100.0 * agree / max(total, 1):.1f}%)")
    return "\n".join(lines)


# Per precision: a graph passes when max |err| <= atol + rtol * max |ref|. fp32 tokens must agree exactly;
# fp16 and int8 are judged by WER drift on held-out speech (qasr.reference.verify; their graph errors and
# token agreement are reported: greedy tokens on synthetic audio have small margins and legitimately diverge).
TOLERANCES = {"fp32": {"atol": 1e-4, "rtol": 1e-4}, "fp16": {"atol": 2e-2, "rtol": 1e-2}}


def within_tolerance(error: GraphError, precision: str) -> bool:
    tol = TOLERANCES.get(precision)
    return tol is None or error.max_abs <= tol["atol"] + tol["rtol"] * error.scale


def parity(reference, engine: Engine, seconds: tuple[float, ...], new_tokens: int, unbatched: bool = False,
           forced_language: str | None = None) -> tuple[list[GraphError], list[TokenCheck]]:
    """Graph errors and greedy-token checks on synthetic speech of the given lengths: batched always, each
    input alone too with `unbatched`, and batched with a forced language when one is given."""
    from qasr.runtime.synthetic_audio import synthetic_speech

    waves = [synthetic_speech(s, seed=i) for i, s in enumerate(seconds)]
    errors = graph_parity(reference, engine, waves)
    checks = token_parity(reference, engine, waves, new_tokens, batched=False) if unbatched else []
    checks += token_parity(reference, engine, waves, new_tokens, batched=True)
    if forced_language:
        forced = token_parity(reference, engine, waves, new_tokens, language=forced_language, batched=True)
        for check in forced:
            check.label = check.label.replace("(batched)", f"(batched, {forced_language})")
        checks += forced
    return errors, checks

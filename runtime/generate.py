"""Decoding by roles: one loop, a step per cache kind, a token chooser, the logit rules.

- `Generator.generate` is the one decode loop: choose each live row's next token, apply the stopping rules
  (EOS, budget, repetition: stopping.py) row by row, feed the live rows' tokens back; rows stop on their own
  and the loop ends when all have. A row the caller cancels leaves the batch at the next step (the run keeps
  only the rows still wanted: `Run.keep`), so abandoned work stops costing compute.
- A step per cache kind, composed in (no inheritance): `HostCacheSteps` (host_step.py: the standard decoder,
  left-padded rows, a host cache written at a common offset) and `DeviceCacheSteps` (device_step.py: the fused
  decoder, a device cache the graph writes in place, CUDA-graph buckets). Each `begin()`s a run per call that
  prefills, hands back logits (or the graph's own choice) and feeds tokens.
- `Greedy` is the token chooser: the one place a token is chosen on the host. The fused graph's ArgMax
  computes the same choice on the device; the loop takes it only when the chooser says it may (`in_graph`)
  and no host rule needs the logits. Another chooser (sampling, beams over a step) plugs in here.
- `LogitRules` (stopping.py): EOS suppressed for `min_new_tokens` and the caller's host filters, defined once;
  a choosing graph receives the same suppression as its logit_bias input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from .stopping import BUDGET, CANCELLED, EOS, REPETITION, DecodeOptions, LogitFilter, LogitRules, repeating_period, trim_repetition

# Prompt tokens per prefill run at most; prompts up to this length run in one go.
PREFILL_CHUNK = 1024

Observer = Callable[[str, dict], None]   # (graph name, host copies of one run's feeds): calibration records them


@dataclass(frozen=True)
class PrefixCache:
    """The keys and values a prompt's first `tokens` tokens left in the cache: [key_0, value_0, ...], each
    [kv_heads, tokens, head_dim] on the host. A later prompt that starts with the same tokens (and embeddings)
    hands it back and only the rest of it is prefilled (live streams: the audio before the open window)."""
    tokens: int
    kv: tuple[np.ndarray, ...]


@dataclass
class Generation:
    tokens: list[int]     # generated ids, EOS excluded
    stop_reason: str      # eos | budget | repetition
    kept: PrefixCache | None = None   # the prompt's first `keep` tokens' cache, when asked


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    audio_embeds: np.ndarray   # [audio tokens, hidden], in placeholder order
    budget: int
    reuse: PrefixCache | None = None   # the cache of the first reuse.tokens ids, from an earlier call
    keep: int = 0                      # hand back the cache of the first `keep` ids (Generation.kept)

    def reused(self) -> int:
        """How many leading ids need no prefill (at least one id is always run, for the first logits)."""
        return min(self.reuse.tokens, len(self.ids) - 1) if self.reuse is not None else 0


@dataclass(frozen=True)
class DecoderShape:
    """What every step needs to know of the decoder: widths, special ids and the float type of its inputs."""
    hidden: int
    vocab: int
    audio_token_id: int
    eos_ids: tuple[int, ...]
    pad_id: int
    dtype: np.dtype

    def pad_prompts(self, prompts: list[Prompt], left: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompt ids [B, L] and audio embeddings [B, L, hidden] padded to the longest prompt (on the left or the
        right), the embeddings placed at the audio placeholders; and each row's padding [B]."""
        batch, length = len(prompts), max(len(p.ids) for p in prompts)
        ids = np.full((batch, length), self.pad_id, dtype=np.int64)
        audio = np.zeros((batch, length, self.hidden), dtype=self.dtype)
        pads = np.array([length - len(p.ids) for p in prompts], dtype=np.int64)
        for row, prompt in enumerate(prompts):
            start = pads[row] if left else 0
            ids[row, start: start + len(prompt.ids)] = prompt.ids
            where = np.flatnonzero(ids[row] == self.audio_token_id)
            if len(where) != len(prompt.audio_embeds):
                raise ValueError(f"prompt has {len(where)} audio placeholders for {len(prompt.audio_embeds)} embeddings")
            audio[row, where] = prompt.audio_embeds
        return ids, audio, pads


class Run(Protocol):
    """One generate() call's decoding state after the prefill, as a step kind provides it."""
    graph_chooses: bool   # the graph picks the next token itself (then the loop never reads logits)

    def logits(self) -> np.ndarray: ...                    # [batch, vocab] float32 on the host, writable
    def graph_choice(self) -> np.ndarray: ...              # [batch] the graph's choice (graph_chooses only)
    def set_bias(self, bias: np.ndarray) -> None: ...      # the graph's logit_bias (graph_chooses only)
    def feed(self, chosen: np.ndarray, live: np.ndarray, step: int) -> None: ...
    def keep(self, rows: np.ndarray) -> None: ...         # only these rows (ascending) run from now on
    def summary(self) -> dict: ...
    kept: list[PrefixCache | None]                         # per row: the cache its prompt asked to keep


class Steps(Protocol):
    """A cache kind's step, long-lived (its cache and buffers outlive calls)."""
    prefill_chunk: int
    can_choose: bool      # its graph has an in-graph choice (the fused decoder's next_token)

    def begin(self, prompts: list[Prompt], bias: np.ndarray | None) -> Run:
        """Prefill `prompts`; `bias` (a choosing graph only): the logit bias of the first choice, and the graph
        chooses; None: the loop chooses from host logits."""


class Greedy:
    """The token chooser: the highest logit. The fused graph's ArgMax (over logits + logit_bias) is the same
    rule, so a run may hand back the graph's choice (`in_graph`)."""
    in_graph = True

    def choose(self, logits: np.ndarray) -> np.ndarray:
        return logits.argmax(axis=-1)


class Generator:
    def __init__(self, steps: Steps, shape: DecoderShape, chooser: Greedy | None = None):
        self.steps, self.shape = steps, shape
        self.chooser = chooser or Greedy()
        self.eos_ids = set(shape.eos_ids)
        self.last_run: dict = {}

    @property
    def pad_id(self) -> int:
        return self.shape.pad_id

    @property
    def audio_token_id(self) -> int:
        return self.shape.audio_token_id

    @property
    def prefill_chunk(self) -> int:
        return self.steps.prefill_chunk

    @prefill_chunk.setter
    def prefill_chunk(self, value: int) -> None:
        self.steps.prefill_chunk = value

    def generate(self, prompts: list[Prompt], options: DecodeOptions, filters: list[LogitFilter] = (),
                 on_step: Callable[[list[list[int]]], None] | None = None,
                 cancelled: Callable[[], list[bool]] | None = None) -> list[Generation]:
        """Tokens for each prompt; `filters` edit the float32 logits on the host before each choice (the same edit for
        every row: once rows are cancelled the logits hold only the rows still running);
        `on_step` (streaming) sees every row's tokens so far after each step (do not keep the lists);
        `cancelled`, asked before each step, says which rows are no longer wanted: they stop there (CANCELLED), and
        when no row is left the run ends."""
        batch = len(prompts)
        budgets = [p.budget for p in prompts]
        rules = LogitRules(tuple(sorted(self.eos_ids)), options.min_new_tokens, tuple(filters))
        graph_chooses = self.steps.can_choose and self.chooser.in_graph and not rules.needs_logits
        # a choosing graph's prefill already makes choice 0: its logit bias goes in with the prompts
        run = self.steps.begin(prompts, rules.bias(0, self.shape.vocab) if graph_chooses else None)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        reasons: list[str | None] = [None] * batch
        active = np.arange(batch)   # the prompt row of each of the run's rows (rows leave when cancelled)
        steps = 0
        for step in range(max(budgets)):
            if cancelled is not None:
                for row, gone in enumerate(cancelled()):
                    if gone and reasons[row] is None:
                        reasons[row] = CANCELLED
                if all(r is not None for r in reasons):
                    break
            if graph_chooses:
                chosen = run.graph_choice()
            else:
                logits = run.logits()
                rules.apply(logits, step)
                chosen = self.chooser.choose(logits)
            for index, row in enumerate(active.tolist()):
                if reasons[row] is None:
                    reasons[row] = self._advance(tokens[row], int(chosen[index]), budgets[row], options)
            if on_step is not None:
                on_step(tokens)
            live = np.array([reasons[row] is None for row in active.tolist()])
            if not live.any():
                break
            if any(reasons[row] == CANCELLED for row in active.tolist()):
                # a cancelled row leaves the batch (and with it every row already stopped): the next steps
                # compute only the rows still wanted
                keep = np.flatnonzero(live)
                run.keep(keep)
                active, chosen, live = active[keep], np.asarray(chosen)[keep], live[keep]
            if graph_chooses and (bias := rules.bias(step + 1, self.shape.vocab)) is not None:
                run.set_bias(bias)   # for the choice this feed's run makes
            run.feed(chosen, live, step)
            steps += 1
        self.last_run = {"batch": batch, "decode_steps": steps, **run.summary(), "rows_left": len(active),
                         "host_filters": rules.needs_logits}
        return [Generation(t, r or BUDGET, k) for t, r, k in zip(tokens, reasons, run.kept)]

    def _advance(self, tokens: list[int], token: int, budget: int, options: DecodeOptions) -> str | None:
        """Append `token` to a live row; return why the row stops now, or None."""
        if token in self.eos_ids:
            return EOS
        tokens.append(token)
        period = repeating_period(tokens, options.repetition_max_period, options.repetition_min_span)
        if period is not None:
            tokens[:] = trim_repetition(tokens, period)
            return REPETITION
        if len(tokens) >= budget:
            return BUDGET
        return None

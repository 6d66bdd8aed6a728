"""A turn's audio embeddings, each completed encoder window encoded once.

The encoder attends within windows of n_window_infer mel frames (800 = 8 s) and its convolutions run per
chunk of 100 frames with positions restarting in each (../shared/QWEN3_ASR_FACTS.md), so a window's
embeddings depend on that window's features only. A completed window is encoded once and kept; the open
window (the last, still growing) is encoded at every step. A kept window is encoded again only when its
features changed: the floor (the turn's maximum less 8) rose past one of its frames because louder audio
arrived (`reencoded` counts those). The embeddings equal one encode of the whole turn (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import StreamingLogMel


@dataclass
class _Window:
    floor: float          # the floor its features were computed with
    low: float            # its smallest log-mel value before the floor
    embeds: np.ndarray


class TurnEncoding:
    def __init__(self, engine):
        self.engine = engine
        self.mel = StreamingLogMel(engine.features)
        self.window = engine.window_frames
        self.kept: dict[int, _Window] = {}
        self.open: np.ndarray | None = None        # the open window's embeddings (of its last encode)
        self.open_frames = 0
        self.encoded_frames = 0                    # frames encoded, all steps (compute accounting)
        self.reencoded = 0                         # kept windows encoded again after a floor change
        self.changed_from = 0                      # the first kept window encoded again since the last step
        self._plan: list[tuple[int, float, float]] = []

    def append(self, samples: np.ndarray) -> None:
        self.mel.append(samples)

    def pending(self) -> list[np.ndarray]:
        """Features ([n_mels, frames]) to encode now: changed or newly completed windows, then the open one."""
        spec, peak = self.mel.log_spectrum()
        floor = peak - self.engine.features.settings.dynamic_range
        frames, w = len(spec), self.window
        complete = min(frames, self.mel.final) // w
        if complete * w == frames:          # no open frames: the last complete window is encoded as open
            complete = max(0, complete - 1)
        features = self.engine.features.floored(spec, peak)
        plan, work = [], []
        self.changed_from = complete
        for index in range(complete + 1):
            lo, hi = index * w, min(frames, (index + 1) * w)
            kept = self.kept.get(index)
            if index < complete and kept is not None and (kept.floor == floor or kept.low >= floor):
                continue
            if index < complete and kept is not None:
                self.reencoded += 1
                self.changed_from = min(self.changed_from, index)
            plan.append((index, floor, float(spec[lo:hi].min())))
            work.append(features[:, lo:hi])
        self._plan = plan
        self.open_frames = frames - complete * w
        self.encoded_frames += sum(f.shape[1] for f in work)
        self._complete = complete
        return work

    def accept(self, embeds: list[np.ndarray]) -> None:
        """The embeddings of what pending() asked for, in its order."""
        for (index, floor, low), e in zip(self._plan, embeds):
            if index < self._complete:
                self.kept[index] = _Window(floor, low, e)
            else:
                self.open = e
        for index in [i for i in self.kept if i >= self._complete]:
            del self.kept[index]

    def embeddings(self) -> np.ndarray:
        parts = [self.kept[i].embeds for i in range(self._complete)] + [self.open]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    @property
    def complete(self) -> int:
        """Completed windows (all but the open one) as of the last pending()."""
        return self._complete

    def window_tokens(self) -> int:
        return self.engine.audio_tokens(self.window)

    def audio_tokens(self) -> int:
        return self._complete * self.window_tokens() + self.engine.audio_tokens(self.open_frames)

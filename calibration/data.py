"""Which audio calibrates: a directory of audio files, a JSONL manifest, or (by default) the shipped
calibration split. Everything is checked before any long work starts: unreadable files are reported
and skipped, and too few usable utterances is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from qasr.errors import QasrError
from qasr.runtime.speech_manifest import read_manifest

MIN_UTTERANCES = 8
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64", ".opus"}


@dataclass(frozen=True)
class CalibrationSet:
    source: str             # what the user gave (or "shipped calibration split")
    files: tuple[Path, ...]
    skipped: tuple[str, ...]  # one line per unusable file or manifest line

    def checksum(self) -> str:
        """sha256 over the audio bytes, in order: the key of the statistics cache."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def shipped_calibration_manifest() -> Path:
    from qasr.assets import CALIBRATION_MANIFEST, shipped

    return shipped(CALIBRATION_MANIFEST, "the shipped calibration split", "pass --calibration DIR_OR_JSONL")


def _readable(path: Path) -> str | None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:
        return f"{path}: cannot decode audio ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if info.frames == 0:
        return f"{path}: the audio is empty"
    return None


def calibration_set(source: str | Path | None = None, limit: int | None = None,
                    minimum: int = MIN_UTTERANCES) -> CalibrationSet:
    """Resolve and check the calibration audio (None: the shipped calibration split)."""
    label = "shipped calibration split" if source is None else str(source)
    path = Path(source) if source is not None else shipped_calibration_manifest()
    if not path.exists():
        raise QasrError(f"calibration data not found: {path}")
    skipped: list[str] = []
    if path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not candidates:
            raise QasrError(f"{path}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in this directory")
    elif path.suffix == ".jsonl":
        utterances, skipped = read_manifest(path, need_text=False)
        candidates = [u.audio for u in utterances]
    else:
        raise QasrError(f"{path}: give a directory of audio files or a .jsonl manifest for calibration")
    files = []
    for candidate in candidates:
        problem = _readable(candidate)
        if problem:
            skipped.append(problem)
        else:
            files.append(candidate)
        if limit and len(files) >= limit:
            break
    if not files:
        raise QasrError(f"{label}: no readable audio for calibration" + (f" ({skipped[0]})" if skipped else ""))
    if len(files) < minimum:
        raise QasrError(f"{label}: only {len(files)} readable utterances; calibration needs at least {minimum}")
    return CalibrationSet(label, tuple(files), tuple(skipped))

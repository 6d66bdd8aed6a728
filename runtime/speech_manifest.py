"""JSONL speech manifests: one object per line with `audio` (relative to the manifest's folder, or
absolute), usually `text`, and any other fields (voice, SNR, ...), which are kept.

Used by the WER benchmark (text required) and by calibration (audio only). Unusable lines are
returned as one problem line each, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qasr.errors import QasrError


@dataclass
class Utterance:
    audio: Path
    text: str
    fields: dict


def read_manifest(path: Path, limit: int | None = None, need_text: bool = True) -> tuple[list[Utterance], list[str]]:
    """The usable lines and one problem line per unusable one (bad JSON, no audio/text, missing file)."""
    path = Path(path)
    if not path.is_file():
        raise QasrError(f"manifest not found: {path}")
    utterances, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = row["audio"]
            text = row["text"] if need_text else row.get("text", "")
        except (ValueError, KeyError, TypeError):
            problems.append(f"{path}:{number}: not a JSON object with audio" + (" and text" if need_text else ""))
            continue
        file = (path.parent / audio) if not Path(audio).is_absolute() else Path(audio)
        if not file.is_file():
            problems.append(f"{path}:{number}: audio file not found: {file}")
            continue
        utterances.append(Utterance(file, str(text), {k: v for k, v in row.items() if k not in ("audio", "text")}))
        if limit and len(utterances) >= limit:
            break
    if not utterances:
        raise QasrError(f"{path} has no usable lines" + (f" ({problems[0]})" if problems else ""))
    return utterances, problems

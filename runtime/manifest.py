"""The export directory's manifest: what the runtime knows about a model, and all it reads.

The exporter writes it (qasr.export.manifest_writer); the runtime loads it here and refuses anything it
cannot trust: another format version, missing files, checksums that do not match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import names
from .errors import ExportDirError
from .version import EXPORT_FORMAT, READABLE_FORMAT_VERSIONS


def sha256_file(path: Path, chunk: int = 1 << 23) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A loaded, checked manifest. `data` is the raw JSON; the properties name what the runtime uses."""

    directory: Path
    data: dict[str, Any]

    @property
    def model(self) -> dict[str, Any]:
        return self.data["model"]

    @property
    def tokens(self) -> dict[str, Any]:
        return self.data["tokens"]

    @property
    def features(self) -> dict[str, Any]:
        return self.data["features"]

    @property
    def prompt(self) -> dict[str, Any]:
        return self.data["prompt"]

    @property
    def cache(self) -> dict[str, Any]:
        return self.data["cache"]

    @property
    def decoding(self) -> dict[str, Any]:
        return self.data.get("decoding", {})

    @property
    def max_segment_seconds(self) -> float:
        """The longest segment the model takes (exports before format 3 say nothing: the official 1200 s)."""
        return float(self.data.get("segmentation", {}).get("max_seconds", 1200.0))

    @property
    def segment_pauses(self) -> str:
        """What a pause between speech regions does, merge or split (exports without it: merge)."""
        return str(self.data.get("segmentation", {}).get("pauses", "merge"))

    @property
    def precision(self) -> str:
        return self.data["export"]["precision"]

    def graph_path(self, graph: str) -> Path:
        return self.directory / self.data["graphs"][graph]["file"]

    def graph_dtype(self, graph: str, tensor: str) -> str:
        for spec in self.data["graphs"][graph]["inputs"] + self.data["graphs"][graph]["outputs"]:
            if spec["name"] == tensor:
                return spec["dtype"]
        raise KeyError(f"{graph} has no tensor {tensor}")

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / self.data.get("tokenizer", {}).get("file", names.TOKENIZER)


def load_manifest(directory: str | Path, verify_checksums: bool = True) -> Manifest:
    """Read and check `directory/manifest.json`; raise ExportDirError with one clear line otherwise."""
    directory = Path(directory)
    path = directory / names.MANIFEST
    if not directory.is_dir():
        raise ExportDirError(f"export directory not found: {directory}")
    if not path.is_file():
        raise ExportDirError(f"{directory} is not an export directory (no {names.MANIFEST}); create one with asr-export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportDirError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ExportDirError(f"{path} is not a qasr export manifest")
    version = data.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        made_by = data.get("created_by", {}).get("qasr", "an unknown version")
        readable = " and ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
        raise ExportDirError(
            f"{directory} was exported with format version {version} (qasr {made_by}); this runtime reads "
            f"versions {readable}: export the model again with this version of asr-export"
        )
    _check_files(directory, data.get("files", {}), verify_checksums)
    manifest = Manifest(directory=directory, data=data)
    from .vad import check_pauses

    check_pauses(manifest.segment_pauses, f"{path}: segmentation.pauses", ExportDirError)
    return manifest


def _check_files(directory: Path, files: dict[str, dict[str, Any]], verify_checksums: bool) -> None:
    if not files:
        raise ExportDirError(f"{directory / names.MANIFEST} lists no files")
    for name, meta in files.items():
        file = directory / name
        if not file.is_file():
            raise ExportDirError(f"{directory} is incomplete: {name} is missing")
        if file.stat().st_size != meta["bytes"]:
            raise ExportDirError(f"{file} has changed since export (size differs from the manifest)")
        if verify_checksums and sha256_file(file) != meta["sha256"]:
            raise ExportDirError(f"{file} has changed since export (sha256 differs from the manifest)")


def file_table(directory: Path) -> dict[str, dict]:
    """{file name: {bytes, sha256}} of every file of an export directory but the manifest."""
    return {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != names.MANIFEST
    }

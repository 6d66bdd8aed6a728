"""qasr.exportformat: what an export directory is. The tensor and file names (names), the manifest's typed
sections and its one validator (schema), the older versions it reads (migrate) and the file table (files).

Every reader and writer of manifest.json goes through `load_manifest` and `write_manifest`."""

from __future__ import annotations

import json
from pathlib import Path

from qasr.errors import ExportDirError

from . import names
from .files import CHECKSUM_MODES, check_files, file_table, sha256_file
from .migrate import migrate
from .schema import (EXPORT_FORMAT, EXPORT_FORMAT_VERSION, READABLE_FORMAT_VERSIONS, Alignment, AudioSpec, CacheLayout,
                     ExportInfo, FeatureSettings, FileEntry, Graph, Manifest, ModelInfo, PromptFormat, Quantization,
                     Segmentation, Source, Tensor, TextSpec, Tokens, check_pauses)

__all__ = ["names", "Manifest", "load_manifest", "read_manifest", "write_manifest", "file_table", "sha256_file",
           "check_files", "CHECKSUM_MODES", "EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "READABLE_FORMAT_VERSIONS",
           "AudioSpec", "TextSpec", "ModelInfo", "FeatureSettings", "Tokens", "PromptFormat", "Segmentation",
           "CacheLayout", "Alignment", "Tensor", "Graph", "FileEntry", "Source", "Quantization", "ExportInfo"]


def read_manifest(directory: str | Path) -> Manifest:
    """The typed manifest of `directory` (migrated to the current version), without checking its files."""
    directory = Path(directory)
    path = directory / names.MANIFEST
    if not directory.is_dir():
        raise ExportDirError(f"export directory not found: {directory}")
    if not path.is_file():
        raise ExportDirError(f"{directory} is not an export directory (no {names.MANIFEST}); create one with asr-export")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportDirError(f"{path} is not readable JSON ({exc})") from None
    data, version = migrate(raw, str(path))
    manifest = Manifest.from_json(data, str(path))
    from dataclasses import replace

    check_pauses(manifest.limits.pauses, f"{path}: segmentation.pauses", ExportDirError)
    known = CacheLayout(0, 0, 0, "")
    if manifest.alignment is None and (manifest.prompt is None or manifest.cache is None):
        raise ExportDirError(f"{path}: a speech recognition export needs its prompt and cache sections")
    if manifest.cache is not None and (manifest.cache.layout, manifest.cache.past, manifest.cache.present) != (known.layout, known.past, known.present):
        raise ExportDirError(f"{path}: cache layout {list(manifest.cache.layout)} with {list(manifest.cache.past)} is "
                             f"not the one this runtime binds ({list(known.layout)}, {list(known.past)})")
    return replace(manifest, directory=directory, format_version=version)


def load_manifest(directory: str | Path, checksums: str = "cached") -> Manifest:
    """Read, validate and check an export directory (files present, sizes, sha256 as `checksums` says)."""
    manifest = read_manifest(directory)
    check_files(manifest.directory, manifest.files, checksums)
    return manifest


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write `manifest` with the file table of `directory` as it is now (every file but the manifest)."""
    from dataclasses import replace

    manifest = replace(manifest, files=file_table(directory), format_version=EXPORT_FORMAT_VERSION)
    path = directory / names.MANIFEST
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return path

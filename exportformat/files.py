"""The export's file table: sizes always checked on load, sha256 checked at export, on request, and (by default)
once per file version: a digest is remembered in the user's cache keyed by path, size, inode and mtime, so a
server restart does not re-read gigabytes of weights, and a file that changed is hashed again."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from qasr.errors import ExportDirError

from . import names
from .schema import FileEntry

log = logging.getLogger(__name__)

CHECKSUM_MODES = ("cached", "full", "size")   # sha256 once per file version | every load | sizes only


def sha256_file(path: Path, chunk: int = 1 << 23) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_table(directory: Path) -> dict[str, FileEntry]:
    """{file name: FileEntry} of every file of an export directory but the manifest."""
    return {p.name: FileEntry(p.stat().st_size, sha256_file(p))
            for p in sorted(directory.iterdir()) if p.is_file() and p.name != names.MANIFEST}


def cache_path() -> Path:
    root = os.environ.get("QASR_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                         os.path.expanduser("~/.cache"), "qasr")
    return Path(root) / "verified-files.json"


class _DigestCache:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    @staticmethod
    def key(file: Path) -> str:
        st = file.stat()
        return f"{file.resolve()}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}"

    def digest(self, file: Path) -> str:
        key = self.key(file)
        if key not in self.entries:
            self.entries[key] = sha256_file(file)
            self.changed = True
        return self.entries[key]

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:   # a read-only home only costs the next start a full check
            log.debug("checksum cache not written (%s)", exc)


def check_files(directory: Path, files: dict[str, FileEntry], checksums: str = "cached") -> None:
    """Every listed file present with its size; sha256 as `checksums` says (CHECKSUM_MODES)."""
    if checksums not in CHECKSUM_MODES:
        raise ValueError(f"checksums must be one of {CHECKSUM_MODES}, not {checksums!r}")
    if not files:
        raise ExportDirError(f"{directory / names.MANIFEST} lists no files")
    for name, meta in files.items():
        file = directory / name
        if not file.is_file():
            raise ExportDirError(f"{directory} is incomplete: {name} is missing")
        if file.stat().st_size != meta.bytes:
            raise ExportDirError(f"{file} has changed since export (size differs from the manifest)")
    if checksums == "size":
        return
    cache = _DigestCache(cache_path()) if checksums == "cached" else None
    try:
        for name, meta in files.items():
            file = directory / name
            digest = cache.digest(file) if cache else sha256_file(file)
            if digest != meta.sha256:
                raise ExportDirError(f"{file} has changed since export (sha256 differs from the manifest)")
    finally:
        if cache:
            cache.save()

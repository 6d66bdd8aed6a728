"""Older manifest versions, read as the current one (EXPORT_FORMAT_VERSION): each step says what changed.

1 -> 2: export.attention appeared; version 1 exports are all the standard decoder.
2 -> 3: the fused decoder was rebuilt node by node and takes `last_token_index`; version 2 standard exports are
        read as they are, version 2 fused exports are refused (the runtime says to export again).
Any version: `decoding` (written up to qasr 0.1.0 and never read) is dropped.
"""

from __future__ import annotations

from typing import Any

from qasr.errors import ExportDirError

from . import names
from .schema import EXPORT_FORMAT, READABLE_FORMAT_VERSIONS

UNREAD_SECTIONS = ("decoding",)


def migrate(data: Any, where: str) -> tuple[dict, int]:
    """(the manifest as the current version's JSON, the version it was written as)."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ExportDirError(f"{where} is not a qasr export manifest")
    version = data.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        made_by = (data.get("created_by") or {}).get("qasr", "an unknown version")
        readable = " and ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
        raise ExportDirError(f"{where} was exported with format version {version} (qasr {made_by}); this runtime "
                             f"reads versions {readable}: export the model again with this version of asr-export")
    data = {k: v for k, v in data.items() if k not in UNREAD_SECTIONS}
    if version == 1:
        data["export"] = {**(data.get("export") or {}), "attention": names.ATTENTION_STANDARD}
    return data, version

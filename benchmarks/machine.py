"""What CPU a measurement ran on, for the reports: static INT8 results depend on it.

ONNX Runtime's integer kernels differ by instruction set (u8 x s8 products summed in saturating 16-bit
pairs with AVX2, exactly with AVX-512 VNNI / AVX-VNNI), and so can its float kernels' rounding, so the
same static INT8 export can give another transcript for a borderline utterance on another CPU
(benchmarks/RESULTS.md, "AWQ-style 4-bit"). Reports name the CPU and the instruction sets that matter.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """e.g. "AMD EPYC, x86_64, 2 cores, avx2 avx512f avx512_vnni avx_vnni" (flags: those of FLAGS present)."""
    model, flags = "", set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and not model:
                model = value.strip()
            elif key in ("flags", "features"):
                flags |= set(value.split())
    present = [f for f in FLAGS if f in flags]
    parts = [model or platform.processor() or "unknown CPU", platform.machine(), f"{os.cpu_count()} cores"]
    return ", ".join(parts + ([" ".join(present)] if present else []))

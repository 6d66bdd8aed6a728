"""asr-transcribe shows progress on a terminal's stderr, never when stderr is a file or a pipe, never with --quiet."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

BIN = os.path.dirname(sys.executable)
CALL = "examples/call.flac"


def _stderr_on_a_terminal(*args: str) -> tuple[int, str, str]:
    main, secondary = pty.openpty()
    try:
        result = subprocess.run([os.path.join(BIN, "asr-transcribe"), *args], stdout=subprocess.PIPE,
                                stderr=secondary, text=True, timeout=300)
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return result.returncode, result.stdout, b"".join(chunks).decode()
    finally:
        os.close(main)
        if secondary != -1:
            os.close(secondary)


def test_progress_on_a_terminal_only(shipped_export):
    code, out, err = _stderr_on_a_terminal("--engine", str(shipped_export), CALL)
    assert code == 0 and out.strip() == "please call me at seven thirty tomorrow morning"
    assert "transcribed 3 of 3 s of speech (100%)" in err
    code, _, err = _stderr_on_a_terminal("--engine", str(shipped_export), "--quiet", CALL)
    assert code == 0 and "transcribed" not in err
    piped = subprocess.run([os.path.join(BIN, "asr-transcribe"), "--engine", str(shipped_export), CALL],
                           capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and "transcribed" not in piped.stderr

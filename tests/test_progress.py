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


def test_progress_inside_a_long_batch(shipped_export, monkeypatch):
    """A batch that decodes for long reports its tokens while it runs (every TICK_SECONDS; 0 here), then the
    batch's line; the transcript is the same as without progress."""
    from qasr import Model
    from qasr.runtime import transcribe

    monkeypatch.setattr(transcribe._Ticker, "TICK_SECONDS", 0.0)
    model = Model(shipped_export)
    lines: list[str] = []
    with_progress = model.transcribe_batch([CALL], progress=lines.append)[0].text
    assert with_progress == model.transcribe_batch([CALL])[0].text
    ticks = [line for line in lines if "tokens so far" in line]
    assert ticks and ticks[0] == "decoding 0-3 s of 3 s: 1 tokens so far"
    assert lines[-1] == "transcribed 3 of 3 s of speech (100%)"

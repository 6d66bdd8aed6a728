"""The README's commands as written: every export directory a command names is made by an earlier README command
(or by scripts/demo.sh), and the commands that need no model hub, GPU, running server or a file of the reader's
own are run, in order, in a scratch folder that sees the repository's testmodel/ and examples/."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = os.path.dirname(sys.executable)
# the reader's own files in the examples (never made by a command)
YOURS = {"meeting.flac", "call.wav", "lecture.mp3", "talk.mp3", "my_audio/", "mine.jsonl", "test.jsonl"}
MADE_BY_DEMO = {"out/test-model-fp32-onnx"}
NOT_RUN = ("Qwen/", "--device cuda", "--ray", "curl ", "asr-serve", "scripts/demo.sh", "-m pytest")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        current = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            current = (current + line).split("  #")[0].split(" # ")[0].strip()
            if current and not current.startswith("#"):
                commands.append(current)
            current = ""
    return commands


def _made(args: list[str]) -> str | None:
    """The export directory an asr-export command makes (its --out, else the default name)."""
    if not args or Path(args[0]).name != "asr-export":
        return None
    if "--out" in args:
        return args[args.index("--out") + 1]
    from qasr.export.cli import default_out

    option = lambda name, default: args[args.index(name) + 1] if name in args else default  # noqa: E731
    return str(default_out(option("--model", ""), option("--precision", "fp32"), option("--attention", "auto")))


def test_every_named_export_is_made_by_an_earlier_command():
    made = set(MADE_BY_DEMO)
    for command in readme_commands():
        args = shlex.split(command.split(">")[0])
        args = args[1:] if "=" in args[0] else args   # an environment assignment before the command
        for flag in ("--engine", "--aligner"):
            for i, arg in enumerate(args[:-1]):
                if arg == flag:
                    assert args[i + 1] in made, f"README: {args[i + 1]!r} is made by no earlier command: {command}"
        if (out := _made(args)) is not None:
            made.add(out)


def test_the_commands_that_need_nothing_outside_run_as_written(shipped_export, tmp_path):
    for name in ("testmodel", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "test-model-fp32-onnx").symlink_to(shipped_export)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], HF_HUB_OFFLINE="1")
    ran, available = [], set(MADE_BY_DEMO)
    for command in readme_commands():
        if any(marker in command for marker in NOT_RUN) or any(f in command.split() for f in YOURS):
            continue
        args = shlex.split(command.split(">")[0])
        named = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--engine", "--aligner")]
        if any(n not in available for n in named):   # an export only a hub or GPU command makes
            continue
        if (out := _made(args)) is not None:
            available.add(out)
        result = subprocess.run(command.replace(".venv/bin/", ""), shell=True, cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"README command failed as written: {command}\n{result.stderr[-2000:]}"
        ran.append(command)
    assert len(ran) >= 4, ran   # the test aligner's export and words, the live replays

"""The runtime-only install: `pip install qasr` with no extras (numpy + ONNX Runtime, no torch) transcribes
an export and runs the engine-only latency benchmark, in a virtual environment of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory) -> Path:
    import shutil

    root = tmp_path_factory.mktemp("runtime-only")
    env = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    # a clean copy of the source: a build/ left in the checkout by an earlier install would be packaged instead
    source = shutil.copytree(ROOT, root / "src", ignore=shutil.ignore_patterns(".venv", "build", "out", ".git",
                                                                              "*.egg-info", "testmodel"))
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["?"])[-1]
        if "Could not find a version" in result.stderr or "connection" in result.stderr.lower():
            pytest.skip(f"the package index cannot be reached to install the runtime's dependencies: {tail}")
        pytest.fail(f"pip install of the runtime failed: {tail}")
    return env


def _run(env: Path, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(env / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=600,
                          env=clean, cwd=env.parent)


def test_no_torch_and_no_exporter_dependencies(runtime_env):
    probe = _run(runtime_env, "python", "-c", "import importlib.util as u; print([m for m in ('torch', 'transformers', "
                 "'onnx') if u.find_spec(m)])")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def test_transcribes_an_export(runtime_env, shipped_export):
    """The same transcript as the full install gives, through the installed asr-transcribe."""
    from qasr.runtime.engine import Engine
    from qasr.runtime.transcribe import Transcriber

    example = ROOT / "examples" / "call.flac"
    expected = Transcriber(Engine(shipped_export)).transcribe([example])[0].text
    result = _run(runtime_env, "asr-transcribe", "--engine", str(shipped_export), "--format", "json", str(example))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["text"] == expected and expected
    # voice-activity segmentation: the Silero model ships inside the installed package
    result = _run(runtime_env, "asr-transcribe", "--engine", str(shipped_export), "--vad", "on", str(example))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_engine_only_latency_benchmark(runtime_env, shipped_export, tmp_path):
    out = tmp_path / "latency.json"
    result = _run(runtime_env, "python", "-m", "qasr.benchmarks.latency", "--engine", str(shipped_export),
                  "--batch", "1", "--audio-seconds", "2", "--new-tokens", "4", "--repeats", "1", "--warmup", "0",
                  "--json-out", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert rows and rows[0]["new_tokens"] == [4]


def test_the_installed_package_carries_no_test_assets_and_is_typed(runtime_env, shipped_export):
    """The wheel holds the product only: no test model, no speech (they stay in the repository's testmodel/); an
    exporter default that needs them says so in one line; the Python API imports and transcribes."""
    probe = _run(runtime_env, "python", "-c", "import qasr, pathlib; root = pathlib.Path(qasr.__file__).parent; "
                 "files = [p for p in root.rglob('*') if p.is_file()]; "
                 "print(sum(p.stat().st_size for p in files), sorted({p.suffix for p in files}), "
                 "(root / 'py.typed').is_file())")
    assert probe.returncode == 0, probe.stderr
    size, suffixes, typed = probe.stdout.rsplit(" ", 1)[0].split(" ", 1)[0], probe.stdout, probe.stdout.split()[-1]
    assert typed == "True"
    assert not any(s in suffixes for s in (".safetensors", ".flac", ".jsonl")), suffixes
    assert int(size) < 5e6, size        # 26 MB with the test assets; the Silero model is most of what is left
    refused = _run(runtime_env, "python", "-c", "from qasr.calibration.data import calibration_set; calibration_set()")
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "the shipped calibration split is not installed with the package (it lives in the source repository's "
        "testmodel/, or set QASR_TESTMODEL to such a folder); pass --calibration DIR_OR_JSONL")
    api = _run(runtime_env, "python", "-c", f"import qasr; s, i = qasr.Model({str(shipped_export)!r}).transcribe("
               f"{str(ROOT / 'examples' / 'call.flac')!r}); print(i.language, ' '.join(x.text for x in s))")
    assert api.returncode == 0, api.stderr
    assert api.stdout.strip() == "English please call me at seven thirty tomorrow morning"


def test_tools_without_their_extra_name_it_in_one_line(runtime_env, shipped_export, tmp_path):
    """asr-export (even --help), asr-serve and asr-wer on the runtime alone: one error line naming the extra to
    install, before any work."""
    cases = [(("asr-export", "--help"), "qasr[export]"),
             (("asr-serve", "--engine", str(shipped_export)), "qasr[serve]"),
             (("asr-wer", "--manifest", str(ROOT / "testmodel" / "speech" / "eval.jsonl"), "--engine",
               str(shipped_export)), "qasr[bench]")]
    for args, extra in cases:
        result = _run(runtime_env, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1, result.stderr
        assert extra in result.stderr, result.stderr

"""The WER-drift benchmark: manifest handling, normalisation, scoring, and a real run against the reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from qasr.benchmarks.machine import cpu_description
from qasr.reference.wer import SystemResult, format_table, normalise, paired_interval, score, utterance_edits
from qasr.runtime.speech_manifest import Utterance, read_manifest
from qasr.runtime.synthetic_audio import synthetic_speech
from qasr.errors import QasrError


def test_normalisation():
    assert normalise("Hello, World!  It's twenty-one.") == "hello world its twenty one"
    assert normalise("¿Qué?  «Sí»") == "qué sí"


def test_manifest_problems_are_reported_not_counted(tmp_path):
    sf.write(tmp_path / "a.flac", synthetic_speech(1.0), 16000)
    lines = [json.dumps({"audio": "a.flac", "text": "one"}), "{broken", json.dumps({"audio": "a.flac"}),
             json.dumps({"audio": "gone.flac", "text": "two"}), ""]
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    utterances, problems = read_manifest(tmp_path / "m.jsonl")
    assert [u.text for u in utterances] == ["one"]
    assert len(problems) == 3 and "gone.flac" in problems[2]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"audio": "gone.flac", "text": "x"}))
    with pytest.raises(QasrError, match="no usable lines"):
        read_manifest(tmp_path / "bad.jsonl")


def test_scores_against_known_transcripts(tmp_path):
    utts = [Utterance(Path(f"/u{i}"), t, {}) for i, t in enumerate(["the cat sat", "a dog ran far"])]
    first = SystemResult("ref", "pytorch", "fp32", [], {"/u0": "The cat sat.", "/u1": "a dog ran far"}, {}, 1.0, 10.0)
    second = SystemResult("exp", "onnxruntime", "fp32", [], {"/u0": "the cat sat", "/u1": "a dog ran"}, {}, 0.5, 10.0)
    summary, rows = score([first, second], utts)
    assert summary[0]["wer"] == 0.0 and summary[0]["identical_to_first"] == 100.0
    assert summary[1]["wer"] == pytest.approx(100 / 7) and summary[1]["wer_change_pp"] == pytest.approx(100 / 7)
    assert summary[1]["identical_to_first"] == 0.0 and summary[1]["rtf"] == pytest.approx(0.05)
    assert rows[1]["exp"] == "a dog ran"
    # paired bootstrap over the 2 utterances (0 and 1 edits of 3 and 4 words): a draw of u0 twice changes
    # nothing, u1 twice 25 pp; the reference against itself does not move
    assert summary[0]["wer_change_interval_pp"] == [0.0, 0.0]
    assert summary[1]["wer_change_interval_pp"] == pytest.approx([0.0, 25.0])
    assert "[+0.00, +25.00]" in format_table(summary)
    from qasr.benchmarks.wer import svg_bars

    assert svg_bars(summary).count("<path") == 1   # a whisker for the export, none for the reference


def test_utterance_edits_add_up_to_jiwer_and_the_interval_is_repeatable():
    import jiwer
    import numpy as np

    rng = np.random.default_rng(3)
    vocab = "the cat sat on a mat dog ran far".split()
    truth = [" ".join(rng.choice(vocab, rng.integers(1, 9))) for _ in range(60)]
    hyp = [" ".join(w for w in t.split() if rng.random() > 0.2) + (" dog" if rng.random() < 0.2 else "") for t in truth]
    edits = utterance_edits(truth, hyp)
    words = [len(t.split()) for t in truth]
    assert 100 * sum(edits) / sum(words) == pytest.approx(100 * jiwer.wer(truth, hyp))
    base = [0] * len(truth)
    interval = paired_interval(base, edits, words)
    assert interval == paired_interval(base, edits, words)     # seed 0: the same sets give the same interval
    assert 0 < interval[0] < 100 * sum(edits) / sum(words) < interval[1]
    assert paired_interval(edits, edits, words) == [0.0, 0.0]  # identical transcripts: no change at all


def test_benchmark_run_reference_against_export(checkpoints, exports, tmp_path):
    rows = []
    for i, seconds in enumerate((1.1, 2.6, 4.0)):
        sf.write(tmp_path / f"u{i}.flac", synthetic_speech(seconds, seed=20 + i), 16000)
        rows.append({"audio": f"u{i}.flac", "text": f"words number {i}", "voice": "synthetic"})
    rows.append({"audio": "missing.flac", "text": "never heard"})
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    out, plot = tmp_path / "r.json", tmp_path / "w.svg"
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "asr-wer"), "--manifest", str(manifest),
         "--model", str(checkpoints["original"]), "--engine", str(exports["original"]), "--no-repetition-guard",
         "--json-out", str(out), "--plot", str(plot), "--by", "voice", "--by", "words"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    assert "missing.flac" in result.stderr and "normalisation" in result.stdout
    report = json.loads(out.read_text())
    reference, export = report["systems"]
    assert reference["utterances"] == export["utterances"] == 3
    assert export["identical_to_first"] == 100.0 and export["wer_change_pp"] == 0.0  # fp32 export = reference
    assert export["wer_change_interval_pp"] == [0.0, 0.0] and "95% interval" in result.stdout
    assert report["reference_class"].endswith("Qwen3ASRForConditionalGeneration")
    assert report["cpu"] == cpu_description() and f"{os.cpu_count()} cores" in report["cpu"]
    assert len(report["utterances"]) == 3 and report["utterances"][0]["voice"] == "synthetic"
    assert plot.read_text().startswith("<svg") and "<path" not in plot.read_text()  # no change: no whisker
    assert "WER % by voice" in result.stdout and "WER % by words" in result.stdout
    assert [(r["group"], r["utterances"]) for r in report["breakdowns"]["voice"]] == [("synthetic", 3)]
    assert [r["group"] for r in report["breakdowns"]["words"]] == ["1-5"]
    bad = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "asr-wer"), "--manifest", str(manifest),
         "--engine", str(exports["original"]), "--by", "accent"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--by accent: no line" in bad.stderr and "Traceback" not in bad.stderr


def test_cpu_description_names_the_model_and_the_instruction_sets_that_matter(tmp_path):
    """Reports say which CPU ran them (static INT8 depends on its integer kernels): read from cpuinfo."""
    import platform

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse avx avx2 fma avx512f avx512_vnni\n\n"
                   "processor\t: 1\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse avx avx2 fma avx512f avx512_vnni\n")
    assert cpu_description(x86) == f"AMD EPYC 9654, {platform.machine()}, {os.cpu_count()} cores, avx2 avx512f avx512_vnni"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n")
    assert cpu_description(arm).endswith("cores, asimddp i8mm")
    assert cpu_description(tmp_path / "absent").split(", ")[1] == platform.machine()


def test_breakdown_groups_and_scores_each_group():
    from qasr.reference.wer import breakdown

    utts = [Utterance(Path("/a"), "one two three", {"noise": "babble"}),
            Utterance(Path("/b"), "four five", {"noise": None}),
            Utterance(Path("/c"), " ".join(["word"] * 12), {"noise": "babble"})]
    ref = SystemResult("ref", "pytorch", "fp32", [], {"/a": "one two three", "/b": "four", "/c": " ".join(["word"] * 12)},
                       {}, 1.0, 10.0)
    rows = {r["group"]: r for r in breakdown([ref], utts, "noise")}
    assert rows["babble"]["utterances"] == 2 and rows["babble"]["ref"] == 0.0
    assert rows["none"]["utterances"] == 1 and rows["none"]["ref"] == 50.0
    assert [r["group"] for r in breakdown([ref], utts, "words")] == ["1-5", "11-16"]


def test_breakdown_gives_each_group_its_own_paired_interval():
    """Per-group WER equals jiwer's over the group; the change of the second system gets a bootstrap interval
    over the group's utterances only: babble = {/a: 3 words, 1 more error; /c: 12 words, no change}, so a draw
    of /a twice moves it 33.3 pp, a mixed draw 6.7 pp and /c twice 0 (a quarter each, a half)."""
    import jiwer
    from qasr.reference.wer import breakdown, format_breakdown

    utts = [Utterance(Path("/a"), "one two three", {"noise": "babble"}),
            Utterance(Path("/b"), "four five", {"noise": None}),
            Utterance(Path("/c"), " ".join(["word"] * 12), {"noise": "babble"})]
    twelve = " ".join(["word"] * 12)
    ref = SystemResult("ref", "pytorch", "fp32", [], {"/a": "one two three", "/b": "four", "/c": twelve}, {}, 1.0, 10.0)
    other = SystemResult("int8", "onnxruntime", "int8", [], {"/a": "one two", "/b": "four", "/c": twelve}, {}, 1.0, 10.0)
    rows = {r["group"]: r for r in breakdown([ref, other], utts, "noise")}
    babble = rows["babble"]
    assert babble["int8"] == pytest.approx(100 * jiwer.wer(["one two three", twelve], ["one two", twelve]))
    assert babble["change_interval_pp"]["int8"] == [0.0, pytest.approx(100 / 3)]
    assert rows["none"]["change_interval_pp"]["int8"] == [0.0, 0.0] and rows["none"]["int8"] == 50.0
    assert set(babble["change_interval_pp"]) == {"int8"}          # no interval of the first system with itself
    table = format_breakdown(list(rows.values()), "noise", ["ref", "int8"])
    assert "[+0.0, +33.3]" in table and "95% interval of the change against ref" in table


def test_drift_goals_are_judged_on_the_absolute_change():
    from qasr.benchmarks.drift import drift_table

    rows = [{"wer": 10.0, "wer_change_pp": 0.0, "identical_to_first": 100.0, "wer_change_interval_pp": [0.0, 0.0]},
            {"wer": 10.1, "wer_change_pp": 0.1, "identical_to_first": 97.0, "wer_change_interval_pp": [0.0, 0.3]},
            {"wer": 9.7, "wer_change_pp": -0.3, "identical_to_first": 80.0, "wer_change_interval_pp": [-0.9, 0.2]},
            {"wer": 10.6, "wer_change_pp": 0.6, "identical_to_first": 70.0, "wer_change_interval_pp": [-0.1, 1.4]}]
    table = drift_table(rows, ["fp16", "int8-wo", "int8"]).splitlines()
    assert table[3].endswith("| yes |")            # fp16 +0.1 within 0.2
    assert table[4].endswith("| **no** |")         # weight-only INT8 -0.3 beyond 0.1 (either direction)
    assert table[5].endswith("| **no** |")         # static INT8 +0.6 beyond 0.5


def test_drift_tool_mixed_precision_export_and_sets_that_share_a_file_name(tmp_path):
    """python -m qasr.benchmarks.drift end to end on the trained test model: --keep-float makes a real export
    with those groups float (recorded in its manifest) judged by its base's goal, and two speech sets named
    eval.jsonl in two folders get a report each; a bad --keep-float is one line and a non-zero exit."""
    from click.testing import CliRunner

    from qasr.assets import EVAL_MANIFEST
    from qasr.benchmarks import drift

    lines = EVAL_MANIFEST.read_text().splitlines()
    for folder, rows in (("a", lines[:2]), ("b", lines[2:4])):
        (tmp_path / folder).mkdir()
        entries = [json.loads(r) for r in rows]
        for e in entries:
            e["audio"] = str(EVAL_MANIFEST.parent / e["audio"])
        (tmp_path / folder / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    out = tmp_path / "out"
    args = [str(out), "--export", "int8-wo", "--keep-float", "int8-wo:decoder.layer0,decoder.lm_head",
            "--manifest", str(tmp_path / "a" / "eval.jsonl"), "--manifest", str(tmp_path / "b" / "eval.jsonl")]
    result = CliRunner().invoke(drift.main, args)
    assert result.exit_code == 0, result.output
    name = "int8-wo-float-decoder.layer0-decoder.lm_head"
    manifest = json.loads((out / "exports" / f"test-model-{name}" / "manifest.json").read_text())
    assert manifest["export"]["quantization"]["excluded_groups"] == ["decoder.layer0", "decoder.lm_head"]
    reports = {p.name: json.loads(p.read_text()) for p in out.glob("drift-*.json")}
    assert sorted(reports) == ["drift-a-eval.json", "drift-b-eval.json"]
    assert [len(r["utterances"]) for r in reports.values()] == [2, 2]
    assert [r["system"] for r in reports["drift-a-eval.json"]["systems"]][1:] == [
        str(out / "exports" / "test-model-int8-wo"), str(out / "exports" / f"test-model-{name}")]
    assert f"| {name} |" in result.output and "| <= 0.1 |" in result.output

    bad = CliRunner().invoke(drift.main, [str(out), "--keep-float", "fp16:encoder.conv"])
    assert bad.exit_code != 0 and bad.output.count("\n") == 1 and "NAME:GROUP" in bad.output


def _report(path: Path, transcripts: dict[str, str], texts: dict[str, str], system: str = "reference") -> Path:
    path.write_text(json.dumps({"systems": [{"system": system}],
                                "utterances": [{"audio": k, "text": texts[k], system: v} for k, v in transcripts.items()]}))
    return path


def test_compare_two_reports_gives_the_paired_change(tmp_path):
    """Two saved reports of one set: B - A with the same paired interval asr-wer gives, and the counts."""
    texts = {"/a": "one two three", "/b": "four five", "/c": " ".join(["word"] * 12)}
    a = _report(tmp_path / "a.json", {"/a": "one two three", "/b": "four", "/c": texts["/c"]}, texts)
    b = _report(tmp_path / "b.json", {"/a": "one two", "/b": "four five", "/c": texts["/c"]}, texts)
    out = tmp_path / "cmp.json"
    run = subprocess.run([sys.executable, "-m", "qasr.benchmarks.compare", str(a), str(b), "--json-out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert (result["errors_a"], result["errors_b"], result["words"]) == (1, 1, 17)
    assert result["wer_change_pp"] == 0.0 and (result["better"], result["worse"]) == (1, 1)
    assert result["identical"] == pytest.approx(100 / 3)
    assert result["wer_change_interval_pp"] == paired_interval([0, 1, 0], [1, 0, 0], [3, 2, 12])
    assert "B - A: +0.00 pp" in run.stdout


def test_compare_refuses_reports_of_other_sets(tmp_path):
    texts = {"/a": "one two three", "/b": "four five"}
    a = _report(tmp_path / "a.json", {"/a": "one two three", "/b": "four"}, texts)
    b = _report(tmp_path / "b.json", {"/a": "one two three"}, texts)
    other = _report(tmp_path / "c.json", {"/a": "one", "/b": "four"}, {"/a": "one", "/b": "four five"})
    not_a_report = tmp_path / "d.json"
    not_a_report.write_text(json.dumps({"systems": [{"system": "reference"}], "utterances": [{"text": "x", "reference": "x"}]}))
    for args, message in (([a, b], "cover different utterances"), ([a, other], "have other texts"),
                          ([a, tmp_path / "missing.json"], "does not exist"),
                          ([a, a, "--system-b", "int8"], "no system 'int8'"),
                          ([a, not_a_report], "not an asr-wer --json-out report")):
        run = subprocess.run([sys.executable, "-m", "qasr.benchmarks.compare", *map(str, args)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_compare_matches_a_speech_set_rebuilt_in_another_folder(tmp_path):
    """The same set made again elsewhere (audio paths differ, relative paths and texts do not) compares;
    files outside the manifest's folder are still matched by their whole path."""
    texts = {"x.flac": "one two three", "y.flac": "four five"}
    def report(path, folder, transcripts):
        path.write_text(json.dumps({"manifest": f"{folder}/set.jsonl", "systems": [{"system": "reference"}],
                                    "utterances": [{"audio": f"{folder}/{k}", "text": texts[k], "reference": v}
                                                   for k, v in transcripts.items()]}))
        return path
    a = report(tmp_path / "a.json", "/old/seed7", {"x.flac": "one two three", "y.flac": "four"})
    b = report(tmp_path / "b.json", "/new/seed7", {"x.flac": "one two", "y.flac": "four five"})
    run = subprocess.run([sys.executable, "-m", "qasr.benchmarks.compare", str(a), str(b)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "over 2 utterances" in run.stdout, run.stderr
    moved = json.loads(b.read_text())
    moved["manifest"] = "/elsewhere/set.jsonl"      # audio no longer under the manifest's folder: whole paths
    b.write_text(json.dumps(moved))
    run = subprocess.run([sys.executable, "-m", "qasr.benchmarks.compare", str(a), str(b)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "cover different utterances" in run.stderr

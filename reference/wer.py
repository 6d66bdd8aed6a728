"""WER scoring against the PyTorch reference: text normalisation, the reference's and an export's
transcripts of a speech set, and WER / CER / drift per system (jiwer). asr-wer (qasr.benchmarks.wer),
asr-export's drift check (qasr.reference.verify) and the training recipe use it.
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass, field

from qasr.errors import QasrError
from qasr.runtime.speech_manifest import Utterance

NORMALISATION = ("lowercase; dashes become spaces; other Unicode punctuation removed; whitespace collapsed "
                 "(both hypothesis and reference); WER and CER by jiwer over the whole set")
BOOTSTRAP_DRAWS = 2000
INTERVAL = ("95% interval of the WER change: paired bootstrap over utterances (both systems scored on the same "
            f"resampled utterances), {BOOTSTRAP_DRAWS} draws, seed 0")


def normalise(text: str) -> str:
    out = []
    for ch in text.lower():
        category = unicodedata.category(ch)
        if category == "Pd":
            out.append(" ")
        elif not category.startswith("P"):
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


@dataclass
class SystemResult:
    name: str
    backend: str
    precision: str
    providers: list[str]
    hypotheses: dict[str, str] = field(default_factory=dict)   # audio path -> text
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0                                        # processing time
    audio_seconds: float = 0.0


def run_reference(model, utterances, options, progress) -> SystemResult:
    """`model`: a checkpoint path or hub id, or a ReferenceTranscriber already built."""
    import torch

    from .transcriber import ReferenceTranscriber

    if isinstance(model, ReferenceTranscriber):
        reference = model
    else:
        progress(f"reference: loading {model}")
        reference = ReferenceTranscriber(model)
    result = SystemResult("reference", f"pytorch {torch.__version__}", "fp32", ["torch-cpu"])
    start = time.perf_counter()
    for i, utt in enumerate(utterances, 1):
        t = reference.transcribe(utt.audio, options)
        _record(result, utt, t)
        if i % 20 == 0 or i == len(utterances):
            progress(f"reference: {i}/{len(utterances)}")
    result.seconds = time.perf_counter() - start
    return result


def run_engine(directory: str, utterances, options, progress, engine=None) -> SystemResult:
    """`engine`: the Engine of `directory` when the caller has one already."""
    from qasr.runtime.engine import Engine
    from qasr.runtime.transcribe import Transcriber

    if engine is None:
        progress(f"{directory}: loading")
        engine = Engine(directory)
    result = SystemResult(directory, engine.manifest.export.backend, engine.manifest.precision,
                          engine.providers)
    transcriber = Transcriber(engine)
    start = time.perf_counter()
    step = max(1, options.batch_size * 4)
    for first in range(0, len(utterances), step):
        chunk = utterances[first:first + step]
        for utt, t in zip(chunk, transcriber.transcribe([u.audio for u in chunk], options)):
            _record(result, utt, t)
        progress(f"{directory}: {min(first + step, len(utterances))}/{len(utterances)}")
    result.seconds = time.perf_counter() - start
    return result


def _record(result: SystemResult, utt: Utterance, transcript) -> None:
    key = str(utt.audio)
    if transcript.error:
        result.errors[key] = transcript.error
    else:
        result.hypotheses[key] = transcript.text
        result.audio_seconds += transcript.duration


def score(results: list[SystemResult], utterances: list[Utterance]) -> tuple[list[dict], list[dict]]:
    """(per-system summary rows, per-utterance rows) over the utterances every system transcribed."""
    import jiwer

    keys = transcribed_by_all(results, utterances)
    texts = {str(u.audio): u.text for u in utterances}
    base = results[0]
    summary = []
    truth, words, edits = word_edits([texts[k] for k in keys], [[r.hypotheses[k] for k in keys] for r in results])
    for r, system_edits in zip(results, edits):
        wer = 100 * sum(system_edits) / sum(words) if keys else float("nan")   # = jiwer.wer over the set (tested)
        cer = 100 * jiwer.cer(truth, [normalise(r.hypotheses[k]) for k in keys]) if keys else float("nan")
        identical = sum(r.hypotheses[k] == base.hypotheses[k] for k in keys)
        summary.append({"system": r.name, "backend": r.backend, "precision": r.precision, "providers": r.providers,
                        "utterances": len(keys), "errors": len(r.errors), "wer": wer, "cer": cer,
                        "identical_to_first": 100.0 * identical / max(len(keys), 1),
                        "rtf": r.seconds / r.audio_seconds if r.audio_seconds else float("nan")})
    for row, row_edits in zip(summary, edits):
        row["wer_change_pp"] = row["wer"] - summary[0]["wer"]
        row["wer_change_interval_pp"] = paired_interval(edits[0], row_edits, words)
    per_utt = []
    for u in utterances:
        k = str(u.audio)
        per_utt.append({"audio": k, "text": u.text, **u.fields,
                        **{r.name: r.hypotheses.get(k, None) for r in results},
                        "errors": {r.name: r.errors[k] for r in results if k in r.errors}})
    return summary, per_utt


def word_edits(texts: list[str], systems: list[list[str]]) -> tuple[list[str], list[int], list[list[int]]]:
    """The normalised reference texts (an empty one is the single word `<empty>`, as jiwer needs a word), their
    word counts, and each system's word edits per utterance: what every WER, change and interval here is summed
    from (the whole set in score, a group in breakdown, two saved reports in qasr.benchmarks.compare)."""
    truth = [normalise(t) or "<empty>" for t in texts]
    edits = [utterance_edits(truth, [normalise(h) for h in hyps]) for hyps in systems]
    return truth, [len(t.split()) for t in truth], edits


def utterance_edits(truth: list[str], hyp: list[str]) -> list[int]:
    """Word edits (substitutions + deletions + insertions) of each utterance: they sum to jiwer's whole-set count."""
    import jiwer

    if not truth:
        return []
    out = jiwer.process_words(truth, hyp)
    return [sum(max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
                for c in chunks if c.type != "equal") for chunks in out.alignments]


def paired_interval(base: list[int], other: list[int], words: list[int], draws: int = BOOTSTRAP_DRAWS) -> list[float]:
    """95% interval of WER(other) - WER(base) in percentage points: the utterances are drawn with replacement
    and both systems are scored on the same draw, so what they share (the hard utterances) cancels.
    Deterministic (seed 0): one speech set and two transcript sets always give the same interval."""
    import numpy as np

    if not words:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(0)
    diff, counts = np.asarray(other) - np.asarray(base), np.asarray(words)
    rows = max(1, 4_000_000 // len(words))   # draws per block: memory stays ~100 MB for any speech set
    changes = []
    for first in range(0, draws, rows):
        picks = rng.integers(0, len(words), size=(min(rows, draws - first), len(words)))
        changes.append(100 * diff[picks].sum(axis=1) / np.maximum(counts[picks].sum(axis=1), 1))
    lo, hi = np.percentile(np.concatenate(changes), [2.5, 97.5])
    return [float(lo), float(hi)]


WORD_BUCKETS = ((1, 5), (6, 10), (11, 16), (17, 10_000))


def group_of(utterance: Utterance, field: str) -> str:
    """The group an utterance falls in for a breakdown: a manifest field's value, or `words` (length)."""
    if field == "words":
        n = len(utterance.text.split())
        lo, hi = next(b for b in WORD_BUCKETS if b[0] <= n <= b[1])
        return f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"
    value = utterance.fields.get(field)
    return "none" if value is None else str(value)


def transcribed_by_all(results: list[SystemResult], utterances: list[Utterance]) -> list[str]:
    """The utterances (audio paths) every system transcribed: the ones scores are computed over."""
    return [str(u.audio) for u in utterances if all(str(u.audio) in r.hypotheses for r in results)]


def check_breakdown_fields(fields, utterances: list[Utterance], source) -> None:
    """Before any transcription: each --by field is `words` or a field some manifest line has."""
    for field in fields:
        if field != "words" and not any(field in u.fields for u in utterances):
            raise QasrError(f"--by {field}: no line of {source} has that field")


def breakdown(results: list[SystemResult], utterances: list[Utterance], field: str) -> list[dict]:
    """WER per group of `field` for each system, and for each system after the first the 95% paired interval of
    its change against the first within the group (a group of 20 utterances moves far more than the whole set):
    [{group, utterances, <system>: WER %, ..., change_interval_pp: {<system>: [low, high]}}] by group."""
    by_audio = {str(u.audio): u for u in utterances}
    keys = transcribed_by_all(results, utterances)
    _, words, edits = word_edits([by_audio[k].text for k in keys], [[r.hypotheses[k] for k in keys] for r in results])
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(group_of(by_audio[k], field), []).append(i)
    rows = []
    for group, members in sorted(groups.items()):
        counts = [words[i] for i in members]
        row = {"group": group, "utterances": len(members)}
        for r, system_edits in zip(results, edits):   # sum of edits / sum of words = jiwer.wer over the group
            row[r.name] = 100 * sum(system_edits[i] for i in members) / sum(counts)
        row["change_interval_pp"] = {
            r.name: paired_interval([edits[0][i] for i in members], [system_edits[i] for i in members], counts)
            for r, system_edits in zip(results[1:], edits[1:])}
        rows.append(row)
    return rows


def format_breakdown(rows: list[dict], field: str, systems: list[str]) -> str:
    names = [s.rstrip("/").split("/")[-1][-22:] for s in systems]
    lines = [f"WER % by {field}" + (f"; [low, high]: 95% interval of the change against {names[0]}, pp"
                                    if len(systems) > 1 else ""),
             f"{field:<18} {'utts':>5} " + " ".join(f"{n:>22}" for n in names)]
    for row in rows:
        cells = [f"{row[systems[0]]:>22.2f}"] + [
            f"{row[s]:>7.2f} [{row['change_interval_pp'][s][0]:+.1f}, {row['change_interval_pp'][s][1]:+.1f}]".rjust(22)
            for s in systems[1:]]
        lines.append(f"{row['group'][:18]:<18} {row['utterances']:>5} " + " ".join(cells))
    return "\n".join(lines)


def format_table(summary: list[dict]) -> str:
    lines = [f"{'system':<40} {'backend':<18} {'prec':<5} {'utts':>5} {'WER %':>7} {'CER %':>7} {'dWER pp':>8} "
             f"{'95% interval':>16} {'same %':>7} {'RTF':>7}"]
    for r in summary:
        lines.append(f"{r['system'][-40:]:<40} {r['backend'][:18]:<18} {r['precision']:<5} {r['utterances']:>5} "
                     f"{r['wer']:>7.2f} {r['cer']:>7.2f} {r['wer_change_pp']:>+8.2f} "
                     f"{format_interval(r['wer_change_interval_pp']):>16} {r['identical_to_first']:>7.1f} "
                     f"{r['rtf']:>7.3f}")
    lines.append(f"normalisation: {NORMALISATION}; 'same %': transcripts identical to the first system's; "
                 f"dWER: against the first system; {INTERVAL}")
    return "\n".join(lines)


def format_interval(interval: list[float]) -> str:
    lo, hi = interval
    return f"[{lo:+.2f}, {hi:+.2f}]"

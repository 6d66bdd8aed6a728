"""The check asr-export ends with: the export against the PyTorch reference (graphs, greedy tokens) and,
for fp16 and int8, its WER drift on held-out speech."""

from __future__ import annotations

from .parity import TOLERANCES, format_report, parity, within_tolerance

WER_DRIFT_LIMIT_PP = {"fp16": 0.5, "int8": 2.0, "int4": 2.0}   # held-out WER change (pp) an export may show
# An aligner export below fp32: this share of the slots the reference is sure of (top-1 minus top-2 score at least
# CONFIDENT_MARGIN) within one bin (80 ms) of the reference's, end to end
SLOTS_WITHIN_ONE_BIN = 0.9
CONFIDENT_MARGIN = 1.0
ALIGNER_TEXTS = ("the quick brown fox jumps over the lazy dog", "one two three, four five six seven eight nine ten!")


def held_out_drift(export_dir, reference, engine, manifest, limit: int) -> tuple[str, float]:
    """WER of the reference (a ReferenceTranscriber) and of the export's engine on `limit` held-out utterances:
    (table, drift in pp)."""
    from .wer import format_table, run_engine, run_reference, score
    from qasr.runtime.speech_manifest import read_manifest
    from qasr.runtime.transcribe import TranscribeOptions

    utterances, _ = read_manifest(manifest, limit)
    options = TranscribeOptions(language="English")
    results = [run_reference(reference, utterances, options, lambda _: None),
               run_engine(str(export_dir), utterances, options, lambda _: None, engine=engine)]
    summary, _ = score(results, utterances)
    return format_table(summary), summary[1]["wer_change_pp"]


def verify_export(export_dir, model, new_tokens: int = 20, seconds: tuple[float, ...] = (1.7, 9.3),
                  held_out=None, held_out_count: int = 20) -> tuple[str, bool]:
    """The short check asr-export ends with: (printable report, passed).

    `model`: the checkpoint (path, hub id, or the Checkpoint the export was made from: loaded once). One reference
    model and one Engine serve the graph parity, the token check and the held-out drift. `held_out` (a JSONL
    speech manifest; default: the shipped held-out split) measures WER drift for fp16 and int8 exports.
    """
    from qasr.export.checkpoint import load_checkpoint
    from qasr.runtime.engine import Engine

    from .model import build_reference

    checkpoint = load_checkpoint(model) if isinstance(model, str) else model
    if checkpoint.spec.alignment is not None:
        return verify_aligner_export(export_dir, checkpoint, seconds)
    engine = Engine(export_dir)
    reference = build_reference(checkpoint)
    errors, checks = parity(reference, engine, seconds, new_tokens)
    precision = engine.manifest.precision
    ok = all(within_tolerance(e, precision) for e in errors)
    if precision == "fp32":
        ok = ok and all(c.equal for c in checks)
        rule = f"graphs pass at max|err| <= {TOLERANCES['fp32']['atol']:g} + {TOLERANCES['fp32']['rtol']:g}*max|ref|, " \
               "tokens must all agree"
    else:
        rule = (f"judged by WER drift <= {WER_DRIFT_LIMIT_PP[precision]:g} pp on {held_out_count} held-out "
                "utterances" + (", graphs within fp16 tolerance" if precision in TOLERANCES else ""))
    report = format_report(errors, checks)
    if precision != "fp32":
        from qasr.assets import EVAL_MANIFEST, shipped

        from .transcriber import ReferenceTranscriber

        table, drift = held_out_drift(export_dir, ReferenceTranscriber(checkpoint, reference=reference), engine,
                                      held_out or shipped(EVAL_MANIFEST, "the shipped held-out split",
                                                                    "pass held_out= or export with --no-verify"),
                                      held_out_count)
        report += f"\nWER drift on held-out speech:\n{table}"
        ok = ok and drift <= WER_DRIFT_LIMIT_PP[precision]
    header = (f"accuracy against transformers' Qwen3ASRForConditionalGeneration ({precision}; {rule}): "
              f"{'PASS' if ok else 'FAIL'}")
    return header + "\n" + report, ok


def verify_aligner_export(export_dir, checkpoint, seconds: tuple[float, ...] = (1.7, 9.3)) -> tuple[str, bool]:
    """An aligner export against Qwen3ASRForTokenClassification on synthetic speech: graph errors and slot bins.
    fp32 passes at the graph tolerance with every slot's bin equal; other precisions when at least
    SLOTS_WITHIN_ONE_BIN of the slots are within one bin of the reference's."""
    from transformers import AutoTokenizer

    from qasr.runtime.aligner import Aligner
    from qasr.runtime.synthetic_audio import synthetic_speech

    from .alignment import aligner_parity, format_alignment_report
    from .model import build_reference

    aligner = Aligner(export_dir)
    reference = build_reference(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint.path))
    waves = [synthetic_speech(s, seed=i) for i, s in enumerate(seconds)]
    texts = [ALIGNER_TEXTS[i % len(ALIGNER_TEXTS)] for i in range(len(waves))]
    errors, checks = aligner_parity(reference, aligner, tokenizer, waves, texts)
    precision = aligner.manifest.precision
    slots = sum(len(c.reference) for c in checks)
    near = sum(c.near()[0] for c in checks)
    sure_near, sure = (sum(x) for x in zip(*(c.near(CONFIDENT_MARGIN) for c in checks)))
    if precision == "fp32":
        ok = all(within_tolerance(e, precision) for e in errors) and all(c.agree == len(c.reference) for c in checks)
        rule = f"graphs within max|err| <= {TOLERANCES['fp32']['atol']:g} + {TOLERANCES['fp32']['rtol']:g}*max|ref|, " \
               "every slot's bin equal"
    else:
        ok = sure_near >= SLOTS_WITHIN_ONE_BIN * sure
        rule = (f"at least {SLOTS_WITHIN_ONE_BIN:.0%} of the slots the reference is sure of (margin >= "
                f"{CONFIDENT_MARGIN:g}) within one bin of its choice")
    report = format_alignment_report(errors, checks) + (f"\nslots within one bin: {near}/{slots}; of the slots the "
                                                        f"reference is sure of: {sure_near}/{sure}")
    header = (f"accuracy against transformers' Qwen3ASRForTokenClassification ({precision}; {rule}): "
              f"{'PASS' if ok else 'FAIL'}")
    return header + "\n" + report, ok

"""The transcription pipeline on real files through ONNX Runtime, against its own unbatched self."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from qasr.runtime.synthetic_audio import synthetic_speech
from qasr.runtime.stopping import DecodeOptions
from qasr.runtime.transcribe import TranscribeOptions, Transcriber

OPTIONS = TranscribeOptions(decode=DecodeOptions(max_new_tokens=24))


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    files = {}
    for i, seconds in enumerate((0.3, 2.2, 7.3, 9.1)):
        files[seconds] = root / f"clip{i}.wav"
        sf.write(files[seconds], synthetic_speech(seconds, seed=10 + i), 16000)
    return files


def test_batched_transcripts_equal_unbatched(engines, audio_files):
    transcriber = Transcriber(engines["original"])
    paths = list(audio_files.values())
    batched = transcriber.transcribe(paths, TranscribeOptions(batch_size=4, decode=OPTIONS.decode))
    single = [transcriber.transcribe([p], TranscribeOptions(batch_size=1, decode=OPTIONS.decode))[0] for p in paths]
    assert [t.text for t in batched] == [t.text for t in single]
    assert all(t.text and t.error is None for t in batched)
    assert len({t.text for t in batched}) == len(paths)  # different audio, different (noise) transcripts


def test_other_rate_and_stereo_equal_the_mono_16k_file(engines, audio_files, tmp_path):
    mono = sf.read(audio_files[2.2], dtype="float32")[0]
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([mono, mono], axis=1), 16000)
    transcriber = Transcriber(engines["hf"])
    a, b = transcriber.transcribe([audio_files[2.2], stereo], OPTIONS)
    assert a.text == b.text
    resampled = tmp_path / "44k.flac"
    from qasr.runtime.audio import resample

    sf.write(resampled, resample(mono, 16000, 44100), 44100)
    c = transcriber.transcribe([resampled], OPTIONS)[0]
    assert c.error is None and abs(c.duration - a.duration) < 0.01


def test_silence_gives_an_empty_transcript(engines, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(32000, dtype=np.float32), 16000)
    result = Transcriber(engines["original"]).transcribe([path], OPTIONS)[0]
    assert result.text == "" and result.error is None and result.segments[0].stop_reason == "silence"


def test_one_bad_file_does_not_stop_the_batch(engines, audio_files, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF0000WAVEjunk")
    results = Transcriber(engines["original"]).transcribe([audio_files[0.3], corrupt, tmp_path / "nope.wav"], OPTIONS)
    assert results[0].error is None and results[0].text
    assert "cannot decode" in results[1].error and "no such file" in results[2].error


def test_long_audio_is_split_and_joined(engines, tmp_path):
    audio = np.concatenate([synthetic_speech(6.0, seed=1), np.zeros(4000, np.float32), synthetic_speech(6.0, seed=2)])
    path = tmp_path / "long.wav"
    sf.write(path, audio, 16000)
    options = TranscribeOptions(max_segment_seconds=8.0, decode=OPTIONS.decode)
    result = Transcriber(engines["original"]).transcribe([path], options)[0]
    assert len(result.segments) == 2
    assert 6.0 <= result.segments[0].end <= 6.25  # cut inside the quiet quarter second
    assert result.text == " ".join(s.text for s in result.segments)


def test_budget_and_stop_reasons_are_reported(engines, audio_files):
    """Each stop reason as the tokens say: a fixed budget cuts at exactly its length unless EOS came first; the
    free run stops where its own tokens show why (EOS before the audio-length budget, or that budget, or a repeat)."""
    transcriber = Transcriber(engines["original"])
    free = transcriber.transcribe([audio_files[7.3]], TranscribeOptions())[0].segments[0]
    fixed = transcriber.transcribe([audio_files[7.3]], TranscribeOptions(decode=DecodeOptions(max_new_tokens=5)))[0]
    segment = fixed.segments[0]
    if free.stop_reason == "eos" and free.tokens < 5:
        assert (segment.stop_reason, segment.tokens) == ("eos", free.tokens)
    else:   # the first 5 tokens of the free run, then the budget
        assert (segment.stop_reason, segment.tokens) == ("budget", 5)
    budget = DecodeOptions().budget(7.3)
    # each reason with what it implies: the budget is spent exactly; EOS and a trimmed repeat end before it
    assert (free.tokens == budget) == (free.stop_reason == "budget"), (free.stop_reason, free.tokens, budget)
    assert free.stop_reason in ("eos", "budget", "repetition")


def test_kv_cache_is_allocated_once_and_reused(engines, audio_files):
    engine = engines["hf"]
    transcriber = Transcriber(engine)
    transcriber.transcribe(list(audio_files.values()), OPTIONS)
    before = engine.cache.allocations
    for _ in range(2):
        transcriber.transcribe(list(audio_files.values()), OPTIONS)
    assert engine.cache.allocations == before  # same sizes again: nothing new allocated


def test_batches_respect_the_cache_memory_limit(engines, audio_files):
    engine = engines["original"]
    transcriber = Transcriber(engine)
    paths = list(audio_files.values())
    one_row = (engine.audio_tokens(920) + 64 + OPTIONS.decode.budget(9.2)) * engine.cache_slot_bytes
    tight = TranscribeOptions(batch_size=8, max_cache_gb=1.5 * one_row / (1 << 30), decode=OPTIONS.decode)
    jobs = sorted((transcriber._prepare(p, tight)[1][0] for p in paths), key=lambda j: j.features.shape[1])
    batches = list(transcriber._batches(jobs, tight))
    assert 1 < len(batches) < len(jobs) and sum(len(b) for b in batches) == len(jobs)
    for batch in batches:
        slots = max(engine.audio_tokens(j.features.shape[1]) + 64 + OPTIONS.decode.budget(j.end - j.start) for j in batch)
        assert len(batch) == 1 or len(batch) * slots * engine.cache_slot_bytes <= tight.max_cache_gb * (1 << 30)
    loose = TranscribeOptions(batch_size=3, decode=OPTIONS.decode)
    assert [len(b) for b in transcriber._batches(jobs, loose)] == [3, 1]
    assert [t.text for t in transcriber.transcribe(paths, tight)] == [t.text for t in transcriber.transcribe(paths, loose)]

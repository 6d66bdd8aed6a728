"""Live transcription in the runtime: streamed audio pieces, cached encoder windows, confirmation, turns, the
session, the Python API and asr-transcribe --live. Real sessions on the shipped trained test model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qasr.errors import AudioError, QasrError
from qasr.runtime.features import FeatureSettings, LogMel
from qasr.runtime.audio import resample
from qasr.runtime.live.audio import LiveInput, StreamResampler
from qasr.runtime.live.features import StreamingLogMel
from qasr.runtime.live.policy import Policy
from qasr.runtime.live.turns import TurnDetection, TurnTracker

ROOT = Path(__file__).resolve().parents[1]
CALL = ROOT / "examples" / "call.flac"
CALL_TEXT = (ROOT / "examples" / "call.txt").read_text().strip()


def _pieces(samples: np.ndarray, seed: int, low: int = 1, high: int = 4000):
    rng = np.random.default_rng(seed)
    at = 0
    while at < len(samples):
        n = int(rng.integers(low, high))
        yield samples[at: at + n]
        at += n


@pytest.mark.fast
@pytest.mark.parametrize("source", [24000, 44100, 8000, 48000, 16000])
def test_resampling_in_pieces_equals_resampling_the_whole(source):
    x = np.random.default_rng(source).standard_normal(source // 2).astype(np.float32)
    whole = resample(x, source, 16000)   # the offline path
    resampler = StreamResampler(source, 16000)
    streamed = np.concatenate([*(resampler.push(p) for p in _pieces(x, 1, 1, 900)), resampler.flush()])
    assert len(streamed) == len(whole)
    assert np.abs(streamed - whole).max() < 1e-5


@pytest.mark.fast
def test_live_input_takes_int16_and_refuses_what_it_cannot_read():
    live = LiveInput(16000, 16000)
    assert live.push(np.array([16384, -32768], dtype=np.int16)).tolist() == [0.5, -1.0]
    stereo = np.array([[16384, 0], [-32768, -32768]], dtype=np.int16)    # int16 is scaled before the downmix
    assert live.push(stereo).tolist() == [0.25, -1.0]
    with pytest.raises(AudioError, match="NaN"):
        live.push(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(AudioError, match="float or int16"):
        live.push(np.array([1, 2], dtype=np.int32))
    with pytest.raises(AudioError, match="positive integer"):
        LiveInput(16000.0, 16000)
    with pytest.raises(AudioError, match="positive integer"):
        LiveInput(0, 16000)


@pytest.mark.fast
def test_streaming_features_equal_the_offline_features_at_every_step():
    """Each frame's spectrum is computed once, yet after every piece the features equal the offline features of
    all samples so far (the floor follows the loudest frame so far; the short-input padding below 0.5 s)."""
    from qasr.runtime.audio import load_audio, resample

    x = load_audio(CALL, 16000)
    x = np.concatenate([0.05 * x, x])                    # louder audio later: the floor moves up mid-stream
    mel = LogMel(FeatureSettings())
    stream = StreamingLogMel(mel)
    fed = 0
    for piece in _pieces(x, 2, 100, 6000):
        stream.append(piece)
        fed += len(piece)
        spec, peak = stream.log_spectrum()
        live, offline = mel.floored(spec, peak), mel(x[:fed])
        assert live.shape == offline.shape
        assert np.abs(live - offline).max() < 1e-5


class _Words:
    """Word starts of a toy vocabulary: ids 0-99 start words, 100+ continue them."""

    def __call__(self, token: int) -> bool:
        return token < 100


@pytest.mark.fast
def test_policies_confirm_agreed_tokens_up_to_a_word_boundary():
    agreement = Policy("agreement", _Words())
    assert agreement.confirm([1, 101, 2, 102], None) == 0                  # nothing to agree with yet
    assert agreement.confirm([1, 101, 2, 102, 3], [1, 101, 2, 102, 4]) == 4   # the word 2+102 ends where 3/4 start
    assert agreement.confirm([1, 101, 2, 102], [1, 101, 2, 103]) == 2       # 2+10x differs: only word 1+101
    assert agreement.confirm([1, 101, 2, 102], [1, 101, 2, 102]) == 2       # the last word waits for the next one
    assert agreement.confirm([5, 6], [7, 6]) == 0
    rollback = Policy("rollback", _Words(), rollback_tokens=2)
    assert rollback.confirm([1, 101, 2, 102, 3, 4], None) == 4
    assert rollback.confirm([1, 101, 102, 103], None) == 0                 # all one word: nothing confirmed
    with pytest.raises(QasrError, match="policy must be one of"):
        Policy("greedy", _Words())


@pytest.mark.fast
def test_turn_tracker_starts_at_threshold_and_stops_after_the_silence():
    tracker = TurnTracker(TurnDetection(threshold=0.5, silence_duration_ms=96))   # 3 windows of 32 ms
    changes = [tracker.feed(p) for p in (0.1, 0.6, 0.9, 0.4, 0.2, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1)]
    # 0.4 is above the hysteresis floor (0.35): still speech; the run of three lows after 0.9 ends the turn
    assert changes == [None, "start", None, None, None, None, None, None, None, "stop", None]
    with pytest.raises(QasrError, match="threshold"):
        TurnDetection(threshold=1.5).check()


# -- with the shipped trained model ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(shipped_export):
    from qasr.runtime.engine import Engine

    return Engine(shipped_export)


@pytest.fixture(scope="module")
def held_out():
    """Eight held-out utterances (16 kHz) and their texts."""
    from qasr.assets import EVAL_MANIFEST
    from qasr.runtime.audio import load_audio
    from qasr.runtime.speech_manifest import read_manifest

    utterances, _ = read_manifest(Path(EVAL_MANIFEST), 8)
    return [load_audio(u.audio, 16000) for u in utterances], [u.text for u in utterances]


def test_cached_encoder_windows_equal_one_encode_of_the_whole_turn(engine, held_out):
    """21 s in one turn, fed in 0.5 s pieces: completed 8 s windows are encoded once (and again only when a louder
    frame moves the floor past theirs), and the embeddings equal one encode of all the samples."""
    from qasr.runtime.live.encoding import TurnEncoding

    audios, _ = held_out
    x = np.concatenate([np.concatenate([a, np.zeros(4000, np.float32)]) for a in audios[:6]])
    x[-16000:] *= 4.0                                     # a louder end: the floor rises after two windows closed
    turn = TurnEncoding(engine)
    steps = 0
    for lo in range(0, len(x), 8000):
        turn.append(x[lo: lo + 8000])
        work = turn.pending()
        turn.accept(engine.encode(work) if work else [])
        steps += 1
    whole = engine.encode([engine.features(x)])[0]
    live = turn.embeddings()
    assert live.shape == whole.shape and turn.audio_tokens() == len(whole)
    assert np.abs(live - whole).max() <= 1e-4 * np.abs(whole).max()
    frames = engine.features(x).shape[1]
    windows = -(-frames // engine.window_frames)
    assert turn.reencoded >= 1
    # each completed window encoded about once (plus floor changes); the open window at every step
    assert turn.encoded_frames <= steps * engine.window_frames + (windows + turn.reencoded) * engine.window_frames


def _events(session, samples: np.ndarray, rate: int = 16000, chunk: float = 0.1):
    events = []
    size = int(rate * chunk)
    for lo in range(0, len(samples), size):
        events += session.feed(samples[lo: lo + size])
    return events + session.finish()


def _check_turn_events(events) -> dict[int, str]:
    """Every turn: started before committed before completed; its deltas add up to (a prefix of) its final text.
    Returns turn -> completed text."""
    done = {}
    for turn in sorted({e.turn for e in events}):
        kinds = [e.kind for e in events if e.turn == turn and e.kind != "tail"]
        assert kinds.count("completed") == 1 and kinds[-1] == "completed"
        assert kinds.index("committed") < kinds.index("completed")
        if "speech_started" in kinds:
            assert kinds.index("speech_started") < kinds.index("committed")
        final = next(e.text for e in events if e.turn == turn and e.kind == "completed")
        deltas = "".join(e.text for e in events if e.turn == turn and e.kind == "delta")
        assert final.startswith(deltas)
        done[turn] = final
    return done


def test_live_turns_of_joined_utterances_agree_with_offline(engine, held_out):
    """Eight held-out utterances joined with 1 s pauses, fed in 100 ms pieces: voice activity makes the turns,
    confirmed text arrives before each turn ends, and the live WER stays near offline's on the same audio."""
    from qasr.reference.wer import normalise, utterance_edits
    from qasr.runtime.live.session import LiveSession
    from qasr.runtime.transcribe import TranscribeOptions, Transcriber

    audios, texts = held_out
    joined = np.concatenate([np.concatenate([a, np.zeros(16000, np.float32)]) for a in audios])
    session = LiveSession(engine)
    events = _events(session, joined)
    finals = _check_turn_events(events)
    assert len(finals) >= len(audios)
    early = [e for e in events if e.kind == "delta" and e.at < next(
        c.at for c in events if c.kind == "committed" and c.turn == e.turn)]
    assert len(early) >= len(audios)              # text confirmed while the turn was still being spoken
    live = " ".join(t for t in finals.values() if t)
    offline = " ".join(t.text for t in Transcriber(engine).transcribe(audios, TranscribeOptions()))
    truth = [normalise(" ".join(texts))]
    words = len(truth[0].split())
    live_wer = sum(utterance_edits(truth, [normalise(live)])) / words
    offline_wer = sum(utterance_edits(truth, [normalise(offline)])) / words
    assert live_wer <= offline_wer + 0.08            # measured: benchmarks/RESULTS.md, "Live transcription"
    stats = session.stream.stats
    assert stats["final_steps"] == len(finals) and stats["steps"] > stats["final_steps"]


def test_the_policies_and_manual_commits(engine):
    """Without turn detection the caller commits; both policies give the example's text; an empty commit is
    refused; clear drops the audio; 24 kHz int16 gives the same text as 16 kHz floats."""
    from qasr.runtime.audio import load_audio
    from qasr.runtime.live.session import LiveSession
    from qasr.runtime.live.stream import LiveOptions

    x = load_audio(CALL, 16000)
    for policy in ("agreement", "rollback"):
        session = LiveSession(engine, LiveOptions(turn_detection=None, policy=policy))
        events = []
        for lo in range(0, len(x), 1600):
            events += session.feed(x[lo: lo + 1600])
        assert [e.kind for e in events if e.kind not in ("tail", "delta")] == []     # nothing ends a turn yet
        events += session.commit()
        finals = _check_turn_events(events)
        assert list(finals.values()) == [CALL_TEXT]
        assert not session.stream.commit()                                          # nothing left to commit
    session = LiveSession(engine, LiveOptions(turn_detection=None))
    session.feed(x[:16000])
    assert session.clear() == [] and session.commit() == []
    pcm = (np.clip(resample(x, 16000, 24000), -1, 1) * 32767).astype(np.int16)
    session = LiveSession(engine, sample_rate=24000)
    finals = _check_turn_events(_events(session, pcm, 24000))
    assert list(finals.values()) == [CALL_TEXT]


def test_compute_per_second_does_not_grow_with_the_stream(engine, held_out):
    """Work per audio second (frames encoded, prompt tokens per step) is the same for a 10 s and a 60 s stream:
    turns are bounded, completed windows are not encoded again (counts, not timings: the benchmark times it)."""
    from qasr.runtime.live.session import LiveSession

    audios, _ = held_out
    joined = np.concatenate([np.concatenate([a, np.zeros(16000, np.float32)]) for a in audios])
    per = {}
    for seconds in (10, 60):
        x = np.tile(joined, -(-seconds * 16000 // len(joined)))[: seconds * 16000]
        session = LiveSession(engine)
        _events(session, x)
        s = session.stream.stats
        per[seconds] = (s["encoded_frames"] / seconds, s["prompt_tokens"] / s["steps"])
    assert per[60][0] <= 1.25 * per[10][0] and per[60][1] <= 1.25 * per[10][1]


def test_model_live_api_and_its_refusals(shipped_export):
    import qasr
    from qasr.runtime.audio import load_audio

    model = qasr.Model(shipped_export)
    session = model.live(sample_rate=16000)
    x = load_audio(CALL, 16000)
    events = _events(session, x)
    assert isinstance(events[0], qasr.LiveEvent)
    assert [e.text for e in events if e.kind == "completed"] == [CALL_TEXT]
    with pytest.raises(QasrError, match="policy must be one of"):
        model.live(policy="eager")
    with pytest.raises(QasrError, match="unknown language"):
        model.live(language="klingon")
    with pytest.raises(QasrError, match="step_seconds"):
        model.live(step_seconds=0)
    with pytest.raises(QasrError, match="threshold"):
        model.live(turn_detection=qasr.TurnDetection(threshold=0))
    with pytest.raises(AudioError, match="cannot change"):
        session = model.live(sample_rate=16000)
        session.feed(x[:1600])
        session.feed(x[:1600], 48000)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "asr-transcribe"), *args], capture_output=True,
                          text=True, timeout=300)


def test_asr_transcribe_live_replays_a_file(shipped_export):
    done = _cli("--engine", str(shipped_export), "--live", "--speed", "20", str(CALL))
    assert done.returncode == 0, done.stderr
    assert done.stdout == CALL_TEXT + "\n"
    events = [json.loads(line) for line in _cli("--engine", str(shipped_export), "--live", "--speed", "50",
                                                "--format", "json", str(CALL)).stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "speech_started" and kinds[-1] == "completed" and "delta" in kinds
    assert events[-1]["text"] == CALL_TEXT and events[-1]["language"] == "English"
    # deltas come as the audio plays, not all at the end: the first is out before half the file was replayed
    first = next(e for e in events if e["type"] == "delta")
    assert first["audio_s"] < events[-1]["audio_s"] / 2 + 0.5
    for args, message in ((("--speed", "2"), "--speed needs --live"),
                          (("--live", str(CALL)), "--live replays one file, not 2"),
                          (("--live", "--format", "srt"), "--live prints text (txt) or events (json), not srt")):
        failed = _cli("--engine", str(shipped_export), *args, str(CALL))
        assert failed.returncode == 2 and failed.stderr.strip() == f"error: {message}"


def _reuse_matches(engine, waves) -> None:
    """A prompt that brings back the cache an earlier call kept for its first tokens decodes exactly as the same
    prompt prefilled whole, alone and in a batch beside a prompt without one; the kept cache equals a fresh one."""
    from qasr.runtime.generate import Prompt
    from qasr.runtime.stopping import DecodeOptions

    x = waves[25.3]
    embeds = engine.encode([engine.features(x)])[0]
    ids = engine.prompts.build(len(embeds), "", None)
    keep = ids.index(engine.prompts.audio_token_id) + 2 * engine.audio_tokens(engine.window_frames)
    options = DecodeOptions(max_new_tokens=12, min_new_tokens=12)
    first = engine.generate([Prompt(ids, embeds, 12, keep=keep)], options)[0]
    assert first.kept is not None and first.kept.tokens == keep
    longer = ids + first.tokens[:3]
    plain = engine.generate([Prompt(longer, embeds, 12, keep=keep)], options)[0]
    reused = engine.generate([Prompt(longer, embeds, 12, reuse=first.kept)], options)[0]
    assert reused.tokens == plain.tokens
    for a, b in zip(first.kept.kv, plain.kept.kv):
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max())
    other_embeds = engine.encode([engine.features(waves[7.3])])[0]
    other = Prompt(engine.prompts.build(len(other_embeds), "", None), other_embeds, 12)
    alone = engine.generate([other], options)[0]
    both = engine.generate([Prompt(longer, embeds, 12, reuse=first.kept), other], options)
    assert [g.tokens for g in both] == [plain.tokens, alone.tokens]


def test_decoder_prefix_reuse_standard_decoder(engines, waves):
    assert engines["original"].attention == "standard" and engines["original"].reuses_prefixes
    _reuse_matches(engines["original"], waves)


def test_decoder_prefix_reuse_fused_decoder(fused_engine, waves):
    assert fused_engine.attention == "gqa" and fused_engine.reuses_prefixes
    _reuse_matches(fused_engine, waves)


def test_live_steps_with_the_kept_cache_equal_steps_without(engine, held_out):
    """Turns of up to 20 s without turn detection: completed windows exist, their decoder cache is brought back
    each step, and every event is the same as with the whole prompt prefilled at every step."""
    from qasr.runtime.live.session import LiveSession
    from qasr.runtime.live.stream import LiveOptions

    audios, _ = held_out
    x = np.concatenate([np.concatenate([a, np.zeros(3200, np.float32)]) for a in audios])
    runs = {}
    for reuse in (True, False):
        session = LiveSession(engine, LiveOptions(turn_detection=None, max_turn_seconds=20, reuse_prefix=reuse))
        runs[reuse] = ([(e.kind, e.turn, e.text) for e in _events(session, x)], dict(session.stream.stats))
    assert runs[True][0] == runs[False][0]
    assert runs[True][1]["reused_tokens"] > 0 and runs[False][1]["reused_tokens"] == 0
    assert runs[True][1]["prompt_tokens"] < 0.7 * runs[False][1]["prompt_tokens"]


def test_the_live_example_runs(shipped_export):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "live.py"), str(shipped_export), str(CALL)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == CALL_TEXT and lines[1].endswith(f"English] {CALL_TEXT}") and lines[1].startswith("[turn 0: 0.00-")

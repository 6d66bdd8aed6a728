"""Live transcription: audio fed while it is spoken, text confirmed as it is heard (docs/decisions/0024-live.md).

- audio.py: any declared sample rate (float or int16) to the model's, resampled in a stream.
- features.py: the log-mel of a growing turn, computed once per frame, equal to the offline features.
- encoding.py: a turn's encoder windows, each completed window encoded once.
- turns.py: Silero voice activity in a stream: when turns start and end (OpenAI's server_vad).
- policy.py: which tokens of a hypothesis are confirmed (LocalAgreement-2, or the official prefix rollback).
- stream.py: one stream's state machine: audio in, decode work out, events back.
- runner.py: decode work of many streams run as one encoder batch and one decoder batch.
- session.py: LiveSession, a stream with its own engine calls (the Python API and asr-transcribe --live).
"""

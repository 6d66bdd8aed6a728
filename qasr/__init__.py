"""qasr: Qwen3-ASR checkpoints to verified ONNX engines, and a lean runtime to transcribe with them.

    import qasr

    model = qasr.Model("out/test-model-fp32-onnx")          # an export directory made by asr-export
    segments, info = model.transcribe("examples/call.flac")
    for segment in segments:                                 # lazy: each batch decodes as you iterate
        print(f"[{segment.start:.2f}s -> {segment.end:.2f}s] {segment.text}")

    model = qasr.Model("out/test-model-fp32-onnx", aligner="out/test-aligner-onnx")   # word timestamps
    segments, info = model.transcribe("examples/call.flac", word_timestamps=True)  # segment.words: [Word]

    session = model.live(sample_rate=24000)                  # live: feed audio as it is spoken
    for event in session.feed(chunk):                        # float or int16 samples
        if event.kind == "delta":                            # confirmed text, only ever appended
            print(event.text, end="", flush=True)

Messages go to the `qasr` logger (logging.getLogger("qasr")); nothing is printed by the library.
"""

from __future__ import annotations

import logging

from qasr.runtime.version import __version__

logging.getLogger("qasr").addHandler(logging.NullHandler())

__all__ = ["Model", "Segment", "Word", "TranscriptionInfo", "Transcript", "LiveEvent", "TurnDetection", "QasrError",
           "AudioError", "ExportDirError", "__version__"]


def __getattr__(name: str):
    # the API is imported on first use, so `import qasr.export` does not load the runtime's sessions
    if name in ("Model", "TranscriptionInfo"):
        from qasr.runtime import model

        return getattr(model, name)
    if name in ("Segment", "Transcript"):
        from qasr.runtime import transcribe

        return getattr(transcribe, name)
    if name == "Word":
        from qasr.runtime.words import Word

        return Word
    if name == "LiveEvent":
        from qasr.runtime.live import stream

        return stream.LiveEvent
    if name == "TurnDetection":
        from qasr.runtime.live import turns

        return turns.TurnDetection
    if name in ("QasrError", "AudioError", "ExportDirError"):
        from qasr import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'qasr' has no attribute {name!r}")

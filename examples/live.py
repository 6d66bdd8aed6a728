"""Live transcription in a few lines: python examples/live.py [EXPORT_DIR] [AUDIO]

Plays AUDIO into a live session in 100 ms chunks at real-time pace, as a microphone would deliver it, and prints
the confirmed text as it arrives. EXPORT_DIR defaults to the directory scripts/demo.sh exports the test model to.
"""

import sys
import time

import soundfile as sf

import qasr

export_dir = sys.argv[1] if len(sys.argv) > 1 else "out/test-model-fp32-onnx"
audio = sys.argv[2] if len(sys.argv) > 2 else "examples/call.flac"

model = qasr.Model(export_dir, device="cpu")
samples, rate = sf.read(audio, dtype="float32")          # any rate: the session resamples as the audio arrives
session = model.live(sample_rate=rate)


def show(event: qasr.LiveEvent) -> None:
    if event.kind == "delta":                            # confirmed text: only ever appended
        print(event.text, end="", flush=True)
    elif event.kind == "completed":                      # the turn's final text
        print(f"\n[turn {event.turn}: {event.start:.2f}-{event.end:.2f} s, {event.language}] {event.text}")


chunk = rate // 10
for start in range(0, len(samples), chunk):
    time.sleep(0.1)                                      # the microphone's pace
    for event in session.feed(samples[start:start + chunk]):
        show(event)
for event in session.finish():
    show(event)

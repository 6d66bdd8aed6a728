"""The Python API in a few lines: python examples/transcribe.py [EXPORT_DIR] [AUDIO]

EXPORT_DIR defaults to the directory scripts/demo.sh exports the shipped test model to.
"""

import sys

import qasr

export_dir = sys.argv[1] if len(sys.argv) > 1 else "out/test-model-fp32-onnx"
audio = sys.argv[2] if len(sys.argv) > 2 else "examples/call.flac"

model = qasr.Model(export_dir, device="cpu")
segments, info = model.transcribe(audio, language="English")
print(f"{info.source}: {info.duration:.2f} s, language {info.language}")
for segment in segments:   # decoded as the loop reaches them
    print(f"[{segment.start:.2f}s -> {segment.end:.2f}s] {segment.text}")

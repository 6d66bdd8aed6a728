"""qasr.runtime: load an export directory and transcribe audio with ONNX Runtime (numpy only, no torch)."""

from .version import __version__

__all__ = ["__version__"]

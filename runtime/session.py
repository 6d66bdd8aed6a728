"""One exported graph in ONNX Runtime, run with IO binding into buffers the caller owns.

`Runner` is the protocol the decode loop talks to (`infer(feeds, outputs)`); a TensorRT or PyTorch
runner can stand in for it. ONNX Runtime sessions are the one implementation for now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from qasr.errors import ExportDirError, QasrError

NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(bool)": np.bool_}


class Runner(Protocol):
    input_names: list[str]
    output_names: list[str]

    def infer(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray] | None = None
              ) -> dict[str, np.ndarray]: ...


CUDA = "CUDAExecutionProvider"

# --device choices of the command-line tools
DEVICE_PROVIDERS = {"auto": None, "cpu": ["CPUExecutionProvider"], "cuda": [CUDA, "CPUExecutionProvider"]}


class ObservedRunner:
    """A Runner that shows every run's feeds to an observer (calibration records them) and runs the real graph."""

    def __init__(self, inner: Runner, graph: str, observer):
        self.inner, self.graph, self.observer = inner, graph, observer
        self.input_names, self.output_names = inner.input_names, inner.output_names

    @classmethod
    def wrap(cls, inner, graph: str, observer):
        return cls(inner, graph, observer) if observer else inner

    def infer(self, feeds, outputs=None):
        self.observer(self.graph, feeds)
        return self.inner.infer(feeds, outputs)

    def __getattr__(self, name):   # providers, device, session: the inner runner's
        return getattr(self.inner, name)


def disabled_optimizers_for(export) -> tuple[str, ...]:
    """Graph optimizers to turn off for an export: static INT8 graphs carry one Q/DQ pair per consumer so
    that ONNX Runtime fuses them into integer kernels; common-subexpression elimination would merge the
    pairs again and leave every weight dequantized to fp32 at each step (qasr.quantize.static)."""
    if export.precision == "int8" and export.static_int8:
        return ("CommonSubexpressionElimination",)
    return ()


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in (CUDA, "CPUExecutionProvider") if p in available]


class OrtRunner:
    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0,
                 disabled_optimizers: tuple[str, ...] = (), cuda_graph: bool = False, cuda_only: bool = False):
        """`providers` given (e.g. --device cuda) are required: a missing CUDA provider is an error, never a
        quiet CPU run. `cuda_only`: ONNX Runtime refuses the session if it would place any node on the CPU."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        asked = list(providers or [])
        if CUDA in asked and CUDA not in ort.get_available_providers():
            raise QasrError(f"CUDA was asked for, but this ONNX Runtime ({ort.__version__}) has no "
                            f"{CUDA}: install onnxruntime-gpu (pip install 'qasr[gpu]') or use --device cpu")
        if cuda_only:
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        providers = list(providers or default_providers())
        if cuda_graph:  # every node must then run on CUDA; ONNX Runtime refuses the session otherwise
            providers = [(p, {"enable_cuda_graph": "1"}) if p == CUDA else p for p in providers]
        try:
            extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
            self.session = ort.InferenceSession(str(path), options, providers=providers, **extra)
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            reason = str(exc).splitlines()[0]
            if cuda_only:
                raise QasrError(f"{path}: ONNX Runtime would run part of this graph on the CPU, which this graph "
                                f"cannot do correctly or fast on CUDA ({reason})") from None
            raise ExportDirError(f"{path}: ONNX Runtime cannot load this graph ({reason})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_dtypes = {o.name: NUMPY_DTYPES[o.type] for o in self.session.get_outputs()}
        self.providers = self.session.get_providers()
        if CUDA in asked and CUDA not in self.providers:   # e.g. CUDA libraries missing: ORT fell back
            raise QasrError(f"{path}: CUDA was asked for, but ONNX Runtime could not start its {CUDA} "
                            "(CUDA/cuDNN libraries not found?); nothing was run on the CPU instead")
        # where the session's tensors live: the first provider's device (ONNX Runtime's device names)
        self.device = ("cuda", 0) if self.providers[0] == CUDA else ("cpu", 0)

    def infer(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray] | None = None
              ) -> dict[str, np.ndarray]:
        """Run the graph. Outputs named in `outputs` are written into those (preallocated) arrays."""
        outputs = outputs or {}
        binding = self.session.io_binding()
        for name in self.input_names:
            binding.bind_cpu_input(name, np.ascontiguousarray(feeds[name]))
        for name in self.output_names:
            target = outputs.get(name)
            if target is None:
                binding.bind_output(name, "cpu")
            else:
                binding.bind_output(name, "cpu", 0, target.dtype, list(target.shape), target.ctypes.data)
        self.session.run_with_iobinding(binding)
        results = dict(outputs)
        for name, value in zip(self.output_names, binding.get_outputs()):
            if name not in outputs:
                results[name] = value.numpy()
        return results

"""The export directory's manifest as frozen dataclasses: every section typed, one reader, one writer.

`Manifest.from_json` is the one validator: a missing or mistyped field is an ExportDirError naming its
path in the manifest (`export.precision`), never a KeyError later. `Manifest.to_json` writes the same
JSON the runtime has always read (format version 3, docs/decisions/); older versions are migrated on
read (migrate.py). The exporter builds a Manifest, quantization derives a new one with
`dataclasses.replace`, and nothing edits manifest JSON in place.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import names
from .audio_tokens import conv_output_length
from qasr.errors import ExportDirError

EXPORT_FORMAT = "qasr-export"
# Bumped whenever the manifest schema, a graph's inputs/outputs or the cache layout change in a way an older
# runtime cannot read; migrate.py reads the older versions listed in READABLE_FORMAT_VERSIONS.
EXPORT_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)


PAUSE_MODES = ("merge", "split")


def check_pauses(value, name: str = "pauses", error: type[Exception] = ValueError) -> str:
    """`value` if it is a pause rule, else `error` with one line naming where it came from (`name`)."""
    if value not in PAUSE_MODES:
        raise error(f"{name} must be one of {', '.join(PAUSE_MODES)}, not {value!r}")
    return value   # how long audio's speech regions become segments


# -- the model -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioSpec:
    num_mel_bins: int
    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    n_window: int
    n_window_infer: int
    downsample_hidden_size: int
    output_dim: int
    activation: str

    @property
    def chunk_frames(self) -> int:
        return 2 * self.n_window

    @property
    def tokens_per_chunk(self) -> int:
        return conv_output_length(self.chunk_frames)

    @property
    def chunks_per_window(self) -> int:
        return self.n_window_infer // self.chunk_frames

    @property
    def conv_freq_bins(self) -> int:
        return conv_output_length(self.num_mel_bins)


@dataclass(frozen=True)
class TextSpec:
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_dim: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    activation: str


@dataclass(frozen=True)
class ModelInfo:
    audio: AudioSpec
    text: TextSpec
    tokens_per_chunk: int
    support_languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSettings:
    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 128
    min_samples: int = 8000          # shorter input is zero padded to 0.5 s, as the official pipeline does
    dynamic_range: float = 8.0
    log_floor: float = 1e-10


@dataclass(frozen=True)
class Tokens:
    audio_token: str
    audio_token_id: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    special: dict[str, int] = field(default_factory=dict)   # the prompt's tokens (<|im_start|>, ...), flat in JSON

    def to_json(self) -> dict:
        return {"audio_token": self.audio_token, "audio_token_id": self.audio_token_id,
                "eos_token_ids": list(self.eos_token_ids), "pad_token_id": self.pad_token_id, **self.special}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Tokens":
        if not isinstance(data, dict):
            raise ExportDirError(f"{where} must be an object, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        special = {k: v for k, v in data.items() if k not in known}
        return parse(cls, {**{k: v for k, v in data.items() if k in known}, "special": special}, where)


@dataclass(frozen=True)
class PromptFormat:
    template: str
    language_prefix: str


@dataclass(frozen=True)
class Alignment:
    """What a forced aligner (Qwen3-ForcedAligner) predicts: at each `<timestamp>` slot one of `classes` time
    bins of `segment_ms` milliseconds (docs/decisions/0025-word-timestamps.md)."""
    classes: int
    timestamp_token_id: int
    segment_ms: float = 80.0
    timestamp_token: str = "<timestamp>"

    @property
    def max_seconds(self) -> float:
        return self.classes * self.segment_ms / 1000.0


@dataclass(frozen=True)
class Segmentation:
    """What the model takes per segment: the official Qwen3-ASR limits unless the checkpoint says otherwise
    (the section is written only then; a model that learnt single short utterances says `split`)."""
    max_seconds: float = 1200.0
    pauses: str = "merge"


@dataclass(frozen=True)
class CacheLayout:
    layers: int
    kv_heads: int
    head_dim: int
    dtype: str
    layout: tuple[str, ...] = ("batch", "kv_heads", "capacity", "head_dim")
    past: tuple[str, ...] = ("past_key_values.{i}.key", "past_key_values.{i}.value")
    present: tuple[str, ...] = ("present.{i}.key", "present.{i}.value")
    written_by: str = ""


# -- the graphs and files ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str                       # numpy-style name: float32, float16, int64, int32, bool
    shape: tuple[str | int, ...]     # symbolic names are dynamic, ints are fixed


@dataclass(frozen=True)
class Graph:
    file: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def dtype(self, tensor: str) -> str:
        for spec in self.inputs + self.outputs:
            if spec.name == tensor:
                return spec.dtype
        raise ExportDirError(f"the manifest's graph {self.file} has no tensor {tensor}")


@dataclass(frozen=True)
class FileEntry:
    bytes: int
    sha256: str


# -- how it was made -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    model: str
    path: str
    layout: str
    weights_sha256: str


@dataclass(frozen=True)
class Quantization:
    """What quantization did (qasr.quantize): the record tables and reports quote."""
    mode: str                                 # static | weight-only
    excluded_groups: tuple[str, ...] = ()
    weights: str = ""
    activations: str = ""
    target: str | None = None                 # weight-only: cpu | cuda
    accuracy_level: int | None = None         # weight-only: MatMulNBits' accuracy_level (None: ORT's default)
    calibration: dict[str, Any] | None = None  # static, gptq, awq: source, utterances, audio_sha256 (+ method)
    smoothquant: dict[str, Any] | None = None
    awq: dict[str, Any] | None = None
    dynamic: dict[str, str] | None = None     # CPU weight-only: graphs quantized as dynamic INT8
    lm_head: str | None = None                # CPU weight-only: the shared 4/8-bit embedding and lm_head table


@dataclass(frozen=True)
class ExportInfo:
    precision: str                            # fp32 | fp16 | int8 | int4
    backend: str = "onnxruntime"
    opset: int = 18
    attention: str = names.ATTENTION_STANDARD  # standard | gqa
    device: str | None = None                 # cpu | cuda (exports before the --device flag: None)
    max_positions: int | None = None          # gqa: the RoPE table's length
    requires: dict[str, str] | None = None    # {"onnxruntime": oldest version the graphs run on}
    quantization: Quantization | None = None

    @property
    def static_int8(self) -> bool:
        return self.quantization is not None and self.quantization.mode == "static"


@dataclass(frozen=True)
class Manifest:
    format_version: int
    created_by: dict[str, str]
    source: Source
    export: ExportInfo
    model: ModelInfo
    tokens: Tokens
    features: FeatureSettings
    graphs: dict[str, Graph]
    files: dict[str, FileEntry]
    # speech recognition exports: the prompt and the decoder's KV cache (an aligner has neither)
    prompt: PromptFormat | None = None
    cache: CacheLayout | None = None
    tokenizer: dict[str, str] = field(default_factory=lambda: {"file": names.TOKENIZER})
    segmentation: Segmentation | None = None
    # aligner exports (Qwen3-ForcedAligner): what the classification head predicts
    alignment: Alignment | None = None
    # Where it was loaded from (not part of the JSON): graph_path() and tokenizer_path resolve against it.
    directory: Path | None = field(default=None, compare=False)

    # -- what the runtime asks -------------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        return self.export.precision

    @property
    def is_aligner(self) -> bool:
        return self.alignment is not None

    @property
    def limits(self) -> Segmentation:
        return self.segmentation or Segmentation()

    def graph_path(self, graph: str) -> Path:
        return self._dir() / self.graphs[graph].file

    def graph_dtype(self, graph: str, tensor: str) -> str:
        return self.graphs[graph].dtype(tensor)

    @property
    def tokenizer_path(self) -> Path:
        return self._dir() / self.tokenizer.get("file", names.TOKENIZER)

    def _dir(self) -> Path:
        if self.directory is None:
            raise ExportDirError("this manifest was not loaded from an export directory")
        return self.directory

    # -- JSON --------------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": EXPORT_FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "directory" or value is None:
                continue
            data[f.name] = _to_json(value)
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = names.MANIFEST) -> "Manifest":
        """Validate and type a manifest already migrated to EXPORT_FORMAT_VERSION (migrate.py)."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise ExportDirError(f"{where} is not a qasr export manifest")
        return parse(cls, {k: v for k, v in data.items() if k != "format"}, where)


# -- the one validator ---------------------------------------------------------------------------------------
def _to_json(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def parse(cls, data: Any, where: str):
    """An instance of dataclass `cls` from JSON `data`, every field checked against its annotation."""
    if not isinstance(data, dict):
        raise ExportDirError(f"{where} must be an object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name == "directory":
            continue
        path = f"{where}.{f.name}"
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ExportDirError(f"{path} is missing")
            continue
        values[f.name] = _typed(hints[f.name], data[f.name], path)
    return cls(**values)


def _typed(hint, value: Any, path: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:
            try:
                return _typed(option, value, path)
            except ExportDirError:
                continue
        return _typed(options[-1], value, path)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return hint.from_json(value, path) if hasattr(hint, "from_json") else parse(hint, value, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise ExportDirError(f"{path} must be a list, not {type(value).__name__}")
        return tuple(_typed(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ExportDirError(f"{path} must be an object, not {type(value).__name__}")
        return {k: _typed(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ExportDirError(f"{path} must be {hint.__name__}, not {type(value).__name__} ({value!r})")
    return value

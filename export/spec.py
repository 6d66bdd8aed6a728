"""What a Qwen3-ASR checkpoint is, read from its own config files (never from class defaults).

Both layouts in the wild are understood:
- original (Qwen/Qwen3-ASR-0.6B, -1.7B and fine-tunes): `config.json` holds a `thinker_config` with
  `audio_config`, `text_config` and the token ids;
- transformers-native (`-hf`): `audio_config` / `text_config` at the top level.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qasr.exportformat.audio_tokens import audio_token_count as _audio_token_count
from qasr.exportformat.schema import Alignment, AudioSpec, TextSpec  # noqa: F401  (the exporter's names for them)
from qasr.errors import CheckpointError
from qasr.exportformat.schema import check_pauses

ORIGINAL = "original"
HF = "hf"


@dataclass(frozen=True)
class ModelSpec:
    layout: str
    audio: AudioSpec
    text: TextSpec
    audio_token_id: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    support_languages: tuple[str, ...]
    # The longest audio one segment may hold: the official 1200 s, unless the checkpoint's config.json says
    # less (`qasr_max_audio_seconds`: the project's test model, trained on utterances of a few seconds).
    max_audio_seconds: float = 1200.0
    # What a pause between speech regions does in long audio: merge (regions join up to the limit) unless
    # the config says `qasr_segment_pauses: "split"` (the test model: it learnt single utterances).
    segment_pauses: str = "merge"
    # A forced aligner (Qwen3-ForcedAligner): the classification head's bins instead of the LM head
    alignment: Alignment | None = None

    @property
    def pad_id(self) -> int | None:
        """The padding token: the checkpoint's pad_token_id, else its first EOS id (what generate() uses)."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_token_ids[0] if self.eos_token_ids else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def audio_token_count(frames: int, audio: AudioSpec) -> int:
    """Audio tokens the encoder emits for `frames` valid mel frames (full chunks plus the partial one)."""
    return _audio_token_count(frames, audio.chunk_frames, audio.tokens_per_chunk)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def _need(cfg: dict[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise CheckpointError(f"{where} has no '{key}'; cannot tell the model's shape without it")
    return cfg[key]


def detect_layout(config: dict[str, Any], where: str) -> str:
    if config.get("model_type") != "qwen3_asr":
        raise CheckpointError(f"{where} is not a Qwen3-ASR checkpoint (model_type is {config.get('model_type')!r})")
    if "thinker_config" in config:
        return ORIGINAL
    if "audio_config" in config and "text_config" in config:
        return HF
    raise CheckpointError(f"{where} says qwen3_asr but has neither thinker_config nor audio_config/text_config")


def _audio_spec(cfg: dict[str, Any], where: str) -> AudioSpec:
    spec = AudioSpec(
        num_mel_bins=int(cfg.get("num_mel_bins", 128)),  # both config classes default to this and to 480 below
        d_model=int(_need(cfg, "d_model", where)),
        layers=int(_need(cfg, "encoder_layers", where)),
        heads=int(_need(cfg, "encoder_attention_heads", where)),
        ffn_dim=int(_need(cfg, "encoder_ffn_dim", where)),
        n_window=int(_need(cfg, "n_window", where)),
        n_window_infer=int(_need(cfg, "n_window_infer", where)),
        downsample_hidden_size=int(cfg.get("downsample_hidden_size", 480)),
        output_dim=int(_need(cfg, "output_dim", where)),
        activation=str(cfg.get("activation_function", "gelu")),
    )
    if spec.n_window_infer % spec.chunk_frames:
        raise CheckpointError(f"{where}: n_window_infer {spec.n_window_infer} is not a multiple of 2*n_window")
    if spec.activation != "gelu":
        raise CheckpointError(f"{where}: audio activation {spec.activation!r} is not supported (gelu only)")
    return spec


def _rope_theta(cfg: dict[str, Any], where: str) -> float:
    params = cfg.get("rope_parameters") or {}
    if "rope_theta" in params:
        return float(params["rope_theta"])
    if "rope_theta" in cfg:
        return float(cfg["rope_theta"])
    raise CheckpointError(f"{where} has no rope_theta; refusing to guess it (class defaults differ from the checkpoints)")


def _text_spec(cfg: dict[str, Any], where: str, tie_default: bool) -> TextSpec:
    hidden = int(_need(cfg, "hidden_size", where))
    heads = int(_need(cfg, "num_attention_heads", where))
    return TextSpec(
        vocab_size=int(_need(cfg, "vocab_size", where)),
        hidden_size=hidden,
        layers=int(_need(cfg, "num_hidden_layers", where)),
        heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads", heads)),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        ffn_dim=int(_need(cfg, "intermediate_size", where)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=_rope_theta(cfg, where),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        activation=str(cfg.get("hidden_act", "silu")),
    )


def _as_tuple(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


# How the aligner checkpoints say what they are: the original layout's thinker `model_type` (its head is
# `thinker.lm_head`, `classify_num` rows); the -hf layout's architecture (its head is `score`, `num_labels` rows).
ALIGNER_THINKER = "qwen3_forced_aligner"
ALIGNER_ARCHITECTURE = "Qwen3ASRForTokenClassification"
DEFAULT_TIMESTAMP_TOKEN_ID = 151705
DEFAULT_SEGMENT_MS = 80.0


def _alignment(config: dict[str, Any], root: dict[str, Any], layout: str, checkpoint: Path, where: str
               ) -> Alignment | None:
    if layout == ORIGINAL:
        if root.get("model_type") != ALIGNER_THINKER and "classify_num" not in root:
            return None
        classes = int(_need(root, "classify_num", where + " thinker_config"))
    else:
        if ALIGNER_ARCHITECTURE not in (config.get("architectures") or []):
            return None
        labels = config.get("id2label")
        classes = int(config.get("num_labels") or (len(labels) if labels else 0))
        if classes < 2:
            raise CheckpointError(f"{where}: a token-classification aligner needs num_labels or id2label")
    token = root.get("timestamp_token_id", config.get("timestamp_token_id", DEFAULT_TIMESTAMP_TOKEN_ID))
    segment = root.get("timestamp_segment_time", config.get("timestamp_segment_time"))
    processor = checkpoint / "processor_config.json"
    if segment is None and processor.is_file():   # the -hf layout keeps it with the processor
        segment = _read_json(processor).get("timestamp_segment_time")
    segment = float(DEFAULT_SEGMENT_MS if segment is None else segment)
    if segment <= 0:
        raise CheckpointError(f"{where}: timestamp_segment_time must be positive, not {segment}")
    return Alignment(classes=classes, timestamp_token_id=int(token), segment_ms=segment)


def read_spec(checkpoint: Path) -> ModelSpec:
    """Build the ModelSpec from `checkpoint/config.json` (+ generation_config.json for EOS ids)."""
    where = str(checkpoint / "config.json")
    if not (checkpoint / "config.json").is_file():
        raise CheckpointError(f"{checkpoint} is not a checkpoint directory (no config.json)")
    config = _read_json(checkpoint / "config.json")
    layout = detect_layout(config, where)
    root = config["thinker_config"] if layout == ORIGINAL else config
    tie_default = bool(config.get("tie_word_embeddings", True))
    audio = _audio_spec(_need(root, "audio_config", where), where + " audio_config")
    text = _text_spec(_need(root, "text_config", where), where + " text_config", tie_default)
    if audio.output_dim != text.hidden_size:
        raise CheckpointError(f"{where}: audio output_dim {audio.output_dim} != text hidden_size {text.hidden_size}")
    generation = {}
    if (checkpoint / "generation_config.json").is_file():
        generation = _read_json(checkpoint / "generation_config.json")
    eos = _as_tuple(generation.get("eos_token_id")) or _as_tuple(root.get("eos_token_id") or config.get("eos_token_id"))
    pad = generation.get("pad_token_id", root.get("pad_token_id", config.get("pad_token_id")))
    alignment = _alignment(config, root, layout, checkpoint, where)
    return ModelSpec(
        alignment=alignment,
        layout=layout,
        audio=audio,
        text=text,
        audio_token_id=int(_need(root, "audio_token_id", where)),
        eos_token_ids=eos,
        pad_token_id=None if pad is None else int(pad),
        support_languages=tuple(config.get("support_languages", ())),
        max_audio_seconds=float(config.get("qasr_max_audio_seconds", 1200.0)),
        segment_pauses=check_pauses(config.get("qasr_segment_pauses", "merge"), f"{where}: qasr_segment_pauses",
                                    CheckpointError),
    )


def read_features(checkpoint: Path, spec: ModelSpec):
    """The feature extractor's settings from preprocessor_config.json (the one place it is read; Whisper's
    defaults where a field is missing), checked against the encoder's mel bins."""
    from qasr.runtime.features import FeatureSettings

    path = checkpoint / "preprocessor_config.json"
    data = _read_json(path) if path.is_file() else {}
    settings = FeatureSettings(
        sample_rate=int(data.get("sampling_rate", 16000)), n_fft=int(data.get("n_fft", 400)),
        hop_length=int(data.get("hop_length", 160)), n_mels=int(data.get("feature_size", spec.audio.num_mel_bins)))
    if settings.n_mels != spec.audio.num_mel_bins:
        raise CheckpointError(f"{path}: feature_size {settings.n_mels} != the encoder's num_mel_bins")
    return settings

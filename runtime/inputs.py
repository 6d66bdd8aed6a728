"""What can be transcribed, and the one line that refuses anything else.

One input is a path (str or os.PathLike), a bare array of samples at the model's rate (16 kHz), a pair
(samples, sample_rate), encoded audio as bytes (or a `data:` URI in base64), or a binary file-like object.
Samples are [frames] or [frames, channels]; every format soundfile decodes is read, at any rate, and resampled.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import numpy as np

from .audio import decode_bytes, load_audio, prepare_waveform
from qasr.errors import AudioError

KINDS = "a path, a 16 kHz array, (array, sample_rate), bytes or a binary file object"
URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://")


def is_pair(item) -> bool:
    """(samples, sample_rate): two items, the second an integer rate, the first not a path or bytes."""
    return (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], (int, np.integer))
            and not isinstance(item[1], bool) and not isinstance(item[0], (str, bytes, os.PathLike)))


def input_name(item) -> str:
    """How an input is named in results and errors."""
    if isinstance(item, (str, os.PathLike)):
        text = str(item)
        return "<data URI>" if text.startswith("data:") else text
    if isinstance(item, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if hasattr(item, "read"):
        return str(getattr(item, "name", "<file object>"))
    return "<array>"


def read_input(item, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate` of one input (see the module doc); AudioError otherwise."""
    name = input_name(item)
    if isinstance(item, (str, os.PathLike)):
        text = str(item)
        if text.startswith(URL_SCHEMES):
            raise AudioError(f"{text}: a URL; qasr does not download audio: fetch it first and pass the file, its "
                             "bytes or its samples")
        if text.startswith("data:"):
            return decode_bytes(_data_uri(text), sample_rate, name)
        return load_audio(Path(item), sample_rate)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(item), sample_rate, name)
    if hasattr(item, "read"):
        data = item.read()
        if isinstance(data, str):
            raise AudioError(f"{name}: a text-mode file; open audio files in binary mode ('rb')")
        return decode_bytes(data, sample_rate, name)
    if isinstance(item, np.ndarray):
        return prepare_waveform(item, sample_rate, sample_rate, name=name)
    if is_pair(item):
        return prepare_waveform(np.asarray(item[0]), int(item[1]), sample_rate, name=name)
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], float):
        raise AudioError(f"(samples, sample_rate): the sample rate must be an integer, not {item[1]!r}")
    raise AudioError(f"cannot transcribe an object of type {type(item).__name__}: give {KINDS}")


def _data_uri(text: str) -> bytes:
    head, _, payload = text.partition(",")
    if ";base64" not in head or not payload:
        raise AudioError("data URI: only base64 data URIs of encoded audio are read (data:audio/...;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise AudioError("data URI: the base64 payload does not decode") from None

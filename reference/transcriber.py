"""Transcripts from the PyTorch reference, through the same audio handling as the runtime.

Audio loading, the silence rule and long-audio splitting are shared with qasr.runtime.transcribe,
so a comparison isolates the model: features come from transformers' own feature extractor, the
prompt from the checkpoint's own tokenizer, tokens from transformers' greedy `generate()` with the
same audio-length budget. One utterance at a time (no padding effects).
"""

from __future__ import annotations

import numpy as np
import torch

from qasr.runtime.prompt import language_name, parse_output, prompt_text
from qasr.runtime.transcribe import Segment, TranscribeOptions, Transcript, finish, load_segments

from qasr.export.checkpoint import load_checkpoint
from qasr.export.spec import audio_token_count, read_features

from .model import build_reference

REFERENCE_CLASS = "transformers.Qwen3ASRForConditionalGeneration"


class ReferenceTranscriber:
    def __init__(self, model, dtype: torch.dtype = torch.float32, reference=None):
        """`model`: a checkpoint path or hub id, or a loaded Checkpoint; `reference`: its model, if built already."""
        from transformers import AutoTokenizer
        from transformers.models.qwen3_asr.feature_extraction_qwen3_asr import Qwen3ASRFeatureExtractor

        checkpoint = load_checkpoint(model) if isinstance(model, str) else model
        self.spec = checkpoint.spec
        self.model = reference if reference is not None else build_reference(checkpoint, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint.path))
        features = read_features(checkpoint.path, self.spec)
        self.sample_rate = features.sample_rate
        self.extractor = Qwen3ASRFeatureExtractor(
            feature_size=features.n_mels, sampling_rate=self.sample_rate, hop_length=features.hop_length,
            n_fft=features.n_fft, n_window=self.spec.audio.n_window)
        self.audio_token = self.tokenizer.convert_ids_to_tokens(self.spec.audio_token_id)
        self.pad_id = self.spec.pad_id

    def transcribe(self, path, options: TranscribeOptions = TranscribeOptions()) -> Transcript:
        language = language_name(options.language, self.spec.support_languages)
        transcript, pieces = load_segments(path, self.sample_rate, options, self.spec.max_audio_seconds,
                                           self.spec.segment_pauses)
        for start, end, samples in pieces:
            tokens, reason = self._generate(samples, options.context, language, options.decode.budget(end - start))
            parsed = parse_output(self.tokenizer.decode(tokens, skip_special_tokens=True), language,
                                  self.spec.support_languages)
            transcript.segments.append(Segment(start, end, parsed.text, parsed.language, reason, len(tokens)))
        finish(transcript, language)
        return transcript

    @torch.no_grad()
    def _generate(self, samples: np.ndarray, context: str, language: str | None, budget: int):
        features = self.extractor(samples, sampling_rate=self.sample_rate, padding="longest", return_tensors="pt",
                                  return_attention_mask=True)
        frames = int(features["attention_mask"].sum())
        text = prompt_text(self.audio_token, audio_token_count(frames, self.spec.audio), context, language)
        ids = torch.tensor([self.tokenizer.encode(text, add_special_tokens=False)])
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids),
            input_features=features["input_features"].to(self.model.dtype),
            input_features_mask=features["attention_mask"], max_new_tokens=budget, do_sample=False, num_beams=1,
            eos_token_id=list(self.spec.eos_token_ids), pad_token_id=self.pad_id)
        tokens = out[0, ids.shape[1]:].tolist()
        for i, token in enumerate(tokens):
            if token in self.spec.eos_token_ids:
                return tokens[:i], "eos"
        return tokens, "budget"

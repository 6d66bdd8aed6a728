"""The numpy log-mel equals transformers' Qwen3ASRFeatureExtractor, called as the processor calls it."""

from __future__ import annotations

import numpy as np
import pytest

from qasr.runtime.features import FeatureSettings, LogMel, slaney_mel_filters

pytestmark = pytest.mark.fast   # no export: the fast tier (pytest -m fast)


def test_mel_filters_equal_transformers():
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(num_frequency_bins=201, num_mel_filters=128, min_frequency=0.0, max_frequency=8000.0,
                          sampling_rate=16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(slaney_mel_filters(400, 128, 16000), ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("samples", [1200, 8000, 8001, 48077, 16000 * 25 + 33])
def test_log_mel_equals_transformers(samples):
    from transformers.models.qwen3_asr.feature_extraction_qwen3_asr import Qwen3ASRFeatureExtractor

    rng = np.random.default_rng(samples)
    audio = (0.1 * rng.standard_normal(samples) * np.sin(np.arange(samples) / 300)).astype(np.float32)
    ref = Qwen3ASRFeatureExtractor()(audio, sampling_rate=16000, padding="longest", return_tensors="np",
                                     return_attention_mask=True)
    frames = int(ref["attention_mask"][0].sum())
    ours = LogMel(FeatureSettings())(audio)
    assert ours.shape == (128, frames)
    np.testing.assert_allclose(ours, ref["input_features"][0][:, :frames], atol=5e-5)


def test_audio_token_count_equals_transformers():
    import torch
    from transformers.models.qwen3_asr.modeling_qwen3_asr import _get_feat_extract_output_lengths

    from qasr.exportformat.audio_tokens import audio_token_count

    frames = list(range(1, 420)) + [799, 800, 801, 2530, 120000]
    expected = _get_feat_extract_output_lengths(torch.tensor(frames), n_window=50).tolist()
    assert [audio_token_count(f, 100, 13) for f in frames] == expected

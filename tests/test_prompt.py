"""Prompts are token for token what the reference's tokenizer makes; outputs parse as the official package does."""

from __future__ import annotations

import random

import pytest

from qasr.errors import QasrError
from qasr.runtime.prompt import collapse_repetitions, language_name, parse_output


@pytest.mark.parametrize("context,language", [("", None), ("names: Ada, Linus", None), ("", "English")])
def test_prompt_ids_equal_the_reference_tokenizer(engines, checkpoints, context, language):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoints["original"]))
    builder = engines["original"].prompts
    text = (f"<|im_start|>system\n{context}<|im_end|>\n<|im_start|>user\n<|audio_start|>" + "<|audio_pad|>" * 7
            + "<|audio_end|><|im_end|>\n<|im_start|>assistant\n" + (f"language {language}<asr_text>" if language else ""))
    assert builder.build(7, context, language) == tokenizer.encode(text, add_special_tokens=False)


def test_prompt_matches_the_checkpoint_chat_template(engines, checkpoints):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoints["original"]))
    messages = [{"role": "system", "content": "ctx"}, {"role": "user", "content": [{"type": "audio"}]}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = engines["original"].prompts.build(1, "ctx")
    assert tokenizer.decode(ids) == rendered


@pytest.mark.fast
def test_parse_output():
    assert parse_output("language English<asr_text>hello there") == ("English", "hello there")
    assert parse_output("language None<asr_text>") == (None, "")
    assert parse_output("no marker at all") == (None, "no marker at all")
    assert parse_output("  spoken words ", forced_language="German") == ("German", "spoken words")


@pytest.mark.fast
@pytest.mark.parametrize("raw, expected", [
    ("language lll", (None, "")),                                  # a 0.05 s clip: the prefix, unfinished
    ("language", (None, "")),
    ("language lll<asr_text>some words", (None, "some words")),    # a garbled language is no language
    ("language Klingon<asr_text>qapla", (None, "qapla")),          # not one of the model's languages
    ("language English<asr_text>hi <asr_text> there", ("English", "hi there")),
    ("language English\n<asr_text>a <|im_end|> b", ("English", "a b")),
    ("language English<asr_text>language English<asr_text>twice", ("English", "twice")),
    ("language english<asr_text>lower case name", ("English", "lower case name")),
])
def test_no_markup_reaches_the_text(raw, expected):
    parsed = parse_output(raw, languages=("English", "Chinese"))
    assert parsed == expected
    assert "<" not in parsed.text and not parsed.text.lower().startswith("language")


@pytest.mark.fast
def test_forced_language_drops_a_repeated_prefix():
    assert parse_output("language English<asr_text>words", forced_language="English") == ("English", "words")


@pytest.mark.fast
def test_repetition_collapse_equals_the_official_rule():
    from transformers.models.qwen3_asr.processing_qwen3_asr import _detect_and_fix_repetitions

    rng = random.Random(0)
    samples = ["ha" * 30, "a" * 25 + "b", "I think " * 40, "x" * 19, "abc" * 20 + "end"]
    samples += ["".join(rng.choice("ab ") for _ in range(rng.randint(0, 120))) for _ in range(200)]
    for text in samples:
        assert collapse_repetitions(text) == _detect_and_fix_repetitions(text), text


@pytest.mark.fast
def test_language_names():
    assert language_name("en") == "English"
    assert language_name("english") == "English"
    assert language_name(None) is None
    assert language_name("Chinese", ("English", "Chinese")) == "Chinese"
    with pytest.raises(QasrError, match="Klingon"):
        language_name("Klingon", ("English", "Chinese"))

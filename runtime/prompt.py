"""The prompt the reference builds, token by token, and the parsing of what the model writes.

Prompt (chat template, system context, one audio turn, generation prompt):
  <|im_start|>system\\n{context}<|im_end|>\\n<|im_start|>user\\n<|audio_start|>{audio}<|audio_end|><|im_end|>\\n
  <|im_start|>assistant\\n[language {Language}<asr_text>]
where {audio} is the audio placeholder token repeated once per audio token. Output is parsed as the
official package does: `language X<asr_text>text`, `language None` for no speech, and long runs of
repeated characters or phrases collapsed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from qasr.errors import QasrError

DEFAULT_TEMPLATE = (
    "<|im_start|>system\n{context}<|im_end|>\n<|im_start|>user\n<|audio_start|>{audio}<|audio_end|><|im_end|>\n"
    "<|im_start|>assistant\n"
)
LANGUAGE_PREFIX = "language {language}<asr_text>"
ASR_TEXT = "<asr_text>"

LANGUAGE_CODES = {
    "ar": "Arabic", "yue": "Cantonese", "zh": "Chinese", "cs": "Czech", "da": "Danish", "nl": "Dutch",
    "en": "English", "fil": "Filipino", "fi": "Finnish", "fr": "French", "de": "German", "el": "Greek",
    "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "mk": "Macedonian", "ms": "Malay", "fa": "Persian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "es": "Spanish", "sv": "Swedish", "th": "Thai", "tr": "Turkish", "vi": "Vietnamese",
}


def language_name(language: str | None, supported: tuple[str, ...] = ()) -> str | None:
    """'en' or 'english' -> 'English'; an unknown name is an error when the model lists its languages."""
    if language is None or not language.strip():
        return None
    key = language.strip()
    name = LANGUAGE_CODES.get(key.lower()) or next(
        (n for n in (*LANGUAGE_CODES.values(), *supported) if n.lower() == key.lower()), None)
    if name is None:
        if supported:
            raise QasrError(f"unknown language {language!r}; this model knows: {', '.join(supported)}")
        name = key[:1].upper() + key[1:]
    if supported and name not in supported:
        raise QasrError(f"language {name!r} is not among this model's languages: {', '.join(supported)}")
    return name


def prompt_text(audio_token: str, audio_tokens: int, context: str = "", language: str | None = None) -> str:
    """The prompt as text (for tokenizers that take strings, like the reference's); PromptBuilder.build's ids."""
    text = DEFAULT_TEMPLATE.format(context=context, audio=audio_token * audio_tokens)
    return text + (LANGUAGE_PREFIX.format(language=language) if language else "")


class PromptBuilder:
    """Token ids of prompts, and text of generated ids, through the export's tokenizer.json."""

    def __init__(self, tokenizer_file: Path, audio_token: str, template: str = DEFAULT_TEMPLATE,
                 language_prefix: str = LANGUAGE_PREFIX):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.audio_token = audio_token
        self.audio_token_id = self.tokenizer.token_to_id(audio_token)
        if self.audio_token_id is None:
            raise QasrError(f"{tokenizer_file} has no audio placeholder token {audio_token!r}")
        self.template = template
        self.language_prefix = language_prefix

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def build(self, audio_tokens: int, context: str = "", language: str | None = None) -> list[int]:
        before, after = self.template.split("{audio}")
        text_after = after + (self.language_prefix.format(language=language) if language else "")
        # The placeholder is an atomic special token, so expanding the ids equals tokenizing N copies.
        return self.encode(before.format(context=context)) + [self.audio_token_id] * audio_tokens + \
            self.encode(text_after)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _collapse_char_runs(text: str, threshold: int) -> str:
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] == text[i]:
            j += 1
        out.append(text[i] if j - i > threshold else text[i:j])
        i = j
    return "".join(out)


def _collapse_pattern_runs(text: str, threshold: int, max_len: int = 20) -> str:
    """Keep one copy of any 1..max_len character pattern repeated `threshold` or more times in a row."""
    n, i, out = len(text), 0, []
    while i <= n - threshold * 2:
        for k in range(1, max_len + 1):
            if i + k * threshold > n:
                break
            pattern = text[i:i + k]
            if all(text[i + r * k: i + (r + 1) * k] == pattern for r in range(1, threshold)):
                end = i + threshold * k
                while end + k <= n and text[end:end + k] == pattern:
                    end += k
                return "".join(out) + pattern + _collapse_pattern_runs(text[end:], threshold, max_len)
        out.append(text[i])
        i += 1
    return "".join(out) + text[i:]


def collapse_repetitions(text: str, threshold: int = 20) -> str:
    """The official post-processing of runaway repetitions (characters, then short phrases)."""
    return _collapse_pattern_runs(_collapse_char_runs(text, threshold), threshold)


class Parsed(NamedTuple):
    language: str | None
    text: str


_LANGUAGE_LINE = re.compile(r"^\s*language\b\s*([^\s<]*)", re.IGNORECASE)
_MARKUP = re.compile(r"<\|[^|<>]*\|>|<asr_text>", re.IGNORECASE)


def _known(name: str, languages: tuple[str, ...]) -> str | None:
    """The canonical name of a language the model wrote, or None ('None', empty, garbled, not the model's)."""
    name = name.strip()
    if not name or name.lower() == "none":
        return None
    canonical = name[:1].upper() + name[1:].lower()
    if languages:
        return next((known for known in languages if known.lower() == name.lower()), None)
    return canonical if canonical in LANGUAGE_CODES.values() else None


def _clean(text: str) -> str:
    """No model markup in a transcript, ever: stray tags and a repeated `language X` prefix come out."""
    while (match := _LANGUAGE_LINE.match(text)) and ASR_TEXT in text[match.end():match.end() + len(ASR_TEXT) + 1]:
        text = text[text.index(ASR_TEXT, match.end()) + len(ASR_TEXT):]
    return " ".join(_MARKUP.sub(" ", text).split())


def partial_text(raw: str, forced_language: str | None = None, languages: tuple[str, ...] = ()) -> str:
    """The transcript text of an output still being written: nothing while the model may still be writing its
    `language X<asr_text>` header (without a forced language the output starts with it, and its first tokens
    "l", "lang", ... are not text); after that, what parse_output makes of it. A multi-byte character cut by
    the last token is held back."""
    raw = raw.rstrip("\ufffd")
    if forced_language is None and ASR_TEXT not in raw:
        head = raw.lstrip()[:8].lower()
        if "language".startswith(head) or head.startswith("language"):
            return ""
    return parse_output(raw, forced_language, languages).text


def parse_output(raw: str, forced_language: str | None = None, languages: tuple[str, ...] = ()) -> Parsed:
    """(language, transcript) from what the model wrote, as the official qwen-asr package parses it, and
    stricter where its output would carry markup into the text.

    - `language X<asr_text>text` -> (X, text); `language None<asr_text>...` -> language None.
    - A forced language was in the prompt: the output is the text (a repeated prefix is dropped).
    - No tag: the official parser returns everything as text, so a model that stops inside its prefix
      ("language lll" on a 0.05 s clip) would put markup in the transcript; here a leading
      `language X` without a tag is the unfinished prefix and what follows it is the text.
    - X is kept only when it names a language (of `languages`, the model's list, when given).
    """
    text = collapse_repetitions(raw.strip())
    if forced_language is not None:
        return Parsed(forced_language, _clean(text))
    language = None
    if ASR_TEXT in text:
        meta, text = text.split(ASR_TEXT, 1)
        match = next((m for m in map(_LANGUAGE_LINE.match, meta.splitlines()) if m), None)
        language = _known(match.group(1), languages) if match else None
    elif match := _LANGUAGE_LINE.match(text):
        language, text = _known(match.group(1), languages), text[match.end():]
    return Parsed(language, _clean(text))

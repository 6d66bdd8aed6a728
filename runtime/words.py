"""Words for forced alignment, and the aligner's times made monotonic.

`split_words` follows the official Qwen3-ForcedAligner (qwen_asr/inference/qwen3_forced_aligner.py, the same
in transformers 5.17.0's processor): a word keeps letters, digits and apostrophes; CJK ideographs are one word
each; whitespace separates the rest. Japanese and Korean need the tokenizers the official code uses (nagisa,
soynlp) and are refused in one line where they are not installed. Each word also keeps its surface form, the
transcript's own text with punctuation, which is what the runtime shows (JSON words, subtitle cues).

`monotonic` is the official repair of out-of-order times: the longest non-decreasing run is kept, runs of up
to two outliers take the nearer good neighbour, longer runs are interpolated between their neighbours.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from qasr.errors import QasrError

CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
SNAP_RUN = 2     # outlier runs up to this long take a neighbour's value; longer ones are interpolated


@dataclass(frozen=True)
class Word:
    word: str      # as in the transcript (punctuation kept)
    start: float   # seconds from the start of the input
    end: float

    def to_json(self) -> dict:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in CJK_RANGES)


def kept(char: str) -> bool:
    return char == "'" or unicodedata.category(char)[0] in "LN" or is_cjk(char)


def _clean(token: str) -> str:
    return "".join(c for c in token if kept(c))


def split_words(text: str, language: str | None = None) -> list[tuple[str, str]]:
    """(word the aligner reads, surface form) pairs of `text`, in order. Characters that belong to no word
    (punctuation standing alone) join the surface form of the word before them."""
    lang = (language or "").lower()
    if lang in ("japanese", "ja", "korean", "ko"):
        return _split_with_tokenizer(text, lang)
    pairs: list[list[str]] = []
    pending = ""   # punctuation standing before the first word: shown with it
    for token in text.split():
        first = len(pairs)
        word, surface, prefix = "", "", pending
        pending = ""
        for char in token:
            if is_cjk(char):
                if word:
                    pairs.append([word, surface])
                    word, surface = "", ""
                pairs.append([char, prefix + char])
                prefix = ""
            elif kept(char):
                if not word:
                    surface, prefix = prefix, ""
                word += char
                surface += char
            elif word:
                surface += char
            elif len(pairs) > first:   # after a CJK character of this token
                pairs[-1][1] += char
            else:
                prefix += char
        if word:
            pairs.append([word, surface])
        elif prefix and pairs:
            pairs[-1][1] += " " + prefix
        elif prefix:
            pending = prefix + " "
    return [(w, s) for w, s in pairs]


def _split_with_tokenizer(text: str, lang: str) -> list[tuple[str, str]]:
    if lang in ("japanese", "ja"):
        try:
            import nagisa
        except ImportError:
            raise QasrError("word timestamps for Japanese split words with nagisa, as the official aligner does: "
                            "pip install nagisa") from None
        tokens = nagisa.tagging(text).words
    else:
        try:
            from soynlp.tokenizer import LTokenizer
        except ImportError:
            raise QasrError("word timestamps for Korean split words with soynlp, as the official aligner does: "
                            "pip install soynlp") from None
        tokens = LTokenizer().tokenize(text)
    return [(w, t) for t in tokens if (w := _clean(t))]


def _longest_non_decreasing(values: list[float]) -> set[int]:
    n = len(values)
    length, parent = [1] * n, [-1] * n
    for i in range(1, n):
        for j in range(i):
            if values[j] <= values[i] and length[j] + 1 > length[i]:
                length[i], parent[i] = length[j] + 1, j
    keep, i = set(), length.index(max(length))
    while i != -1:
        keep.add(i)
        i = parent[i]
    return keep


def monotonic(values: list[float]) -> list[float]:
    """`values` (milliseconds) with its outliers replaced so that the sequence never decreases; whole
    milliseconds, as the official code returns them."""
    if len(values) < 2:
        return list(values)
    good = _longest_non_decreasing(values)
    out = list(values)
    i, n = 0, len(values)
    while i < n:
        if i in good:
            i += 1
            continue
        j = i
        while j < n and j not in good:
            j += 1
        left = out[i - 1] if i > 0 else None          # i - 1 is good (or already repaired)
        right = values[j] if j < n else None
        for k in range(i, j):
            if left is None or right is None:
                out[k] = right if left is None else left
            elif j - i <= SNAP_RUN:
                out[k] = left if (k - (i - 1)) <= (j - k) else right
            else:
                out[k] = left + (right - left) * (k - i + 1) / (j - i + 1)
        i = j
    return [float(int(v)) for v in out]

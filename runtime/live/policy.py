"""Which tokens of a live hypothesis are confirmed: shown, never taken back, forced into later decodes.

Each decode step continues the turn's confirmed tokens (forced as a prefix after the prompt) over all the
audio heard so far; its continuation is the hypothesis. A policy says how much of it becomes confirmed:

- `agreement` (LocalAgreement-2, whisper_streaming): the tokens two consecutive hypotheses agree on.
- `rollback` (the official qwen-asr streaming): all but the last `rollback_tokens` tokens of the hypothesis.

Either way a confirmation stops at a word boundary: a token is confirmed only when the agreed tokens go on
to the start of another word (or a special token), so a word is never shown half written. The last word of a
hypothesis therefore waits for the next one; the turn's final decode confirms everything.
"""

from __future__ import annotations

POLICIES = ("agreement", "rollback")


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class WordStarts:
    """Whether a token starts a word: its text begins with a space, or it is special (markup), or it begins
    with a CJK character (no spaces between words). Cached per id."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, bool] = {}

    def __call__(self, token: int) -> bool:
        known = self.cache.get(token)
        if known is None:
            piece = self.tokenizer.id_to_token(token) or ""
            text = self.tokenizer.decode([token], skip_special_tokens=False)
            known = (piece.startswith(("\u0120", "\u2581", " ")) or text.startswith((" ", "\n"))
                     or (piece.startswith("<") and piece.endswith(">") and len(piece) > 2)
                     or (bool(text) and _cjk(text[0])))
            self.cache[token] = known
        return known


def _cjk(char: str) -> bool:
    code = ord(char)
    return 0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF


class Policy:
    def __init__(self, kind: str, starts_word, rollback_tokens: int = 5):
        if kind not in POLICIES:
            from qasr.errors import QasrError

            raise QasrError(f"policy must be one of {', '.join(POLICIES)}, not {kind!r}")
        self.kind, self.starts_word, self.rollback_tokens = kind, starts_word, rollback_tokens

    def confirm(self, hypothesis: list[int], previous: list[int] | None) -> int:
        """How many leading tokens of `hypothesis` (the continuation after the confirmed tokens) to confirm;
        `previous`: the last step's continuation after the same confirmed tokens (None: there was none)."""
        if self.kind == "agreement":
            if previous is None:
                return 0
            agreed = common_prefix(hypothesis, previous)
        else:
            agreed = max(0, len(hypothesis) - self.rollback_tokens)
        # back off to a word boundary: the token after the confirmed ones must start a word
        n = agreed
        while n > 0 and not (n < len(hypothesis) and self.starts_word(hypothesis[n])):
            n -= 1
        return n

"""Text augmentation for training only, modelled on how fraudsters disguise messages.

Scammers break keyword filters by putting symbols between characters (``加 * 微 * 信``),
dropping or swapping characters, mixing traditional and simplified forms and using
full-width letters. Augmenting the training texts with the same noise teaches the model
to look past it. Typed tokens (``[URL]``…) are never cut.

Strength comes from the recipe: ``mild`` touches few characters, ``strong`` many.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from tunewise.data.normalize import TYPED_TOKENS, split_typed_tokens
from tunewise.errors import RecipeError

Strength = Literal["none", "mild", "strong"]
_SYMBOLS = list("*#-_.·~|/\\ ") + ["。", "，", "、", "丶", "♥", "★"]


@dataclass(frozen=True)
class AugmentationLevel:
    """Per-operation probabilities for one strength."""

    p_apply: float  # chance that a message is augmented at all
    p_insert: float  # per character: put a symbol after it
    p_delete: float
    p_swap: float
    p_script_flip: float  # per message: convert a span between simplified and traditional
    p_width_flip: float  # per message: make ASCII full-width


LEVELS: dict[str, AugmentationLevel] = {
    "none": AugmentationLevel(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "mild": AugmentationLevel(0.5, 0.02, 0.02, 0.02, 0.1, 0.1),
    "strong": AugmentationLevel(0.9, 0.08, 0.06, 0.05, 0.3, 0.3),
}


class TextAugmenter:
    """Randomly perturb a (normalised) text; deterministic for a given ``rng``.

    Example:
        >>> aug = TextAugmenter("strong")
        >>> aug("请加微信领取[MONEY]红包", random.Random(0))  # doctest: +SKIP
        '请加*微信领#取[MONEY]紅包'
    """

    def __init__(self, strength: Strength = "mild") -> None:
        if strength not in LEVELS:
            raise RecipeError(f"augmentation strength must be one of {list(LEVELS)}, got {strength!r}")
        self.strength = strength
        self.level = LEVELS[strength]

    @cached_property
    def _s2t(self):
        import opencc

        return opencc.OpenCC("s2t")

    @cached_property
    def _t2s(self):
        import opencc

        return opencc.OpenCC("t2s")

    def __call__(self, text: str, rng: random.Random) -> str:
        lvl = self.level
        if lvl.p_apply == 0 or rng.random() >= lvl.p_apply:
            return text
        pieces = []
        for piece in split_typed_tokens(text):
            if piece in TYPED_TOKENS:
                pieces.append(piece)
            else:
                pieces.append(self._perturb(piece, rng))
        out = "".join(pieces)
        if rng.random() < lvl.p_script_flip:
            out = self._flip_script(out, rng)
        if rng.random() < lvl.p_width_flip:
            out = _to_full_width(out)
        return out or text

    def _perturb(self, piece: str, rng: random.Random) -> str:
        lvl = self.level
        chars = list(piece)
        i = 0
        out: list[str] = []
        while i < len(chars):
            c = chars[i]
            r = rng.random()
            if r < lvl.p_delete and len(chars) > 1:
                i += 1
                continue
            if r < lvl.p_delete + lvl.p_swap and i + 1 < len(chars):
                out.extend([chars[i + 1], c])
                i += 2
                continue
            out.append(c)
            if rng.random() < lvl.p_insert:
                out.append(rng.choice(_SYMBOLS))
            i += 1
        return "".join(out)

    def _flip_script(self, text: str, rng: random.Random) -> str:
        # Flip one random span so messages end up with mixed scripts, as in the wild.
        parts = split_typed_tokens(text)
        candidates = [i for i, p in enumerate(parts) if p not in TYPED_TOKENS and len(p) > 1]
        if not candidates:
            return text
        i = rng.choice(candidates)
        piece = parts[i]
        start = rng.randrange(len(piece))
        end = min(len(piece), start + rng.randint(2, 12))
        converter = self._s2t if rng.random() < 0.8 else self._t2s
        parts[i] = piece[:start] + converter.convert(piece[start:end]) + piece[end:]
        return "".join(parts)


def _to_full_width(text: str) -> str:
    out = []
    for piece in split_typed_tokens(text):
        if piece in TYPED_TOKENS:
            out.append(piece)
        else:
            out.append("".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in piece))
    return "".join(out)

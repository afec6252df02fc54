"""How far a match lies above its threshold, in words: the band an alert card shows
(and a notification carries) instead of a bare cosine score."""

from __future__ import annotations

from typing import Literal

from watchkeeper.config import ReviewConfig

Band = Literal["strong", "likely", "weak"]


def score_band(score: float, threshold: float, config: ReviewConfig) -> Band:
    """How far ``score`` lies above the calibrated ``threshold`` (cosine similarity), in
    words: "strong", "likely" or "weak" by the margins of ``config`` (see
    :class:`~watchkeeper.config.ReviewConfig` for why they are where they are). Shown
    instead of the bare number, which invites reading 0.96 as "96% sure". The margin is
    rounded to millionths, so that 0.9712 - 0.9512 is 0.02 and not just below it."""
    margin = round(score - threshold, 6)
    if margin >= config.strong_margin:
        return "strong"
    if margin >= config.likely_margin:
        return "likely"
    return "weak"

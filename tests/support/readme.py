"""Reading README.md as its reader does: its sections, numbered steps, the commands in
code spans and code blocks, and its JSON examples, so that tests run what it says."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tests.support.data import REPO

README = REPO / "README.md"


def readme(path: Path = README) -> str:
    return path.read_text()


def between(text: str, start: str, end: str) -> str:
    """The text from the line holding ``start`` up to the line holding ``end``; fails
    naming the README's heading that is missing."""
    first = text.find(start)
    assert first >= 0, f"README.md has no {start!r} any more"
    last = text.find(end, first + len(start))
    assert last >= 0, f"README.md has no {end!r} after {start!r} any more"
    return text[first:last]


FENCED = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)


def code_spans(markdown: str) -> list[str]:
    """Every `code span` in ``markdown`` (outside its code blocks), with a span broken
    over lines joined by one space (as Markdown shows it)."""
    prose = FENCED.sub("", markdown)
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]


def code_blocks(markdown: str) -> list[str]:
    """The contents of every fenced code block in ``markdown``."""
    return FENCED.findall(markdown)


def without_code(markdown: str) -> str:
    """``markdown`` without its code blocks and code spans: what it says in words."""
    return re.sub(r"`[^`]*`", "", FENCED.sub("", markdown))


@dataclass(frozen=True)
class Steps:
    """A numbered walk-through: the words before its first step, and each step's text."""

    intro: str
    steps: list[str]


def numbered_steps(markdown: str) -> Steps:
    """The ``1.``, ``2.``, ... items of ``markdown`` (each with its continuation lines),
    and the text before the first; fails if the numbers do not run 1, 2, 3 ..."""
    parts = re.split(r"^(\d+)\. ", markdown, flags=re.M)
    intro, numbers, texts = parts[0], parts[1::2], parts[2::2]
    assert [int(n) for n in numbers] == list(range(1, len(numbers) + 1)), (
        f"the steps are numbered {', '.join(numbers)}, not 1, 2, 3 ..."
    )
    return Steps(intro, [" ".join(text.split()) for text in texts])


MORE = "..."
"""The key that stands for an example's ``...``: more keys follow in the real output."""


def json_example(line: str) -> dict:
    """One line of a README's JSON example. ``...`` in an object stands for keys left out;
    numbers are Decimals, so that the digits shown are known."""
    valid = re.sub(r"\{\s*\.\.\.\s*\}", '{"...": null}', line)
    valid = re.sub(r",\s*\.\.\.\s*\}", ', "...": null}', valid)
    return json.loads(valid, parse_float=Decimal)


def differences(
    example: object, real: object, varies: set[str], where: str = "", timing: bool = False
) -> list[str]:
    """How ``real`` output differs from a README ``example`` of it: keys missing, added or
    in another order (unless the example says ``...``), values that differ once the real
    number is rounded to the digits the example shows. Under a key in ``varies`` (the
    timings of a run) only the kind of each value is compared."""
    where_shown = where or "the line"
    if isinstance(example, dict):
        if not isinstance(real, dict):
            return [f"{where_shown}: {real!r} is not an object"]
        shown = [key for key in example if key != MORE]
        keys = list(real)
        if shown != (keys[: len(shown)] if MORE in example else keys):
            return [f"{where_shown}: keys {shown} in the README, {keys} in the output"]
        found = []
        for key in shown:
            path = f"{where}.{key}" if where else key
            found += differences(example[key], real[key], varies, path, timing or key in varies)
        return found
    if timing:
        same_kind = isinstance(example, int | Decimal) and isinstance(real, int | float)
        return [] if same_kind else [f"{where}: {real!r} is not a number like {example}"]
    if isinstance(example, Decimal):
        digits = max(0, -int(example.as_tuple().exponent))
        if not isinstance(real, float) or round(real, digits) != float(example):
            return [f"{where}: {example} in the README, {real!r} in the output"]
        return []
    if example != real or type(example) is not type(real):
        return [f"{where}: {example!r} in the README, {real!r} in the output"]
    return []

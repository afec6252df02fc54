"""1:1 verification pairs in the LFW format, and the accuracy they give."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    """Two images of one identity (``same``) or of two identities."""

    first: tuple[str, int]
    second: tuple[str, int]
    same: bool


def read_pairs(path: Path) -> list[Pair]:
    """Pairs from an LFW pairs file.

    ``name i j`` is a same-person pair, ``name1 i name2 j`` a different-person
    pair; a first line holding only counts is ignored.
    """
    pairs = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or (number == 1 and all(f.isdigit() for f in fields)):
            continue
        if len(fields) == 3:
            pairs.append(Pair((fields[0], int(fields[1])), (fields[0], int(fields[2])), True))
        elif len(fields) == 4:
            pairs.append(Pair((fields[0], int(fields[1])), (fields[2], int(fields[3])), False))
        else:
            raise ValueError(f"{path}:{number}: expected 3 or 4 fields, got {len(fields)}")
    return pairs


def image_path(root: Path, name: str, number: int) -> Path:
    """Where LFW keeps image ``number`` of ``name``."""
    return root / name / f"{name}_{number:04d}.jpg"

"""A labelled evaluation dataset: one sub-folder per identity, images inside.

Public datasets carry label errors (the same person under two spellings, one
picture filed under two names). A corrections file fixes them openly, one
line each::

    # <identity> or <identity>/<image>   <true identity>, or - to leave out   # why
    Noer_Muis                           Noer_Moeis    # one person, two spellings
    Raul_Ibanez/Raul_Ibanez_0001.jpg    -             # same picture as Carlos_Beltran_0001

Corrections change who an image shows, never a pairs file's own labels; a pair
that names an image left out is itself left out, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from watchkeeper.errors import ConfigError
from watchkeeper.vision.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class LabelledImage:
    identity: str
    """Who the image shows (after corrections)."""
    path: Path

    @property
    def folder(self) -> str:
        """The identity folder the file sits in (its original label)."""
        return self.path.parent.name


@dataclass(frozen=True)
class Dataset:
    """Images in a stable order: folders by name, images by file name."""

    root: Path
    images: tuple[LabelledImage, ...]
    corrections: int = 0
    """How many images a corrections file relabelled or left out."""
    left_out: frozenset[tuple[str, str]] = frozenset()
    """(folder, file name) of images a corrections file left out."""

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(sorted({image.identity for image in self.images}))

    def index(self) -> dict[tuple[str, str], int]:
        """Position of each image by (folder, file name)."""
        return {(image.folder, image.path.name): i for i, image in enumerate(self.images)}


def scan_dataset(root: Path, corrections: Path | None = None) -> Dataset:
    """Every image file under ``root/<identity>/``; other files are ignored."""
    if not root.is_dir():
        raise ConfigError(f"dataset folder not found: {root}")
    images = tuple(
        LabelledImage(folder.name, path)
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise ConfigError(f"dataset folder {root} has no <identity>/<image> files")
    dataset = Dataset(root, images)
    return apply_corrections(dataset, read_corrections(corrections)) if corrections else dataset


def read_corrections(path: Path) -> list[tuple[str, str | None]]:
    """(source, target) pairs; target None means: leave the image(s) out."""
    if not path.is_file():
        raise ConfigError(f"corrections file not found: {path}")
    corrections = []
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ConfigError(f"{path}:{number}: expected '<source> <target or ->'")
        source, target = fields
        corrections.append((source, None if target == "-" else target))
    return corrections


def apply_corrections(dataset: Dataset, corrections: list[tuple[str, str | None]]) -> Dataset:
    """Relabel or leave out images; every source must name something in the dataset."""
    by_source: dict[str, str | None] = dict(corrections)
    used: set[str] = set()
    images = []
    left_out = set(dataset.left_out)
    changed = 0
    for image in dataset.images:
        key = next(
            (k for k in (f"{image.folder}/{image.path.name}", image.folder) if k in by_source),
            None,
        )
        if key is None:
            images.append(image)
            continue
        used.add(key)
        changed += 1
        target = by_source[key]
        if target is None:
            left_out.add((image.folder, image.path.name))
        else:
            images.append(replace(image, identity=target))
    unknown = sorted(set(by_source) - used)
    if unknown:
        raise ConfigError(f"corrections name what the dataset does not hold: {', '.join(unknown)}")
    return Dataset(dataset.root, tuple(images), dataset.corrections + changed, frozenset(left_out))

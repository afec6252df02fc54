"""A labelled evaluation dataset: one sub-folder per identity, images inside."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from watchkeeper.errors import ConfigError
from watchkeeper.vision.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class LabelledImage:
    identity: str
    path: Path


@dataclass(frozen=True)
class Dataset:
    """Images in a stable order: identities by name, images by file name."""

    root: Path
    images: tuple[LabelledImage, ...]

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(sorted({image.identity for image in self.images}))

    def index(self) -> dict[tuple[str, str], int]:
        """Position of each image by (identity, file name)."""
        return {(image.identity, image.path.name): i for i, image in enumerate(self.images)}


def scan_dataset(root: Path) -> Dataset:
    """Every image file under ``root/<identity>/``; other files are ignored."""
    if not root.is_dir():
        raise ConfigError(f"dataset folder not found: {root}")
    images = [
        LabelledImage(folder.name, path)
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not images:
        raise ConfigError(f"dataset folder {root} has no <identity>/<image> files")
    return Dataset(root, tuple(images))

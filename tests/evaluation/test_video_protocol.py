"""`watchkeeper eval MANIFEST.toml`: a shop's own clips against an enrolment folder,
through the live pipeline at the live (calibrated) threshold."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from tests.support.cli import Sandbox, one_line_error
from tests.support.data import (
    CORRIDOR,
    CROWD,
    DEBATE,
    STAGE,
    lfw_identities,
    lfw_photos,
)
from watchkeeper.cli.evaluation import print_video_result
from watchkeeper.config import QualityConfig
from watchkeeper.errors import ConfigError
from watchkeeper.evaluation.video import ClipGallery, load_manifest
from watchkeeper.matching.gallery import Gallery
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face
from watchkeeper.vision.alignment import ARCFACE_CHIP
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import Embeddings
from watchkeeper.vision.images import read_image

BIDEN = "Joseph_Biden"
IN_THE_CLIPS = {BIDEN, "Donald_Trump", "Barack_Obama", "Michelle_Obama", "Lin_Manuel_Miranda"}
"""People who appear in the four clips (only Biden and Trump are in LFW): never strangers."""
STRANGERS = 100


def _enrollable(photo: Path, detector: FaceDetector) -> bool:
    """Whether ``photo`` shows exactly one usable face (some LFW photos show two)."""

    class Layout:  # enrolment_face needs only the embedder's chip layout
        layout = ARCFACE_CHIP

    try:
        enrolment_face(read_image(photo), detector, Layout(), QualityConfig())  # type: ignore[arg-type]
    except PhotoRefused:
        return False
    return True


@pytest.fixture(scope="module")
def enrolment(tmp_path_factory: pytest.TempPathFactory, yunet: FaceDetector) -> Path:
    """Joe Biden's 5 LFW photos and 100 strangers (seeded choice, one usable photo each),
    as links: a watchlist of 101 people."""
    folder = tmp_path_factory.mktemp("enrolment")
    (folder / BIDEN).mkdir()
    for photo in lfw_photos(BIDEN):
        (folder / BIDEN / photo.name).symlink_to(photo)
    candidates = [name for name in lfw_identities() if name not in IN_THE_CLIPS]
    random.Random(2026).shuffle(candidates)
    chosen = 0
    for name in candidates:
        photo = lfw_photos(name)[0]
        if _enrollable(photo, yunet):
            (folder / name).mkdir()
            (folder / name / photo.name).symlink_to(photo)
            chosen += 1
        if chosen == STRANGERS:
            break
    return folder


def write_manifest(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clips.toml"
    path.write_text(text)
    return path


def four_clips(enrolment: Path) -> str:
    return f"""
enrolment = "{enrolment}"

[[clip]]
source = "{DEBATE}"
expected = ["{BIDEN}"]

[[clip]]
source = "{CROWD}"

[[clip]]
source = "{CORRIDOR}"
name = "corridor"

[[clip]]
source = "{STAGE}"
expected = []
"""


def test_the_four_clips_at_the_calibrated_threshold(
    sandbox: Sandbox, enrolment: Path, tmp_path: Path
) -> None:
    """Biden is matched in the debate; nobody among 100 strangers in any clip; nothing
    is written; nothing about a face that matched nobody is printed."""
    manifest = write_manifest(tmp_path / "manifest", four_clips(enrolment))
    before = sandbox.files()
    run = sandbox.run("eval", str(manifest), "--json", "--strict", timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    assert sandbox.files() == before
    result = json.loads(run.stdout)
    assert result["model"].startswith("sface-2021dec@")
    assert result["enrolled_people"] == STRANGERS + 1
    assert result["threshold_source"] == "sface-2021dec's calibration for 101 people (FPIR 0.001)"
    debate, crowd, corridor, stage = result["clips"]
    assert [c["clip"] for c in result["clips"]] == [
        DEBATE.name,
        CROWD.name,
        "corridor",
        STAGE.name,
    ]
    assert [m["person"] for m in debate["matched"]] == [BIDEN]
    assert debate["matched"][0]["score"] >= result["threshold"]
    assert debate["missed"] == []
    for clip in result["clips"]:
        assert clip["false_matches"] == [], clip
        assert clip["tracks"] >= 1
        closest = clip["closest_stranger_score"]
        assert closest is None or closest < result["threshold"]
    assert crowd["expected"] == corridor["expected"] == stage["expected"] == []
    assert result["totals"] == {
        "clips": 4,
        "expected": 1,
        "matched": 1,
        "missed": 0,
        "false_matches": 0,
        "false_match_tracks": 0,
        "tracks": sum(c["tracks"] for c in result["clips"]),
        "passed": True,
    }
    # Strangers are named only if matched; tracks never have an id here.
    strangers = {p.name for p in enrolment.iterdir()} - {BIDEN}
    assert not any(name in run.stdout + run.stderr for name in strangers)
    assert "track " not in run.stdout


def test_missed_people_and_false_matches_in_the_table_and_the_exit_status(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """An image folder, a person expected who is not there and a stranger matched:
    exit 0 unless --strict; the table names them with their scores."""
    enrolment = tmp_path / "enrolment"
    for name in (BIDEN, "Colin_Powell", "Hu_Jintao"):
        (enrolment / name).mkdir(parents=True)
        photo = lfw_photos(name)[0]
        (enrolment / name / photo.name).symlink_to(photo)
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in [*lfw_photos(BIDEN)[2:4], *lfw_photos("Colin_Powell")[1:3]]:
        (photos / photo.name).symlink_to(photo)
    manifest = write_manifest(
        tmp_path,
        f'enrolment = "enrolment"\n[[clip]]\nsource = "photos"\n'
        f'expected = ["{BIDEN}", "Hu_Jintao"]\n',
    )
    run = sandbox.run("eval", str(manifest), "--json")
    assert run.code == 0, run.stderr
    clip = json.loads(run.stdout)["clips"][0]
    assert [m["person"] for m in clip["matched"]] == [BIDEN]
    assert [m["person"] for m in clip["missed"]] == ["Hu_Jintao"]
    assert clip["missed"][0]["best_score"] < 0.3
    assert [(m["person"], m["tracks"]) for m in clip["false_matches"]] == [("Colin_Powell", 2)]
    strict = sandbox.run("eval", str(manifest), "--strict")
    assert strict.code == 1, strict.stderr
    assert "Hu_Jintao (0." in strict.stdout
    assert "Colin_Powell 0." in strict.stdout
    assert "NOT PASSED" in strict.stdout


def test_a_chosen_threshold_is_reported_with_its_source(tmp_path: Path) -> None:
    result = {
        "model": "sface-2021dec",
        "enrolled_people": 2,
        "enrolment": "/shop/watchlist",
        "enrolment_photos": 3,
        "enrolment_photos_refused": 1,
        "threshold": 0.5,
        "threshold_source": "--threshold",
        "clips": [
            {
                "clip": "door.mp4",
                "expected": ["Ann"],
                "matched": [],
                "missed": [{"person": "Ann", "best_score": None}],
                "false_matches": [],
                "closest_stranger_score": 0.21,
                "tracks": 4,
            }
        ],
        "totals": {
            "clips": 1,
            "expected": 1,
            "matched": 0,
            "missed": 1,
            "false_matches": 0,
            "false_match_tracks": 0,
            "tracks": 4,
            "passed": False,
        },
    }
    console = Console(width=200, record=True)
    print_video_result(result, console)
    text = console.export_text()
    assert "threshold 0.500 from --threshold" in text
    assert "Ann (-)" in text
    assert "0.210" in text
    assert "0 of 1 expected people matched, 1 missed" in text


def test_clip_gallery_remembers_only_the_best_scores() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery = ClipGallery(Gallery("m", vectors, ["Ann", "Bob", "Cy"]), ["Ann"])
    probe = Embeddings("m", vectors[[1]])
    decision = gallery.decide(probe, np.ones(1), threshold=0.99, top_k=2)
    assert decision.subject == "Bob"
    assert gallery.best["Ann"] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    assert gallery.closest_stranger == pytest.approx(1.0, abs=1e-5)
    gallery.decide(Embeddings("m", vectors[[0]]), np.ones(1), threshold=0.99, top_k=2)
    assert gallery.best["Ann"] == pytest.approx(1.0, abs=1e-5)
    assert gallery.closest_stranger == pytest.approx(1.0, abs=1e-5)


# -- manifest validation --------------------------------------------------------------


@pytest.fixture
def small_enrolment(tmp_path: Path) -> Path:
    for name in ("Ann", "Bob", ".hidden"):
        (tmp_path / "people" / name).mkdir(parents=True)
    (tmp_path / "door.mp4").write_bytes(b"")
    (tmp_path / "stills").mkdir()
    return tmp_path / "people"


def test_a_manifest_resolves_paths_from_its_own_folder(
    small_enrolment: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(
        write_manifest(
            tmp_path,
            'enrolment = "people"\n'
            '[[clip]]\nsource = "door.mp4"\nexpected = ["Ann"]\n'
            '[[clip]]\nsource = "stills"\nname = "stills at the till"\n'
            '[[clip]]\nsource = "rtsp://cam.local/stream1"\nexpected = ["Bob", "Ann"]\n',
        )
    )
    assert manifest.enrolment == small_enrolment.resolve()
    assert manifest.people == ("Ann", "Bob")
    assert [c.source for c in manifest.clips] == [
        str((tmp_path / "door.mp4").resolve()),
        str((tmp_path / "stills").resolve()),
        "rtsp://cam.local/stream1",
    ]
    assert [c.label for c in manifest.clips] == [
        "door.mp4",
        "stills at the till",
        "rtsp://cam.local/stream1",
    ]
    assert manifest.clips[0].expected == ("Ann",)
    assert manifest.clips[1].expected == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[clip]]\nsource = "door.mp4"\n',
            r"'enrolment' is required",
        ),
        ('enrolment = "people"\n', r"'clip' is required"),
        (
            'enrolment = "people"\nclip = []\n',
            r"no \[\[clip\]\] given: a manifest needs at least one",
        ),
        (
            'enrolment = "nobody"\n[[clip]]\nsource = "door.mp4"\n',
            r"enrolment: enrolment folder not found: .*/nobody",
        ),
        (
            'enrolment = "stills"\n[[clip]]\nsource = "door.mp4"\n',
            r"enrolment: enrolment folder .*/stills has no sub-folder of photos per person",
        ),
        (
            'enrolment = "people"\n[[clip]]\nsource = "gone.mp4"\n',
            r"clip 1 source: no such file or folder: .*/gone\.mp4",
        ),
        (
            'enrolment = "people"\n[[clip]]\nsource = "door.mp4"\nexpected = ["Ann", "Zoe"]\n'
            '[[clip]]\nsource = "stills"\nexpected = [".hidden"]\n',
            r"clip 1 \(door\.mp4\): expected 'Zoe' not in the enrolment folder .*/people "
            r"\(people are its sub-folders' names\); clip 2 \(stills\): expected '\.hidden' "
            r"not in the enrolment folder",
        ),
        (
            'enrolment = "people"\n[[clip]]\nsource = "door.mp4"\nexpected = ["Ann", "Ann"]\n',
            r"clip 1 expected: Ann listed more than once",
        ),
        (
            'enrolment = "people"\n[[clip]]\nsource = "door.mp4"\nexpected = "Ann"\n',
            r"clip 1 expected: Input should be a valid tuple",
        ),
        (
            'enrolment = "people"\nthreshold = 0.5\n[[clip]]\nsource = "door.mp4"\n',
            r"unknown key 'threshold' \(allowed: enrolment, clip\)",
        ),
        (
            'enrolment = "people"\n[[clip]]\nsource = "door.mp4"\nexpect = ["Ann"]\n',
            r"clip 1: unknown key 'expect' \(allowed: source, expected, name\)",
        ),
        ('enrolment = "people"\n[[clip]\nsource = 1\n', r"is not valid TOML"),
    ],
)
def test_manifest_errors_say_what_is_wrong_and_where(
    small_enrolment: Path, tmp_path: Path, text: str, message: str
) -> None:
    path = write_manifest(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_manifest(path)
    assert str(raised.value).startswith(f"manifest {path}")
    assert "\n" not in str(raised.value)


def test_manifest_errors_on_the_command_line(
    sandbox: Sandbox, small_enrolment: Path, tmp_path: Path
) -> None:
    missing = sandbox.run("eval", str(tmp_path / "nothing.toml"))
    assert missing.code == 2
    assert one_line_error(missing) == f"error: manifest not found: {tmp_path / 'nothing.toml'}"
    manifest = write_manifest(
        tmp_path, 'enrolment = "people"\n[[clip]]\nsource = "door.mp4"\nexpected = ["Zoe"]\n'
    )
    wrong = sandbox.run("eval", str(manifest))
    assert wrong.code == 2
    assert "expected 'Zoe' not in the enrolment folder" in one_line_error(wrong)
    mixed = sandbox.run("eval", str(manifest), "--pairs", "pairs.txt", "--ablation")
    assert mixed.code == 2
    assert one_line_error(mixed) == (
        "error: --pairs, --ablation: for a photo dataset, not a video manifest"
    )
    photos = sandbox.run("eval", str(small_enrolment), "--strict", "--threshold", "0.5")
    assert photos.code == 2
    assert one_line_error(photos) == (
        "error: --threshold, --strict: for a video manifest (.toml), not a photo dataset"
    )

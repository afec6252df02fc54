"""Video sources on the real clips, and what happens with bad input."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support.data import CORRIDOR, CROWD, DEBATE, STAGE, lfw_photos
from tests.support.http_server import serve_folder
from tests.support.net import unused_port
from watchkeeper.config import VideoConfig
from watchkeeper.errors import SourceError
from watchkeeper.video.sources import (
    ImageFolderSource,
    SourceKind,
    SourceSpec,
    open_source,
    redact,
)


@pytest.mark.parametrize(
    ("clip", "decoded", "size", "first", "last"),
    [
        (CROWD, 105, (1080, 1920), 0.0, 4.16),
        (CORRIDOR, 41, (270, 480), 0.0, 3.33),
        (DEBATE, 410, (368, 640), 0.0, 17.0417),
        # Its video starts 0.84 s after the container (audio) does, as players show.
        (STAGE, 275, (360, 640), 0.844, 9.986),
    ],
)
def test_every_frame_of_each_clip_with_real_timestamps(
    clip: Path, decoded: int, size: tuple[int, int], first: float, last: float
) -> None:
    source = open_source(str(clip), VideoConfig(analysis_fps=0))
    frames = list(source.frames())
    source.close()
    assert source.decoded == decoded
    assert len(frames) == decoded
    assert frames[0].image.shape == (*size, 3)
    assert frames[0].timestamp == pytest.approx(first, abs=0.001)
    assert frames[-1].timestamp == pytest.approx(last, abs=0.001)
    assert all(b.timestamp > a.timestamp for a, b in itertools.pairwise(frames))
    assert [f.index for f in frames] == list(range(decoded))


@pytest.mark.parametrize("fps", [2.0, 5.0, 10.0])
def test_analysis_rate_samples_evenly(fps: float) -> None:
    source = open_source(str(DEBATE), VideoConfig(analysis_fps=fps))
    frames = list(source.frames())
    assert source.decoded == 410
    assert source.expected_frames == pytest.approx(len(frames), abs=2)
    assert len(frames) == pytest.approx(17.08 * fps, abs=2)
    gaps = np.diff([f.timestamp for f in frames])
    assert gaps.min() >= 1 / fps - 0.05
    assert gaps.max() <= 1 / fps + 0.05


def test_a_file_served_over_http_is_read_like_a_file(tmp_path: Path) -> None:
    shutil.copy(DEBATE, tmp_path / "clip.mp4")
    with serve_folder(tmp_path) as url:
        source = open_source(f"{url}/clip.mp4", VideoConfig(analysis_fps=5))
        assert source.spec.kind is SourceKind.STREAM
        assert not source.live
        frames = list(source.frames())
        source.close()
    assert len(frames) == pytest.approx(86, abs=2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: d.joinpath("random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000)),
            "cannot open file .*random.mp4: Invalid data",
        ),
        (lambda d: d.joinpath("empty.mp4").write_bytes(b""), "cannot open file .*empty.mp4"),
        (
            lambda d: d.joinpath("half.mp4").write_bytes(DEBATE.read_bytes()[:600_000]),
            "half.mp4 is damaged or truncated: video stops at 9.0 s of 17.1 s",
        ),
        (
            lambda d: d.joinpath("audio.wav").write_bytes(
                b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
                b"\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
            ),
            "no video stream",
        ),
    ],
    ids=["random-bytes", "empty", "truncated", "audio-only"],
)
def test_unreadable_video_files_give_a_clear_error(tmp_path: Path, make, message: str) -> None:
    make(tmp_path)
    (path,) = tmp_path.iterdir()

    def read_all() -> None:
        source = open_source(str(path), VideoConfig(analysis_fps=0))
        list(source.frames())

    with pytest.raises(SourceError, match=message):
        read_all()


def test_missing_source_is_named() -> None:
    with pytest.raises(SourceError, match="no such file, folder or URL"):
        open_source("/nonexistent/clip.mp4", VideoConfig())


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_unreachable_url_gives_a_clear_error(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{unused_port()}/live"
    with pytest.raises(SourceError, match=r"cannot open stream .*Connection refused"):
        open_source(url, VideoConfig(open_timeout_s=5))


def test_image_folder_skips_files_that_are_not_images(tmp_path: Path) -> None:
    for photo in lfw_photos("Joseph_Biden")[:3]:
        (tmp_path / photo.name).symlink_to(photo)
    (tmp_path / "notes.jpg").write_text("not a picture")
    (tmp_path / "readme.txt").write_text("ignored: not an image suffix")
    source = open_source(str(tmp_path), VideoConfig())
    assert isinstance(source, ImageFolderSource)
    assert not source.continuous
    frames = list(source.frames())
    assert [f.name for f in frames] == [p.name for p in lfw_photos("Joseph_Biden")[:3]]
    assert source.skipped == 1


def test_image_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(tmp_path), VideoConfig())


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("0", SourceKind.WEBCAM),
        ("rtsp://cam.local/stream1", SourceKind.STREAM),
        ("https://example.org/live.m3u8", SourceKind.STREAM),
        (str(DEBATE), SourceKind.FILE),
        (str(DEBATE.parent), SourceKind.IMAGES),
    ],
)
def test_source_kinds(text: str, kind: SourceKind) -> None:
    assert SourceSpec.parse(text).kind is kind


def test_passwords_in_urls_are_never_shown() -> None:
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/h264") == "rtsp://admin:***@10.0.0.5:554/h264"
    assert redact("rtsp://10.0.0.5/h264") == "rtsp://10.0.0.5/h264"
    with pytest.raises(SourceError) as raised:
        open_source(f"rtsp://admin:s3cret@127.0.0.1:{unused_port()}/live", VideoConfig())
    assert "s3cret" not in str(raised.value)


def test_a_missing_webcam_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="cannot open webcam"):
        open_source("99", VideoConfig(open_timeout_s=2))

"""Reading images: bad input gets a clear error."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.data import lfw_photos
from watchkeeper.errors import ImageError
from watchkeeper.vision.images import decode_image, read_image


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size: it must be refused from its header alone."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + png_chunk(b"IEND", b"")
    )


def test_a_real_photo_decodes_to_bgr() -> None:
    image = read_image(lfw_photos("Joseph_Biden")[0])
    assert image.shape == (250, 250, 3)
    assert image.dtype == np.uint8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"GIF89a but then nothing sensible", "not a readable image"),
        (b"%PDF-1.4 a document", "not a readable image"),
        (png_bomb(100_000, 100_000), "too many pixels"),
        (png_bomb(9_000, 9_000), "larger than 50,000,000 pixels"),
    ],
)
def test_bad_bytes_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data, "upload.jpg")


def test_a_truncated_jpeg_is_refused() -> None:
    data = lfw_photos("Joseph_Biden")[0].read_bytes()
    with pytest.raises(ImageError, match=r"upload\.jpg"):
        decode_image(data[: len(data) // 3], "upload.jpg")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="No such file"):
        read_image(tmp_path / "absent.jpg")


def test_exif_orientation_is_applied() -> None:
    """A phone photo stored sideways with an EXIF rotation tag comes out upright."""
    upright = np.zeros((40, 20, 3), np.uint8)
    upright[:10] = 255  # white band at the top
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 20 x 40
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif, quality=95)
    image = decode_image(buffer.getvalue(), "phone.jpg")
    assert image.shape[:2] == (40, 20)
    assert image[:10].mean() > 200
    assert image[-10:].mean() < 50

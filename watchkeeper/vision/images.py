"""Reading still images (watchlist photos, image-folder sources) safely."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from watchkeeper.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

MAX_IMAGE_PIXELS = 50_000_000
"""Larger images are refused from their header, before any pixel is decoded
(decompression bombs)."""


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode image bytes to BGR uint8 (EXIF orientation applied), or raise
    :class:`ImageError` naming ``name``."""
    if not data:
        raise ImageError(f"{name}: empty file, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageError(
                        f"{name}: {width}x{height} image is larger than {MAX_IMAGE_PIXELS:,} pixels"
                    )
                upright = ImageOps.exif_transpose(image).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image declares too many pixels to decode safely") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: damaged image ({exc})") from None
    return np.ascontiguousarray(np.asarray(upright)[:, :, ::-1])


def read_image(path: Path) -> np.ndarray:
    """Read an image file as BGR uint8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from None
    return decode_image(data, str(path))

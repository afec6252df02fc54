"""Download a model file from its pinned address and keep it only if its checksum matches.

This is the only code that reaches the network for models, and it runs only
when a user asks (`watchkeeper models fetch`); nothing downloads at run time.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from watchkeeper.errors import ModelError
from watchkeeper.models.registry import ModelSpec

_ALLOWED_SCHEMES = {"https", "http", "file"}
_BLOCK = 1 << 16

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None)."""


def download_url(spec: ModelSpec, mirror: str | None = None) -> str:
    """Where to fetch ``spec`` from: its pinned URL, or the same file name under a mirror."""
    if mirror:
        return f"{mirror.rstrip('/')}/{spec.filename}"
    if not spec.url:
        raise ModelError(f"model {spec.name!r} has no download address")
    return spec.url


def fetch_model(
    spec: ModelSpec,
    models_dir: Path,
    mirror: str | None = None,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download ``spec`` into ``models_dir``; return its path.

    The file is streamed to a temporary name while hashing and renamed into
    place only when its SHA-256 (and size, where pinned) match; otherwise it
    is deleted and a :class:`ModelError` names both checksums.
    """
    url = download_url(spec, mirror)
    if urlsplit(url).scheme.lower() not in _ALLOWED_SCHEMES:
        raise ModelError(f"refusing to download from {url!r}: only http(s) and file URLs")
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / spec.filename
    partial = models_dir / f".{spec.filename}.part"
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, partial.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else spec.size_bytes
            while block := response.read(_BLOCK):
                digest.update(block)
                out.write(block)
                received += len(block)
                if spec.size_bytes is not None and received > spec.size_bytes:
                    raise ModelError(
                        f"download from {url} is larger than the pinned {spec.size_bytes} bytes; "
                        "not saved"
                    )
                if progress is not None:
                    progress(received, total)
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"cannot download {spec.name} from {url}: HTTP {exc.code} {exc.reason}"
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise ModelError(f"cannot download {spec.name} from {url}: {reason}") from None
    except ModelError:
        partial.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != spec.sha256:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"refusing download from {url}: sha256 {actual} does not match the pinned "
            f"{spec.sha256} for {spec.name}; nothing was saved"
        )
    os.replace(partial, target)
    return target

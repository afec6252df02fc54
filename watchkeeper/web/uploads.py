"""Enrolment uploads: multipart forms read under size limits, and each photo's badge.

FastAPI would read a whole multipart body (spooling files to disk) before a route
runs, so upload routes read the form themselves: a request whose Content-Length is
over ``web.max_upload_mb`` is refused before its body is read, and one photo over
``web.max_photo_mb`` (or a body over the limit sent without a length) is refused
as soon as the bytes arriving pass the limit. The trade-off: those routes cannot
declare ``Form``/``File`` parameters (nor :data:`~watchkeeper.web.deps.CheckedUser`,
whose CSRF field is a form parameter); they check the CSRF token themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from watchkeeper.config import WebConfig
from watchkeeper.errors import ImageError, PolicyError
from watchkeeper.governance.subjects import EnrolmentPhoto
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face
from watchkeeper.pipeline import FaceModels
from watchkeeper.vision.images import decode_image

MEGABYTE = 1_000_000
MAX_PHOTOS = 20
"""Photos one enrolment may carry (a few good ones are what matching needs)."""
MAX_FIELDS = 200
"""Text fields one form may carry (incident and site checkboxes included)."""


class UploadTooLarge(Exception):
    """The upload is over a size limit; nothing of it was kept."""


def _megabytes(limit_bytes: int) -> str:
    return f"{limit_bytes / MEGABYTE:g} MB"


class _LimitedParser(MultiPartParser):
    """Starlette's multipart parser with a limit on each file part, in bytes."""

    def __init__(self, request: Request, stream: AsyncIterator[bytes], max_file: int) -> None:
        super().__init__(request.headers, stream, max_files=MAX_PHOTOS, max_fields=MAX_FIELDS)  # type: ignore[arg-type]
        self._max_file = max_file
        self._file_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self._file_bytes += end - start
            if self._file_bytes > self._max_file:
                name = self._current_part.file.filename or "a photo"
                raise UploadTooLarge(
                    f"{name} is larger than {_megabytes(self._max_file)}, the limit per photo; "
                    "nothing was stored"
                )
        super().on_part_data(data, start, end)


async def read_upload(request: Request, limits: WebConfig) -> FormData:
    """The multipart form of ``request``, read under ``limits``.

    Raises :class:`UploadTooLarge` for a body or photo over the limits and
    ``HTTPException(400)`` for a body that is not a multipart form."""
    max_request = int(limits.max_upload_mb * MEGABYTE)
    too_large = UploadTooLarge(
        f"the upload is larger than {_megabytes(max_request)}, the limit per request; "
        "nothing was stored"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_request:
        raise too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(400, "send the entry as multipart/form-data")

    async def counted() -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_request:
                raise too_large
            yield chunk

    parser = _LimitedParser(request, counted(), int(limits.max_photo_mb * MEGABYTE))
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, exc.message) from None


async def photos_of(form: FormData, field: str = "photos") -> list[EnrolmentPhoto]:
    """The uploaded files in ``field`` as enrolment photos, each under a name of its
    own (a phone names every photo ``image.jpg``); empty file inputs are skipped. Text
    in the field (a part sent without a file name) is refused, never dropped unseen."""
    values = form.getlist(field)
    if any(isinstance(value, str) and value for value in values):
        raise PolicyError(
            f"the field {field!r} holds text, not a file: send each photo as a file "
            "(a part with a file name); nothing was stored"
        )
    uploads = [u for u in values if isinstance(u, UploadFile)]
    uploads = [u for u in uploads if u.filename or u.size]
    names = [u.filename or "photo" for u in uploads]
    photos = []
    for number, (upload, name) in enumerate(zip(uploads, names, strict=True), start=1):
        unique = name if names.count(name) == 1 else f"{name} (photo {number})"
        photos.append(EnrolmentPhoto(unique, await upload.read()))
    return photos


@dataclass(frozen=True)
class PhotoBadge:
    """What staff are told about one enrolment photo."""

    name: str
    usable: bool
    label: str
    """"usable", or the main reason it is not: "not an image", "no face", "two or more
    faces", "too small", "blurred", "turned away", ..."""
    reasons: tuple[str, ...] = ()
    quality: float | None = None
    """The quality gate's score in [0, 1] (detector confidence times size, sharpness and
    pose factors), when known."""


def refusal_label(reason: str) -> str:
    """The short badge for one refusal reason of :func:`enrolment_face` or
    :func:`decode_image`."""
    if "usable faces" in reason:
        return "two or more faces"
    if reason.startswith("no face"):
        return "no face"
    if "pixels" in reason:
        return "too many pixels"
    if "image" in reason:  # decode_image's messages; the gate's never name an image
        return "not an image"
    return reason.split(":", 1)[0]


def refused_badge(name: str, reasons: Sequence[str]) -> PhotoBadge:
    return PhotoBadge(name, False, refusal_label(reasons[0]), tuple(reasons))


def check_photo(photo: EnrolmentPhoto, models: FaceModels) -> PhotoBadge:
    """Decode one photo and find its one usable face (detection and the quality gate;
    no embedding, nothing kept): the badge an enrolment would give it."""
    try:
        image = decode_image(photo.data, photo.name)
        face = enrolment_face(image, models.detector, models.embedder, models.quality)
    except ImageError as exc:
        return refused_badge(photo.name, (str(exc),))
    except PhotoRefused as refused:
        return refused_badge(photo.name, refused.reasons)
    return PhotoBadge(photo.name, True, "usable", quality=round(face.quality.score, 3))

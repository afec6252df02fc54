"""What the cameras API takes and returns (routes in :mod:`watchkeeper.web.routes.recognition`).
A source goes in with its credentials; what comes out shows it masked, never a password."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.web.api.schemas import CameraHealthPublic


class CameraPublic(BaseModel):
    id: uuid.UUID
    site: str
    name: str
    source: str = Field(description="Where it is read from, with any password masked (***).")
    enabled: bool = Field(description="Recognition runs on it while recognition is on.")
    schedule: str | None = Field(description="When it should run (shown; not yet enforced).")
    health: CameraHealthPublic | None = Field(
        description="Its worker's state now; null when it does not run (disabled, or "
        "recognition stopped or not run by this process)."
    )


class CameraCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str = Field(description="Name of the organisation's site it is at.")
    name: str = Field(description="Unique at the site; no '/'.")
    source: str = Field(
        description="rtsp://, http(s):// ... URL (credentials are stored encrypted), a video "
        "file on the server, or a webcam index. An unreachable URL is accepted."
    )
    schedule: str | None = None
    enabled: bool = True


class CameraChange(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    schedule: str | None = Field(None, description="'' clears it.")
    source: str | None = Field(None, description="A new source; the camera restarts on it.")


class ConnectionTest(BaseModel):
    """A source to look at, or a registered camera whose stored source to look at."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = None
    camera: uuid.UUID | None = None


class ConnectionTestPublic(BaseModel):
    source: str = Field(description="The source looked at, with any password masked.")
    ok: bool = Field(description="A picture came within the time allowed.")
    width: int | None = None
    height: int | None = None
    fps: float | None = Field(None, description="Pictures per second, measured.")
    seconds: float = Field(description="How long the look took.")
    error: str | None = Field(None, description="Why no picture came.")

"""What the API returns. Public schemas only: no password hash, token, template or key
material is ever a field of any of them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UserPublic(BaseModel):
    name: str = Field(description="User name within the organisation.")
    role: str = Field(description="admin, manager, reporter, reviewer or auditor.")
    organisation: str
    sites: list[str] = Field(description="Sites the user works at.")


class CameraHealthPublic(BaseModel):
    name: str = Field(description="Site/camera.")
    state: str = Field(description="starting, running, failed, finished or stopped.")
    fps: float = Field(description="Frames analysed per second by the current worker.")
    frames: int
    dropped: int = Field(description="Frames discarded because analysis fell behind.")
    last_frame_seconds_ago: float | None
    error: str | None = Field(description="Why the camera last failed, if it did.")
    restarts: int
    last_restart: str | None = Field(
        description="When and why the camera last failed and was restarted (kept while it "
        "runs again)."
    )
    alerts: int = Field(description="Alerts raised since recognition started.")
    unstored_alerts: int = Field(
        description="Matches decided but not stored yet because the database or disk refused "
        "them: kept in memory and retried until stored."
    )
    store_error: str | None = Field(
        description="Why alerts cannot be stored now (e.g. 'cannot store alerts: disk full')."
    )
    decision_delay_s: float | None = Field(
        description="How late the camera's decisions, and so its alerts, come: seconds from "
        "the frame that ended a track to its decision (null before the first)."
    )
    waiting_faces: int = Field(
        description="Face chips waiting to be embedded in the camera's worker process."
    )
    decisions_late: bool = Field(
        description="The decisions come `streaming.late_decision_seconds` or more late: the "
        "machine cannot keep up with its cameras."
    )

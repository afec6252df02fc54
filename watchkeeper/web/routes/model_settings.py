"""The model the stored watchlist is searched with: what is held per model, and a switch
to another one (managers and administrators: the approve permission, as on the command
line). Page and REST API.

A switch re-embeds every entry (:func:`~watchkeeper.governance.model_switch.switch_model`),
which takes a while: it runs in a background thread of the app, one at a time, and the
page (refreshing itself) or the API shows its progress, then its outcome with the
entries the new model cannot use. Once it is stored, running cameras are told to reload,
and each restarts with the new model.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from watchkeeper.config import Settings
from watchkeeper.errors import PolicyError, WatchkeeperError
from watchkeeper.governance.access import Permission
from watchkeeper.governance.model_switch import (
    SwitchReport,
    holdings,
    model_in_use,
    switch_model,
    unsearchable_entries,
)
from watchkeeper.models.registry import ModelRegistry, ModelRole
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Organisation
from watchkeeper.web.deps import (
    Caller,
    CheckedUser,
    CurrentUser,
    DatabaseSession,
    permitted,
    settings_of,
)
from watchkeeper.web.templating import templates

log = logging.getLogger(__name__)

router = APIRouter(tags=["model"])


@dataclass
class SwitchJob:
    """A switch running (or run) in the background; what the page and API show."""

    model: str
    actor: str
    started_at: float = field(default_factory=time.time)
    done: int = 0
    total: int | None = None
    report: SwitchReport | None = None
    error: str | None = None
    finished_at: float | None = None

    @property
    def running(self) -> bool:
        return self.finished_at is None


_jobs_lock = threading.Lock()


def current_job(request: Request) -> SwitchJob | None:
    return getattr(request.app.state, "model_switch", None)


def start_switch(
    request: Request,
    organisation: Organisation,
    actor: str,
    model: str,
    accept_unusable: bool,
    drop_old: bool,
) -> SwitchJob | None:
    """Start a switch in the background, after checking what can be checked at once (the
    actor's permission, the model's file); None when ``model`` is already in use (nothing
    to do). A second switch while one runs is refused (409)."""
    settings = settings_of(request)
    if organisation.embedder == model:
        return None
    embedders = sorted(
        spec.name
        for spec in ModelRegistry(settings.models_dir).specs()
        if spec.role is ModelRole.IDENTITY_EMBEDDER
    )
    if model not in embedders:  # the user's mistake (422), not a broken model file (503)
        raise PolicyError(f"no identity model {model!r}; choose one of {', '.join(embedders)}")
    with _jobs_lock:
        running = current_job(request)
        if running is not None and running.running:
            raise HTTPException(409, f"a switch to {running.model} is already running")
        models = FaceModels.load(settings, model)  # a missing model file: 503, nothing started
        job = SwitchJob(model, actor)
        request.app.state.model_switch = job
    state = request.app.state

    def progress(done: int, total: int) -> None:
        job.done, job.total = done, total

    def run() -> None:
        try:
            job.report = switch_model(
                state.store,
                settings,
                organisation_id,
                actor,
                models,
                accept_unusable=accept_unusable,
                drop_old=drop_old,
                progress=progress,
            )
        except WatchkeeperError as exc:
            job.error = str(exc)
        except Exception as exc:  # a background thread: nobody else would see it
            log.exception("the model switch failed")
            job.error = f"unexpected error: {exc}"
        finally:
            job.finished_at = time.time()
        if job.report is not None and job.report.switched and state.supervisor is not None:
            state.supervisor.watchlist_changed()  # each camera reloads with the new model

    organisation_id = organisation.id
    threading.Thread(target=run, name="model-switch", daemon=True).start()
    return job


# What the page and the API show


class ModelHeld(BaseModel):
    model_id: str
    templates: int
    entries: int = Field(description="Entries with at least one template of this model.")
    in_use: bool


class UnusableEntryPublic(BaseModel):
    subject_id: str
    label: str
    status: str
    photos: dict[str, list[str]] = Field(description="Each refused photo's id and reasons.")


class SwitchPublic(BaseModel):
    model: str
    actor: str
    running: bool
    done: int
    total: int | None
    error: str | None
    switched: bool | None = Field(description="None while running.")
    entries: int | None
    templates: int | None
    dropped_templates: int | None
    unusable: list[UnusableEntryPublic] | None = Field(
        description="Entries the new model cannot use (shown to the user who started it)."
    )


class ModelStatePublic(BaseModel):
    model_in_use: str = Field(description="Registry name of the embedder searched with.")
    model_id: str
    from_configuration: bool = Field(
        description="Nothing enrolled yet: the configured embedder is used."
    )
    held: list[ModelHeld]
    not_searchable: int = Field(
        description="Unexpired entries with no template of the model in use."
    )
    available: list[str] = Field(description="Identity embedders whose file is present.")
    switch: SwitchPublic | None


class SwitchRequest(BaseModel):
    model: str = Field(description="Registry name of the identity embedder to switch to.")
    accept_unusable: bool = False
    drop_old: bool = False


def state_of(
    request: Request, session: Session, organisation: Organisation, viewer: str
) -> ModelStatePublic:
    settings: Settings = settings_of(request)
    registry = ModelRegistry(settings.models_dir)
    in_use = model_in_use(organisation, settings)
    model_id = registry.spec(in_use).model_id
    job = current_job(request)
    return ModelStatePublic(
        model_in_use=in_use,
        model_id=model_id,
        from_configuration=organisation.embedder is None,
        held=[
            ModelHeld(
                model_id=h.model_id,
                templates=h.templates,
                entries=h.entries,
                in_use=h.model_id == model_id,
            )
            for h in holdings(session, organisation.id)
        ],
        not_searchable=len(unsearchable_entries(session, organisation.id, model_id)),
        available=[
            spec.name
            for spec in registry.specs()
            if spec.role is ModelRole.IDENTITY_EMBEDDER and registry.locate(spec.name)
        ],
        switch=None if job is None else job_public(job, viewer),
    )


def job_public(job: SwitchJob, viewer: str) -> SwitchPublic:
    report = job.report
    return SwitchPublic(
        model=job.model,
        actor=job.actor,
        running=job.running,
        done=job.done,
        total=job.total,
        error=job.error,
        switched=None if report is None else report.switched,
        entries=None if report is None else report.entries,
        templates=None if report is None else report.templates,
        dropped_templates=None if report is None else report.dropped_templates,
        unusable=None
        if report is None or viewer != job.actor
        else [UnusableEntryPublic(**vars(entry)) for entry in report.unusable],
    )


# Page


@router.get("/settings/model", response_class=HTMLResponse)
def model_page(request: Request, session: DatabaseSession, me: CurrentUser) -> HTMLResponse:
    permitted(Permission.APPROVE, me.user)
    state = state_of(request, session, me.organisation, me.user.name)
    return templates.TemplateResponse(
        request,
        "settings_model.html",
        {"me": me, "state": state, "notice": request.query_params.get("notice")},
    )


@router.post("/settings/model")
def switch_form(
    request: Request,
    me: CheckedUser,
    model: Annotated[str, Form()],
    accept_unusable: Annotated[bool, Form()] = False,
    drop_old: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    """Start a switch (managers, administrators); the page then shows its progress."""
    permitted(Permission.APPROVE, me.user)
    job = start_switch(request, me.organisation, me.user.name, model, accept_unusable, drop_old)
    target = "/settings/model" if job is not None else "/settings/model?notice=already"
    return RedirectResponse(target, status_code=303)


# API


@router.get("/api/settings/model", response_model=ModelStatePublic, tags=["api"])
def model_api(request: Request, session: DatabaseSession, caller: Caller) -> ModelStatePublic:
    """The model in use, templates held per model (counts only) and the last switch."""
    permitted(Permission.APPROVE, caller.user)
    return state_of(request, session, caller.organisation, caller.user.name)


@router.post("/api/settings/model", response_model=ModelStatePublic, status_code=202, tags=["api"])
def switch_api(
    request: Request, session: DatabaseSession, caller: Caller, body: SwitchRequest
) -> ModelStatePublic:
    """Start a switch to another model (managers, administrators): 202, then poll GET
    for its progress and outcome; nothing started when the model is already in use;
    409 while another switch runs."""
    permitted(Permission.APPROVE, caller.user)
    start_switch(
        request, caller.organisation, caller.user.name, body.model, body.accept_unusable,
        body.drop_old,
    )  # fmt: skip
    return state_of(request, session, caller.organisation, caller.user.name)

"""The FastAPI application: routers per resource, templates, security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from watchkeeper.config import Settings
from watchkeeper.errors import (
    ImageError,
    ModelError,
    NotFoundError,
    PolicyError,
    StorageError,
    WatchlistError,
)
from watchkeeper.service.runtime import Runtime
from watchkeeper.store.database import Store
from watchkeeper.web.deps import NotSignedIn
from watchkeeper.web.openapi import with_refusals
from watchkeeper.web.templating import HERE, templates

DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI's script and style sheet, as the fastapi-offline package ships them."""

SECURITY_HEADERS = {
    # Pages, styles and scripts come from this server only; no page may frame ours.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

HSTS = "max-age=31536000"
"""Strict-Transport-Security with secure cookies on (the app is reached over HTTPS):
browsers refuse plain HTTP to this host for a year. No includeSubDomains: other
hosts of the shop's domain are not this app's to decide for."""


def create_app(settings: Settings, store: Store, runtime: Runtime | None = None) -> FastAPI:
    """The web app over ``store`` (which the caller opens and closes). With a
    ``runtime``, recognition and notifications start with the app and stop with it:
    stopping waits until every camera has stored its last alerts. Without one, the
    app shows and reviews what is stored, and controls no camera."""
    runtime = runtime or Runtime(settings, store, cameras=False)
    from watchkeeper.web.api import alerts as alerts_api
    from watchkeeper.web.api import audit as audit_api
    from watchkeeper.web.api import edges as edges_api
    from watchkeeper.web.api import estate as estate_api
    from watchkeeper.web.api import me
    from watchkeeper.web.api import watchlist as watchlist_api
    from watchkeeper.web.routes import (
        alerts,
        audit,
        auth,
        estate,
        home,
        model_settings,
        recognition,
        watchlist,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(runtime.start)
        try:
            yield
        finally:
            await run_in_threadpool(runtime.stop)

    app = FastAPI(
        title="Watchkeeper",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.runtime = runtime
    app.state.supervisor = runtime.supervisor
    app.state.broadcaster = runtime.broadcaster
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.mount("/api/docs/assets", StaticFiles(directory=DOCS_ASSETS), name="api-docs-assets")

    @app.get("/api/docs", include_in_schema=False, response_class=HTMLResponse)
    def api_docs(request: Request) -> HTMLResponse:
        """The API's reference (Swagger UI) from this server's own files."""
        return templates.TemplateResponse(request, "api_docs.html", {})

    app.include_router(auth.router)
    app.include_router(home.router)
    app.include_router(alerts.router)
    app.include_router(watchlist.router)
    app.include_router(audit.router)
    app.include_router(recognition.router)
    app.include_router(model_settings.router)
    app.include_router(me.router)
    app.include_router(alerts_api.router)
    app.include_router(watchlist_api.router)
    app.include_router(audit_api.router)
    app.include_router(estate.router)
    app.include_router(estate_api.router)
    app.include_router(edges_api.router)
    with_refusals(app)

    @app.exception_handler(NotSignedIn)
    async def to_sign_in(request: Request, exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return Response("not signed in", status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(NotFoundError)
    @app.exception_handler(PolicyError)
    @app.exception_handler(WatchlistError)
    @app.exception_handler(ImageError)
    @app.exception_handler(ModelError)
    async def refused(request: Request, exc: Exception) -> Response:
        """A refusal from the governance layer (its transaction is rolled back, so
        nothing was stored): 404 for what is not found, 422 for what the rules refuse,
        503 when a model the request needs cannot be loaded (the message names it)."""
        if isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, ModelError):
            status = 503  # a model file is missing or wrong: the server's fault, not the user's
        else:
            status = 422
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return templates.TemplateResponse(
            request, "error.html", {"me": None, "message": str(exc)}, status_code=status
        )

    @app.exception_handler(StorageError)
    async def not_stored(request: Request, exc: StorageError) -> Response:
        """A change the database or disk refused (rolled back, so nothing half done):
        507 Insufficient Storage for a full disk, 503 when the database refused, with
        the reason; never the page or reply the request would have had."""
        status = 507 if exc.disk_full else 503
        message = f"not stored: {exc}"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=status)
        return templates.TemplateResponse(
            request, "error.html", {"me": None, "message": message}, status_code=status
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if settings.web.secure_cookies:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    return app

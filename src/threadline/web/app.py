"""create_app(): the ASGI application, with the process's services started in its lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from threadline import __version__
from threadline.config import Settings, get_settings
from threadline.logging import configure as configure_logging
from threadline.services import Services
from threadline.web import csp, errors, hooks, live, openapi, ops
from threadline.web.api import router as api_router
from threadline.web.desk import router as desk_router
from threadline.web.limits import UPLOAD_ROUTES, BodySizeLimit, HeaderLimit, RequestMetrics
from threadline.web.webchat import agent_router as webchat_api_router
from threadline.web.webchat import router as webchat_router
from threadline.web.webchat.live import VisitorHub

DESCRIPTION = """Threadline's REST API. Authenticate with a session cookie (browser; writes need the
`X-CSRF-Token` header from `GET /api/v1/me`) or an API token: `Authorization: Bearer tl_…`
(create one with `threadline token create` or `POST /api/v1/tokens`). Errors are RFC 9457 problem
documents. Live events: websocket `/api/v1/stream?after=<seq>`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings)
        app.state.services = services
        app.state.hub = live.Hub(services.bus)
        app.state.visitor_hub = VisitorHub(services.bus, services.db)
        await services.start()
        # Everything loaded so far (modules, mappers, compiled statements) lives as long as the process:
        # moving it out of the collector's generations keeps full collections short.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(title="Threadline", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None)
    errors.install(app)
    openapi.install(app)
    app.include_router(api_router)
    app.include_router(hooks.router)
    app.include_router(live.router)
    app.include_router(ops.router)
    app.include_router(desk_router)
    app.include_router(webchat_router)
    app.include_router(webchat_api_router)

    app.add_middleware(RequestMetrics)
    app.add_middleware(csp.SecurityHeaders)
    # file uploads (web chat visitors, the desk composer) take bigger bodies: limits.UPLOAD_ROUTES
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, larger=UPLOAD_ROUTES)
    app.add_middleware(hooks.HookFastPath, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeaderLimit, max_bytes=settings.max_header_bytes, max_count=settings.max_headers)
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory threadline.web.app:app_factory`` (several workers)."""
    return create_app()

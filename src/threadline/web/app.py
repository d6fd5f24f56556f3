"""create_app(): the ASGI application, with the process's services started in its lifespan.

The routes integration packages contribute (their ``Host.add_routes``) are mounted when the services are
built, after the core's, and taken down with them; paths they allow a larger body join the body limit.
The integration registry is loaded before anything else, so a refused package stops the start at once
with a message naming it."""

from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from threadline import __version__
from threadline.config import Settings, get_settings
from threadline.flows import api as flows_api  # a feature package (threadline/features.py)
from threadline.kb import api as kb_api  # a feature package (threadline/features.py)
from threadline.logging import configure as configure_logging
from threadline.plugins import registry
from threadline.services import Services
from threadline.voice import api as voice_api  # a feature package (threadline/features.py)
from threadline.web import csp, deps, errors, hooks, live, openapi, ops
from threadline.web.api import router as api_router
from threadline.web.desk import router as desk_router
from threadline.web.forward import MediaForward, MediaProcess
from threadline.web.limits import UPLOAD_ROUTES, BodySizeLimit, HeaderLimit, RequestMetrics
from threadline.webhooks import api as webhooks_api  # a feature package (threadline/features.py)

DESCRIPTION = """Threadline's REST API. Authenticate with a session cookie (browser; writes need the
`X-CSRF-Token` header from `GET /api/v1/me`) or an API token: `Authorization: Bearer tl_…`
(create one with `threadline token create` or `POST /api/v1/tokens`). Errors are RFC 9457 problem
documents. Live events: websocket `/api/v1/stream?after=<seq>`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    registry.load()  # raises PluginError naming any refused integration package
    # paths (regular expressions) allowed a larger body: the core's uploads, and the integrations' (filled at start)
    larger_bodies: dict[str, int] = dict(UPLOAD_ROUTES)
    media = MediaProcess(settings.data_dir, settings.processes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings, current_actor=deps.current_actor)
        app.state.services = services
        app.state.live = services.live  # the live stream core: the desk's socket and the widget's
        app.state.media = media  # which process relays browser calls (web/forward.py)
        core_routes = list(app.router.routes)
        for contributed in services.routes:
            app.include_router(contributed.router)
            larger_bodies.update({re.escape(path): size for path, size in contributed.body_limits.items()})
        await services.start()
        await media.start(app)  # several processes: one of them relays the host's browser calls (web/forward.py)
        # Everything loaded so far (modules, mappers, compiled statements) lives as long as the process:
        # moving it out of the collector's generations keeps full collections short.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await media.stop()
            await services.stop()
            app.router.routes[:] = core_routes  # a later lifespan mounts its own services' routes

    app = FastAPI(title="Threadline", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None)
    errors.install(app)
    openapi.install(app)
    app.include_router(api_router)
    app.include_router(webhooks_api.router, prefix=api_router.prefix)  # feature packages' routers
    app.include_router(flows_api.router, prefix=api_router.prefix)
    app.include_router(voice_api.router, prefix=api_router.prefix)
    app.include_router(voice_api.voice_router, prefix=api_router.prefix)
    app.include_router(voice_api.hooks)  # call control under the channels' hook URLs
    app.include_router(kb_api.router, prefix=api_router.prefix)
    app.include_router(kb_api.help_router)  # the public help center, /help
    app.include_router(hooks.router)
    app.include_router(live.router)
    app.include_router(ops.router)
    app.include_router(desk_router)

    app.add_middleware(RequestMetrics)
    app.add_middleware(csp.SecurityHeaders)
    app.add_middleware(MediaForward, media=media)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, larger=larger_bodies)
    app.add_middleware(hooks.HookFastPath, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeaderLimit, max_bytes=settings.max_header_bytes, max_count=settings.max_headers)
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory threadline.web.app:app_factory`` (several workers)."""
    return create_app()

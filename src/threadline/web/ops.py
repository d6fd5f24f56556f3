"""Operations endpoints: liveness, readiness, Prometheus metrics, and the API docs (self-hosted assets)."""

from __future__ import annotations

import hmac
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from threadline.db.repos import common as common_repo
from threadline.web.deps import ServicesDep, bearer_token
from threadline.web.errors import problem

router = APIRouter(include_in_schema=False)
DOCS_STATIC = files("fastapi_offline") / "static"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with services.db.transaction(write=False) as session:
            await common_repo.ping(session)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    if services.settings.redis_url:
        try:
            await services.bus._redis.ping()  # type: ignore[attr-defined]
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


LOOPBACK = {"127.0.0.1", "::1", "localhost"}
FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip")


@router.get("/metrics")
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus metrics, not public: with THREADLINE_METRICS_TOKEN, for whoever sends it as a bearer token;
    without one, for direct connections from this host only (loopback, not relayed by a proxy)."""
    token = services.settings.metrics_token
    if token:
        sent = bearer_token(request) or ""
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return problem(401, "send THREADLINE_METRICS_TOKEN as 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    elif (request.client is None or request.client.host not in LOOPBACK
          or any(h in request.headers for h in FORWARDED)):
        return problem(403, "metrics are served to this host only; set THREADLINE_METRICS_TOKEN to scrape from "
                       "elsewhere")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


SWAGGER_INIT = """window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui",
  layout: "BaseLayout", deepLinking: true, showExtensions: true, showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]});
"""
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Threadline API</title>
<link type="text/css" rel="stylesheet" href="/api/docs/static/swagger-ui.css">
<link rel="icon" href="/api/docs/static/favicon.png"></head>
<body><div id="swagger-ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script src="/api/docs/static/init.js"></script></body></html>
"""


@router.get("/api/docs")
async def api_docs(request: Request) -> HTMLResponse:
    """Swagger UI from our own files; its set-up script is a file too (the page's CSP allows no inline script)."""
    return HTMLResponse(DOCS_PAGE)


@router.get("/api/docs/static/{name}")
async def docs_static(name: str) -> Response:
    if name == "init.js":
        return Response(SWAGGER_INIT, media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})
    allowed = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css",
               "favicon.png": "image/png", "redoc.standalone.js": "application/javascript"}
    if name not in allowed:
        return Response(status_code=404)
    return Response((DOCS_STATIC / name).read_bytes(), media_type=allowed[name],
                    headers={"Cache-Control": "public, max-age=86400"})

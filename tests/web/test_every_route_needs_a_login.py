"""Every API route says who may call it: without credentials, each one (every method of every path in
the OpenAPI document, with placeholder ids) answers 401, except the few that are public by design (sign-in,
the provider hooks that carry their own signatures, the widget's visitor API, the knowledge base's public
search and feedback, health and metrics)."""

from __future__ import annotations

import re

import httpx

PUBLIC = re.compile(r"^(/api/v1/auth/(login|logout)|/api/v1/openapi\.json|/hooks/|/widget/|/healthz|/readyz|/metrics"
                    r"|/api/v1/attachments/public|/files/|/api/v1/kb/public/)")


async def test_no_api_route_answers_a_caller_without_credentials(sqlite_server) -> None:
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        doc = (await c.get("/api/v1/openapi.json")).json()
        open_routes = []
        for path, item in doc["paths"].items():
            if PUBLIC.match(path):
                continue
            url = re.sub(r"\{[^}]+\}", "1", path)
            for method in item:
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                r = await c.request(method.upper(), url, json={} if method in ("post", "put", "patch") else None)
                if r.status_code != 401:
                    open_routes.append(f"{method.upper()} {path}: {r.status_code}")
    assert not open_routes, "\n".join(open_routes)

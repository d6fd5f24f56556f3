"""The OpenAPI document, with the 4xx answers each operation really gives.

FastAPI documents the success answer and a 422 shaped like its own validation error. Threadline answers
every error with an RFC 9457 problem document (``web/errors.py``), so the document is completed once,
when first asked for, from what each route is: who may call it (401 without credentials, 403 for a role
or a missing CSRF token), whether it names something (404), takes input (422), a body (400 malformed,
413 too large) or changes state (409). The anonymous web chat endpoints answer ``{"detail", "code"}``.
``tests/web/test_openapi_fuzz.py`` runs a schema fuzzer over the document and checks both: no 5xx, and
no status the document does not declare.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from threadline.web.deps import current_actor
from threadline.web.errors import TITLES

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Problem", "description": "An RFC 9457 problem document",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "/problems/<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What is wrong, in words"},
        "field": {"type": "string", "description": "The input at fault, e.g. body.labels or config.smtp_host"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
WIDGET_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "WidgetError", "required": ["detail", "code"],
    "properties": {"detail": {"type": "string", "description": "Shown to the visitor"},
                   "code": {"type": "string", "description": "e.g. unknown_channel, origin_not_allowed"}},
}
WHY = {
    400: "The request is malformed (HTTP syntax, or a body that is not the JSON it says it is)",
    401: "No valid session cookie or API token",
    403: "Not allowed: a role is needed, or the X-CSRF-Token header is missing on a cookie-authenticated write",
    404: "Nothing with this id, or nothing this user may see (answered like a missing one)",
    409: "Conflicts with the current state (already exists, already done, the last admin…)",
    413: "The body is larger than the limit",
    422: "Invalid input; the problem names the field",
    429: "Too many attempts; retry after the Retry-After header",
    503: "Overloaded; retry",
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _calls(dependant: Dependant) -> set[Any]:
    out: set[Any] = set()
    stack = [dependant]
    while stack:
        dep = stack.pop()
        if dep.call is not None:
            out.add(dep.call)
        stack.extend(dep.dependencies)
    return out


def _needs_role(dependant: Dependant) -> bool:
    return any(getattr(c, "__qualname__", "").startswith("require.") for c in _calls(dependant))


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route with its effective path and dependencies (FastAPI ≥0.130 keeps included routers
    nested and walks them with ``iter_route_contexts``; older versions list flat ``APIRoute``s)."""
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - older FastAPI
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            yield ctx


def _statuses(route: Any) -> set[int]:
    """The error statuses an API route can answer, from its dependencies, parameters and method."""
    dependant = route.dependant
    authenticated = current_actor in _calls(dependant)
    writes = bool(route.methods & WRITE_METHODS)
    has_input = bool(dependant.path_params or dependant.query_params or dependant.body_params)
    out: set[int] = {400}  # any request can be malformed (a bad request line, query or body encoding)
    if authenticated:
        out.add(401)
        if writes or _needs_role(dependant):
            out.add(403)
    if dependant.path_params or any(p.name.endswith("_id") for p in dependant.query_params) or writes:
        out.add(404)
    if writes:
        out.add(409)
    if has_input or writes:
        out.add(422)
    if dependant.body_params:
        out.add(413)
    return out


def _answers(statuses: set[int], ref: str) -> dict[str, Any]:
    return {str(code): {"description": WHY.get(code, TITLES.get(code, "Error")),
                        "content": {"application/problem+json" if ref == "Problem" else "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{ref}"}}}}
            for code in sorted(statuses)}


def complete(app: FastAPI, doc: dict[str, Any]) -> dict[str, Any]:
    """Add the problem schemas and every operation's error answers to a generated document (in place)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"], schemas["WidgetError"] = PROBLEM_SCHEMA, WIDGET_ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for route in _api_routes(app):
        if not route.include_in_schema:
            continue
        for method in route.methods:
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's own shape; ours is a problem document
            if route.path_format.startswith("/widget"):
                wanted, ref = {401, 403, 404, 409, 413, 415, 422, 429}, "WidgetError"
            elif route.path_format.startswith("/hooks"):
                wanted, ref = {400, 401, 403, 404, 405, 413, 503}, "Problem"
            else:
                wanted, ref = _statuses(route), "Problem"
                if route.path_format.endswith("/auth/login"):
                    wanted |= {401, 429}
            for code, answer in _answers(wanted, ref).items():
                responses.setdefault(code, answer)
    doc["x-threadline-errors"] = True
    return doc


def install(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's: builds the document once (again when routes change) and caches it

    def openapi() -> dict[str, Any]:
        doc = generate()
        return doc if doc.get("x-threadline-errors") else complete(app, doc)

    app.openapi = openapi  # type: ignore[method-assign]

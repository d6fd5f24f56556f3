"""Issue 12, item 6: a schema fuzzer (schemathesis, on Hypothesis) runs every operation of the OpenAPI
document against a real server, as an agent and as an admin, with valid and invalid input. No input may
make the server fail (5xx), and every answer must be one the document declares for that operation.

Bounded (a few examples per operation and mode, no shrinking) so it stays within a minute or two; the
ids it sends are often those of rows that exist, so it reaches past the 404s."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from tests.conftest import seed_basics

from threadline.actions import auth as auth_actions
from threadline.security import sign

EXAMPLES = 2  # per operation, mode and user: ~600 requests in all
# Operations that would end the run's own access, or wait on the outside world.
SKIP = {("DELETE", "/api/v1/tokens/{token_id}"), ("PUT", "/api/v1/users/{user_id}/password"),
        ("POST", "/api/v1/channels/test"), ("POST", "/api/v1/channels/{channel_id}/connect"),
        ("POST", "/api/v1/webhooks/{endpoint_id}/ping")}


async def _world(server) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Users with tokens, a customer and a conversation, so that small ids name real rows."""
    svc = server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        _, agent = await auth_actions.create_token(s, ids["alice"], "fuzz")
        _, admin = await auth_actions.create_token(s, ids["admin"], "fuzz")
        from threadline.db.repos import channels as channels_repo

        key = (await channels_repo.get_channel(s, ids["channel"])).key
    async with httpx.AsyncClient(base_url=server.url) as c:
        raw = json.dumps({"id": "m-1", "contact": {"id": "c-1", "name": "Ana", "email": "ana@example.com"},
                          "text": "Hello"}).encode()
        ts = str(int(time.time()))
        r = await c.post(f"/hooks/{key}", content=raw, headers={
            "content-type": "application/json", "x-threadline-timestamp": ts,
            "x-threadline-signature": sign("s3cret-s3cret-s3cret", raw, ts)})
        assert r.status_code == 200
    return {"agent": agent, "admin": admin}


def _check(operation, mode: GenerationMode, base_url: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """A Hypothesis test of one operation in one mode for one user (call it to run it)."""

    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case, real: bool) -> None:  # type: ignore[no-untyped-def]
        if real:  # ids of rows that exist: 1 is a user, a queue, the channel, the conversation…
            for name in list(case.path_parameters or {}):
                if name.endswith("_id"):
                    case.path_parameters[name] = 1
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance])

    return run


def _fuzz(document: dict, base_url: str, tokens: dict[str, str]) -> list[str]:
    """Every operation, both modes, both users; the failures found (one line each)."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        for who, token in tokens.items():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    _check(operation, mode, base_url, {"Authorization": f"Bearer {token}"})()
                except Unsatisfiable:  # nothing to make invalid (no parameters, or free-form strings only)
                    continue
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected: one run reports all
                    failures.append(f"{who} {mode.value} {operation.method.upper()} {operation.path}: "
                                    f"{str(exc).strip()[:1500]}")
    return failures


@pytest.mark.timeout(600)
async def test_no_input_makes_any_operation_fail(sqlite_server) -> None:
    tokens = await _world(sqlite_server)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        document = (await c.get("/api/v1/openapi.json")).json()
    failures = await asyncio.to_thread(_fuzz, document, sqlite_server.url, tokens)
    assert not failures, "\n\n".join(failures)

"""A third-party integration installed by entry point runs through its host: its route is mounted and
authenticates users, its loop starts and stops with the process, its typed subscription gets events. A
refused package stops the start of the services and of the web app with a message naming it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path

import httpx
import pytest

from threadline.plugins import PluginError, registry
from threadline.plugins.registry import GROUP
from threadline.services import Services
from threadline.web.app import create_app

from ..conftest import login, make_server, make_settings, seed_basics
from .fakes import Probe

FAKES = "tests.plugins.fakes"


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch):
    """Install integrations through fake entry points for one test."""
    def installing(**eps: str) -> None:
        monkeypatch.setattr(registry, "entry_points", lambda group: [
            EntryPoint(name, value, GROUP) for name, value in eps.items()] if group == GROUP else [])
        registry.reset()

    yield installing
    registry.reset()


async def test_an_installed_integration_gets_its_route_loop_and_events_through_the_host(
        install, sqlite_url: str, tmp_path: Path) -> None:
    install(probe=f"{FAKES}:probe")
    async with await make_server(sqlite_url, tmp_path) as server:
        plugged = server.services.integrations["probe"]
        probe = plugged.runtime
        assert isinstance(probe, Probe) and probe.host is plugged.host
        assert server.services.loop("probe-loop") is probe.loop
        await asyncio.wait_for(probe.loop.ticked.wait(), 5)  # started with the workers
        assert probe.loop.running

        ids = await seed_basics(server.services)
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.get("/probe/me")
            assert r.status_code == 401, r.text  # the host's authentication dependency
            await login(client, "alice@example.com")
            r = await client.get("/probe/me")
            assert r.status_code == 200 and r.json()["integration"] == "probe"
            r = await client.post("/probe/contacts", json={"name": "Pat"})  # a core action, via host.write
            assert r.status_code == 201, r.text
            contact_id = r.json()["id"]
            r = await client.post("/probe/ping")  # a scheduled job of its own, run by the timer worker
            assert r.status_code == 202, r.text
        await asyncio.wait_for(probe.seen.wait(), 5)
        assert [c for c, _ in probe.created] == [contact_id] and probe.created[0][1] > 0
        await asyncio.wait_for(probe.job_ran.wait(), 10)
        assert probe.jobs == [(str(ids["alice"]), {"by": "Alice"})]
        with pytest.raises(PluginError, match="job kind 'ping' must start with 'probe.'"):
            await plugged.host.schedule("ping", 1, datetime.now(UTC))
    assert probe.loop.stopped and not probe.loop.running  # stopped with the services


async def test_an_integration_whose_setup_fails_stops_the_start_naming_it(install, sqlite_url, tmp_path) -> None:
    install(failing=f"{FAKES}:failing")
    with pytest.raises(PluginError, match=r"integration 'failing' \(entry point 'failing'.*its setup failed: "
                                          r"RuntimeError: the probe's licence key is missing"):
        Services.build(make_settings(sqlite_url, tmp_path))


async def test_refused_packages_stop_the_services_and_the_app_naming_both(install, sqlite_url, tmp_path) -> None:
    install(pigeon=f"{FAKES}:pigeon", rival=f"{FAKES}:rival")
    settings = make_settings(sqlite_url, tmp_path)
    expected = (r"the channel kind 'pigeon' is claimed by integration 'pigeon' \(entry point 'pigeon'.*\) "
                r"and by integration 'rival_pigeon' \(entry point 'rival'")
    with pytest.raises(PluginError, match=expected):
        Services.build(settings)
    with pytest.raises(PluginError, match=expected):
        create_app(settings)

"""A call in the browser, end to end in two real headless Chromiums with fake media devices, each
capturing a known tone (the visitor 440 Hz, the agent 660 Hz): the visitor presses the call button of the
widget on a shop's page, routing offers the call to Alice, she accepts the offer and answers in her desk;
the queue records every call, so the server relays and records it. The two-channel recording is checked:
the agent's channel holds the agent's tone and the customer's channel the visitor's sentence (spoken by
espeak-ng, transcribed by the packaged local model), for as long as they talked.
A second call goes peer to peer (the queue does not record), rings Alice at once (she has the
conversation), and her desk hears the visitor."""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import struct
import subprocess
import wave
from array import array
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, chromium_available
from tests.browser.test_desk_live import WAIT
from tests.browser.test_widget_chat import W, host_site
from tests.conftest import IN_CI, PASSWORD, seed_basics
from threadline.actions import users as user_actions
from threadline.db.repos import users as users_repo

MEDIA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
              "--disable-features=WebRtcHideLocalIpsWithMdns"]


def tone(path: Path, hz: float, seconds: float = 3.0, rate: int = 48_000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * hz * i / rate)))
                               for i in range(int(rate * seconds))))
    return path


def pitch(samples: array, rate: int = 16_000) -> float:
    """The rough frequency of a stretch of audio, from its zero crossings."""
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)


async def chromium(pw, sound: Path):  # type: ignore[no-untyped-def]
    return await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*CHROMIUM_ARGS, *MEDIA_ARGS, f"--use-file-for-fake-audio-capture={sound}"])


async def login(browser, server):  # type: ignore[no-untyped-def]
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(server.url + "/login")
    await page.fill("#email", "alice@example.com")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + "/")
    await page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)
    return page


async def record_policy(server, queue_id: int, record: str) -> None:  # type: ignore[no-untyped-def]
    async with server.services.db.transaction() as s:
        q = await users_repo.get_queue(s, queue_id)
        await user_actions.update_queue(s, queue_id, settings={**(q.settings or {}), "voice": {"record": record}})


async def call_from_the_widget(visitor_page, agent_page, *, again: bool = False) -> None:  # type: ignore[no-untyped-def]
    """The visitor calls; the first time routing offers it to Alice, then it rings her directly (she has the
    conversation)."""
    if not again:
        await visitor_page.locator(f"{W} .tl-bubble").click()
    await visitor_page.locator(f"{W} .tl-call-voice").click()
    await visitor_page.locator(f"{W} .tl-callbar").wait_for(timeout=WAIT)
    if not again:
        await agent_page.locator(".tl-accept").click(timeout=WAIT)  # the routing offer
    await agent_page.locator("#webphone button", has_text="Answer").click(timeout=WAIT)
    await visitor_page.locator(f"{W} .tl-callbar", has_text="On the call").wait_for(timeout=WAIT)


async def test_a_visitor_calls_from_the_widget_and_the_agent_answers_in_the_desk(sqlite_server, tmp_path) -> None:
    if not chromium_available():
        if IN_CI:
            pytest.fail(f"Chromium is required in CI (CI=true) but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.async_api import async_playwright

    server = sqlite_server
    ids = await seed_basics(server.services)
    await record_policy(server, ids["general"], "always")
    # the visitor says a sentence (espeak-ng, installed by make test); without it, a 440 Hz tone
    spoken = tmp_path / "visitor.wav"
    espeak = shutil.which("espeak-ng")
    if espeak is not None:
        await asyncio.to_thread(subprocess.run, [espeak, "-v", "en-us", "-s", "140", "-w", str(spoken),
                                                 "Hello, I cannot log into my account."], check=True)
    else:
        tone(spoken, 440)
    async with host_site(server, ids, calls="voice", prechat_required=[]) as (url, _key), async_playwright() as pw:
        visitor_browser = await chromium(pw, spoken)
        agent_browser = await chromium(pw, tone(tmp_path / "agent.wav", 660))
        try:
            agent_page = await login(agent_browser, server)
            visitor_page = await (await visitor_browser.new_context()).new_page()
            await visitor_page.goto(url)
            await call_from_the_widget(visitor_page, agent_page)
            await agent_page.locator("#webphone", has_text="Relayed and recorded").wait_for(timeout=WAIT)
            await asyncio.sleep(3)  # they talk for a few seconds
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await agent_page.screenshot(path=str(SCREENSHOTS / "voice-browser-call-desk.png"))
            await visitor_page.screenshot(path=str(SCREENSHOTS / "voice-browser-call-widget.png"))
            await agent_page.locator("#webphone button", has_text="Hang up").click()
            await visitor_page.locator(f"{W} .tl-callbar").wait_for(state="hidden", timeout=WAIT)
            await agent_page.locator("#webphone").wait_for(state="hidden", timeout=WAIT)
            await agent_page.locator("#timeline .msg", has_text="answered by Alice").wait_for(timeout=WAIT)

            cookies = {c["name"]: c["value"] for c in await agent_page.context.cookies()}
            async with httpx.AsyncClient(base_url=server.url, cookies=cookies) as alice:
                conv = int(agent_page.url.rsplit("/", 1)[1].split("?")[0])
                [call] = (await alice.get("/api/v1/calls", params={"conversation_id": conv})).json()
                for _ in range(50):  # the recording is stored as the media closes
                    if call["recording_seconds"]:
                        break
                    await asyncio.sleep(0.1)
                    [call] = (await alice.get("/api/v1/calls", params={"conversation_id": conv})).json()
                assert call["provider"] == "webrtc" and call["end_cause"] == "completed"
                wav = await alice.get(f"/api/v1/calls/{call['id']}/recording")
                assert wav.status_code == 200, wav.text
            with wave.open(io.BytesIO(wav.content)) as w:
                assert w.getnchannels() == 2 and w.getframerate() == 16_000
                seconds = w.getnframes() / 16_000
                pcm = array("h", w.readframes(w.getnframes()))
            assert 2.5 <= seconds <= 10, seconds
            customer, agent = pcm[0::2], pcm[1::2]
            middle = slice(len(customer) // 4, 3 * len(customer) // 4)
            assert 580 <= pitch(agent[middle]) <= 740, pitch(agent[middle])  # the agent's 660 Hz
            if espeak is None:
                assert 380 <= pitch(customer[middle]) <= 500, pitch(customer[middle])  # the visitor's 440 Hz
            else:  # the customer's channel, transcribed by the packaged local model: the visitor's words
                from threadline.voice.transcribe import Transcriber
                left = io.BytesIO()
                with wave.open(left, "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(16_000)
                    w.writeframes(customer.tobytes())
                words = (await Transcriber("packaged").transcribe(left.getvalue())).lower()
                assert "log" in words and "account" in words, words
            assert agent_page.errors == [] and await visitor_page.evaluate("1") == 1  # type: ignore[attr-defined]

            # peer to peer (the queue does not record): the agent's browser hears the visitor directly
            await record_policy(server, ids["general"], "never")
            await agent_page.goto(server.url + "/")
            await agent_page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)
            await call_from_the_widget(visitor_page, agent_page, again=True)
            await agent_page.locator("#webphone", has_text="Direct (peer to peer)").wait_for(timeout=WAIT)
            await agent_page.wait_for_function("""async () => {
                const a = document.getElementById('webphone-audio');
                return !!(a && a.srcObject && a.srcObject.getAudioTracks().length);
            }""", timeout=WAIT)
            level = await agent_page.evaluate("""() => new Promise(resolve => {
                const s = document.getElementById('webphone-audio').srcObject;
                const ctx = new AudioContext(); const an = ctx.createAnalyser();
                ctx.createMediaStreamSource(s).connect(an);
                const buf = new Float32Array(an.fftSize); let peak = 0, n = 0;
                const t = setInterval(() => { an.getFloatTimeDomainData(buf);
                    for (const v of buf) peak = Math.max(peak, Math.abs(v));
                    if (++n > 20) { clearInterval(t); resolve(peak); } }, 100);
            })""")
            assert level > 0.05, level  # the visitor's tone arrives, not silence
            await visitor_page.locator(f"{W} .tl-callbar button.tl-end").click()
            await agent_page.locator("#webphone").wait_for(state="hidden", timeout=WAIT)
            assert agent_page.errors == []  # type: ignore[attr-defined]
        finally:
            await visitor_browser.close()
            await agent_browser.close()

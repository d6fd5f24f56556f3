"""Voice call-control webhooks: Twilio's requests for a live queue (each queued caller's wait URL, where the
announcement of their place and estimated wait is due; status callbacks; keys pressed while waiting),
each signed (``X-Twilio-Signature`` over the exact URL), verified, applied and answered with TwiML, with
1,000 callers queued and no agent online (so they stay queued). Reports requests/s and p50/p99 at
saturation and at a steady 100/s, and the ratio against a bare Starlette endpoint that only parses the
form and returns a fixed TwiML, measured in the same run with the same load generator.

Target (the voice issue): >= 500 webhooks/s on this machine; p99 < 50 ms at 100/s with 1,000 callers
queued and announcements due.

Run: ``make bench`` (or ``python -m bench.voice_webhooks [--quick] [--profile out.svg]``). Server and load
generator are two processes on this machine; SQLite, one server process, the embedded bus (like
bench/api_ingest.py). The provider's REST API is a loopback stub answering 201 (only an accepted call
would use it; nobody accepts here).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from twilio.request_validator import RequestValidator

from bench.api_ingest import BIN, free_port, wait_http
from bench.context import header, verdict
from bench.loadgen import closed_loop, open_loop, percentile
from bench.stub import stub_provider

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-twilio-voice-token-0123456789"
NUMBER = "+15005550006"
MIX = ("wait",) * 7 + ("status",) * 2 + ("key",)  # per 10 requests: 7 wait URLs, 2 status callbacks, 1 key
CONCURRENCY = 32
RATE = 100.0
FORM = "application/x-www-form-urlencoded"


@dataclass
class Caller:
    sid: str
    number: str
    call_id: int
    seq: int = 0


@dataclass
class Line:
    """The server's voice URLs and the callers waiting on it."""

    base: str  # http://127.0.0.1:port
    voice: str  # /hooks/{key}/voice
    callers: list[Caller] = field(default_factory=list)


def signed(validator: RequestValidator, url: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return urlencode(params).encode(), {"Content-Type": FORM,
                                        "X-Twilio-Signature": validator.compute_signature(url, params)}


def common(c: Caller) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": c.sid, "Direction": "inbound",
            "From": c.number, "Caller": c.number, "To": NUMBER, "Called": NUMBER, "FromCountry": "US"}


def requests(line: Line, n: int, seed: int) -> tuple[list[str], list[tuple[bytes, dict[str, str]]], list[str]]:
    """``n`` signed requests of the live-queue mix, to callers picked at random: (paths, bodies, kinds)."""
    validator = RequestValidator(AUTH_TOKEN)
    rnd = random.Random(seed)
    size = len(line.callers)
    paths, loads, kinds = [], [], []
    now = email.utils.format_datetime(datetime.now(UTC), usegmt=True)
    for i in range(n):
        kind = MIX[i % len(MIX)]
        c = line.callers[rnd.randrange(size)]
        params = common(c)
        if kind == "wait":
            path = f"{line.voice}/wait?call={c.call_id}"
            params |= {"CallStatus": "in-progress", "QueueSid": "QU" + f"{c.call_id:032x}",
                       "QueuePosition": "1", "QueueTime": str(30 + i % 600), "AvgQueueTime": "0",
                       "CurrentQueueSize": "1", "MaxQueueSize": "100"}
        elif kind == "status":
            path = f"{line.voice}/status"
            c.seq += 1
            params |= {"CallStatus": "ringing" if c.seq == 1 else "in-progress", "SequenceNumber": str(c.seq),
                       "Timestamp": now, "CallbackSource": "call-progress-events"}
        else:
            path = f"{line.voice}/wait-key?call={c.call_id}"
            params |= {"CallStatus": "in-progress", "Digits": "9", "FinishedOnKey": "", "msg": "Gather End"}
        paths.append(path)
        loads.append(signed(validator, line.base + path, params))
        kinds.append(kind)
    return paths, loads, kinds


async def place_calls(line: Line, n: int) -> tuple[float, float]:
    """``n`` inbound calls, each answered with ``<Enqueue waitUrl=…call=ID>``; returns calls/s, and the
    seconds until the last caller's wait URL announced their place."""
    validator = RequestValidator(AUTH_TOKEN)
    sem = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, i: int) -> Caller:
        sid, number = "CA" + f"{0xbe00000 + i:032x}", f"+1415{5550000 + i:07d}"
        params = {**common(Caller(sid, number, 0)), "CallStatus": "ringing", "CallerName": f"Caller {i}"}
        body, headers = signed(validator, line.base + line.voice, params)
        async with sem:
            r = await client.post(line.voice, content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"incoming call {i}: HTTP {r.status_code} {r.text[:300]}")
        enqueue = ET.fromstring(r.text).find("Enqueue")
        if enqueue is None:
            raise RuntimeError(f"incoming call {i} was not enqueued: {r.text[:300]}")
        wait_url = enqueue.attrib["waitUrl"]
        assert wait_url.startswith(line.base + line.voice + "/wait?"), wait_url
        return Caller(sid, number, int(parse_qs(urlsplit(wait_url).query)["call"][0]))

    async with httpx.AsyncClient(base_url=line.base, timeout=60,
                                 limits=httpx.Limits(max_connections=16)) as client:
        start = time.perf_counter()
        line.callers = list(await asyncio.gather(*(one(client, i) for i in range(n))))
        elapsed = time.perf_counter() - start
        # routing takes the callers in (a task each, behind the inbox): until then their wait URL has no
        # place to announce. Wait for the last caller's, then check the answer: the place, and the key
        # offer that posts to the wait-key URL
        c = line.callers[-1]
        url = f"{line.voice}/wait?call={c.call_id}"
        body, headers = signed(validator, line.base + url, {**common(c), "CallStatus": "in-progress"})
        deadline = time.perf_counter() + 120
        while True:
            r = await client.post(url, content=body, headers=headers)
            if r.status_code == 200 and re.search(r"number \d+", r.text) or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.2)
        routed = time.perf_counter() - start
        gather = ET.fromstring(r.text).find("Gather")
        if r.status_code != 200 or gather is None or not re.search(r"number \d+", r.text):
            raise RuntimeError(f"the wait URL did not announce the last caller's place: HTTP {r.status_code} "
                               f"{r.text[:400]}")
        assert gather.attrib["action"] == f"{line.base}{line.voice}/wait-key?call={c.call_id}", gather.attrib
    return n / elapsed, routed


def summary(lat: dict[int, float], kinds: list[str]) -> dict[str, object]:
    values = list(lat.values())
    per_kind = {k: (percentile([v for i, v in lat.items() if kinds[i] == k], 50),
                    percentile([v for i, v in lat.items() if kinds[i] == k], 99)) for k in dict.fromkeys(MIX)}
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values), "kinds": per_kind}


async def measure(line: Line, port: int, n: int, seconds: float, profile: str | None,
                  server_pid: int) -> dict[str, object]:
    paths, loads, kinds = requests(line, n, seed=1)
    paths_b, loads_b, kinds_b = requests(line, int(RATE * seconds), seed=2)
    spy = None
    if profile:
        exe = shutil.which("py-spy", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        if exe is None:
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        spy = subprocess.Popen([exe, "record", "-o", profile, "--pid", str(server_pid),
                                "--rate", "200", "--nonblocking",
                                "--format", "raw" if profile.endswith(".txt") else "flamegraph"], stdout=subprocess.DEVNULL)
        await asyncio.sleep(1)
    lat: dict[int, float] = {}
    elapsed, statuses = await closed_loop("127.0.0.1", port, lambda i: paths[i], lambda i: loads[i], n,
                                          CONCURRENCY, latencies=lat)
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes the flame graph
        spy.wait()
    await asyncio.sleep(1)
    lat_b: dict[int, float] = {}
    statuses_b = await open_loop("127.0.0.1", port, lambda i: paths_b[i], lambda i: loads_b[i], RATE, seconds,
                                 latencies=lat_b)
    return {"requests": n, "seconds": elapsed, "per_s": n / elapsed, "statuses": statuses, "sat": summary(lat, kinds),
            "steady": summary(lat_b, kinds_b), "steady_statuses": statuses_b, "steady_n": len(loads_b)}


async def floor(n: int, seconds: float) -> dict[str, object]:
    """A bare Starlette endpoint (parse the form, answer a fixed TwiML) under the same load."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "uvicorn"), "bench.baseline_app:app", "--port", str(port),
                             "--log-level", "warning", "--no-access-log"], cwd=Path(__file__).parent.parent)
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/")
        line = Line(f"http://127.0.0.1:{port}", "/hooks/x/voice",
                    [Caller("CA" + f"{i:032x}", f"+1415{5550000 + i:07d}", i + 1) for i in range(1000)])
        paths, loads, kinds = requests(line, n, seed=1)
        lat: dict[int, float] = {}
        elapsed, statuses = await closed_loop("127.0.0.1", port, lambda i: paths[i], lambda i: loads[i], n,
                                              CONCURRENCY, latencies=lat)
        paths_b, loads_b, kinds_b = requests(line, int(RATE * seconds), seed=2)
        lat_b: dict[int, float] = {}
        await open_loop("127.0.0.1", port, lambda i: paths_b[i], lambda i: loads_b[i], RATE, seconds, latencies=lat_b)
        return {"per_s": n / elapsed, "statuses": statuses, "sat": summary(lat, kinds), "steady": summary(lat_b, kinds_b)}
    finally:
        proc.terminate()
        proc.wait()


def run(quick: bool = False, profile: str | None = None) -> dict[str, object]:
    callers = 200 if quick else 1000
    n = 2000 if quick else 10_000
    seconds = 5 if quick else 20
    stub = stub_provider(201, {"sid": "CA" + "f" * 32, "call_sid": "CA" + "e" * 32, "status": "queued"})  # Twilio's REST API
    try:
        with tempfile.TemporaryDirectory(prefix="tl-bench-voice-") as tmp:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {**os.environ, "THREADLINE_DATA_DIR": tmp, "THREADLINE_LOG_LEVEL": "warning",
                   "THREADLINE_PUBLIC_BASE_URL": base,
                   "THREADLINE_CHANNELS_ALLOW_PRIVATE": "true"}  # the REST stub is on loopback
            env.pop("THREADLINE_DATABASE_URL", None)
            env.pop("THREADLINE_REDIS_URL", None)
            exe = str(BIN / "threadline")
            subprocess.run([exe, "migrate"], env=env, check=True, capture_output=True)
            subprocess.run([exe, "demo"], env=env, check=True, capture_output=True, text=True)
            server = subprocess.Popen([exe, "serve", "--port", str(port), "--workers", "1"], env=env, stdout=subprocess.DEVNULL)
            try:
                wait_http(f"{base}/healthz")
                with httpx.Client(base_url=base) as c:
                    r = c.post("/api/v1/auth/login", json={"email": "admin@demo.threadline.dev",
                                                           "password": "threadline-demo"})
                    r.raise_for_status()
                    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
                    queue = next(q["id"] for q in c.get("/api/v1/queues").json() if q["name"] == "general")
                    r = c.post("/api/v1/channels", json={
                        "kind": "twilio_voice", "name": "Bench phone", "default_queue_id": queue, "config": {
                            "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "phone_number": NUMBER,
                            "api_base_url": f"http://127.0.0.1:{stub.server_address[1]}"}})
                    if r.status_code != 201:
                        raise RuntimeError(f"creating the voice channel: HTTP {r.status_code} {r.text[:500]}")
                    voice = urlsplit(r.json()["inbound_url"]).path
                assert voice.endswith("/voice"), voice
                line = Line(base, voice)
                setup_rate, routed = asyncio.run(place_calls(line, callers))
                result = asyncio.run(measure(line, port, n, seconds, profile, server.pid))
                result["callers"], result["setup_calls_per_s"], result["routed_s"] = callers, setup_rate, routed
            finally:
                server.terminate()
                server.wait()
    finally:
        stub.shutdown()
    result["floor"] = asyncio.run(floor(n, seconds))
    result["rate"], result["steady_seconds"] = RATE, seconds
    return result


def _kinds(s: dict[str, object]) -> str:
    names = {"wait": "wait URL", "status": "status", "key": "wait-key"}
    return ", ".join(f"{names[k]} {p50:.1f}/{p99:.1f}" for k, (p50, p99) in s["kinds"].items())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="SVG", help="py-spy profile of the server during the saturation phase (.svg: flame graph; "
                        ".txt: collapsed stacks)")
    args = parser.parse_args()
    header("voice call-control webhooks")
    r = run(args.quick, args.profile)
    sat, steady, fl = r["sat"], r["steady"], r["floor"]
    assert isinstance(sat, dict) and isinstance(steady, dict) and isinstance(fl, dict)
    print(f"Voice call-control webhooks (Twilio, signed; SQLite, 1 server process, embedded bus; {os.cpu_count()} cores)")
    print(f"  setup: {r['callers']} inbound calls enqueued at {r['setup_calls_per_s']:.0f} calls/s, no agent online; "
          f"the last caller heard their place {r['routed_s']:.1f} s after the first call")
    print("  mix per 10 requests: 7 wait URLs (place + estimated wait), 2 status callbacks, 1 key press (9)")
    print(f"  throughput: {r['requests']} webhooks over {CONCURRENCY} connections in {r['seconds']:.2f} s "
          f"= {r['per_s']:.0f} webhooks/s (HTTP {r['statuses']})")
    print(f"  latency at saturation: p50 {sat['p50']:.1f} ms, p99 {sat['p99']:.1f} ms "
          f"(p50/p99 by kind: {_kinds(sat)})")
    print(f"  latency at {r['rate']:.0f}/s for {r['steady_seconds']} s: p50 {steady['p50']:.1f} ms, "
          f"p99 {steady['p99']:.1f} ms, max {steady['max']:.1f} ms (HTTP {r['steady_statuses']}; "
          f"by kind: {_kinds(steady)})")
    ratio = r["per_s"] / fl["per_s"]  # type: ignore[operator]
    print(f"  floor, bare Starlette form → fixed TwiML, same load: {fl['per_s']:.0f} req/s, saturation p50 "
          f"{fl['sat']['p50']:.1f} ms p99 {fl['sat']['p99']:.1f} ms, at {r['rate']:.0f}/s p99 "  # type: ignore[index]
          f"{fl['steady']['p99']:.1f} ms; ratio {ratio:.3f}")  # type: ignore[index]
    print(f"  target >= 500 webhooks/s: {verdict(r['per_s'] >= 500)}")  # type: ignore[operator]
    print(f"  target p99 < 50 ms at {r['rate']:.0f}/s: {verdict(steady['p99'] < 50)}")


if __name__ == "__main__":
    main()

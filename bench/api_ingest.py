"""Generic API channel ingest: signed inbound messages from many contacts, each stored, turned into
events and pushed to a connected agent's websocket. Reports messages/s and request→socket latency,
and the ratio against a bare Starlette endpoint that only parses the JSON.

Run: ``make bench`` (or ``python -m bench.api_ingest [--quick]``). Server and load generator are two
processes on this machine; SQLite, one server process and the embedded bus (``--workers N``: N processes,
the tail bus).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from bench.context import header, verdict
from bench.loadgen import closed_loop, open_loop, percentile
from threadline.demo import API_SECRET
from threadline.security import sign

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def bodies(n: int, contacts: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    ts = str(int(time.time()))
    for i in range(n):
        body = json.dumps({"id": f"{tag}-{i}", "contact": {"id": f"cust-{i % contacts}", "name": f"C{i % contacts}"},
                           "text": f"hello, I need help with my order #{i}"}).encode()
        out.append((body, {"Content-Type": "application/json", "X-Threadline-Timestamp": ts,
                           "X-Threadline-Signature": sign(API_SECRET, body, ts)}))
    return out


class Receiver:
    """The agent's socket: records when each message.created arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.event = asyncio.Event()
        self.want = 0

    async def run(self, url: str, ready: asyncio.Event) -> None:
        async with websockets.connect(url, max_size=None) as ws:
            ready.set()
            async for raw in ws:
                now = time.perf_counter()
                msg = json.loads(raw)
                if msg.get("name") == "message.created":
                    pid = msg["data"]["message"]["provider_id"]
                    if pid:
                        self.arrived[pid] = now
                        if len(self.arrived) >= self.want:
                            self.event.set()


async def measure(host: str, port: int, path: str, token: str, n: int, rate: float, seconds: float,
                  contacts: int) -> dict[str, float]:
    load_a, load_b = bodies(n, contacts, "a"), bodies(int(rate * seconds), contacts, "b")
    return await two_phases(host, port, path, token, load_a, [f"a-{i}" for i in range(n)],
                            load_b, [f"b-{i}" for i in range(len(load_b))], rate, seconds)


async def two_phases(host: str, port: int, path: str, token: str, load_a: list[tuple[bytes, dict[str, str]]],
                     ids_a: list[str], load_b: list[tuple[bytes, dict[str, str]]], ids_b: list[str], rate: float,
                     seconds: float) -> dict[str, float]:
    """Phase A: ``load_a`` as fast as 64 connections go; phase B: ``load_b`` at ``rate`` per second. Latency
    is from sending a request to its ``message.created`` (matched by provider id) on an agent's socket.
    Every ingest bench (API, messaging, the reference runs) measures with this."""
    rec = Receiver()
    ready = asyncio.Event()
    task = asyncio.create_task(rec.run(f"ws://{host}:{port}/api/v1/stream?token={token}", ready))
    await ready.wait()
    n = len(load_a)
    sent: dict[str, float] = {}

    def make(i: int) -> tuple[bytes, dict[str, str]]:
        sent[ids_a[i]] = time.perf_counter()
        return load_a[i]

    rec.want = n
    start = time.perf_counter()
    _, statuses = await closed_loop(host, port, path, make, n, concurrency=64)
    await asyncio.wait_for(rec.event.wait(), 120)
    elapsed = max(rec.arrived.values()) - start
    lat_a = [(rec.arrived[k] - v) * 1000 for k, v in sent.items() if k in rec.arrived]

    sent_b: dict[str, float] = {}

    def make_b(i: int) -> tuple[bytes, dict[str, str]]:
        sent_b[ids_b[i]] = time.perf_counter()
        return load_b[i]

    rec.event.clear()
    rec.want = n + len(load_b)
    statuses_b = await open_loop(host, port, path, make_b, rate, seconds)
    await asyncio.wait_for(rec.event.wait(), 60)
    lat_b = [(rec.arrived[k] - v) * 1000 for k, v in sent_b.items() if k in rec.arrived]
    task.cancel()
    return {"messages": n, "seconds": elapsed, "messages_per_s": n / elapsed, "statuses": statuses,
            "sat_p50_ms": percentile(lat_a, 50), "sat_p99_ms": percentile(lat_a, 99),
            "rate": rate, "steady_p50_ms": percentile(lat_b, 50), "steady_p99_ms": percentile(lat_b, 99),
            "steady_max_ms": max(lat_b), "steady_statuses": statuses_b, "received": len(rec.arrived)}


async def baseline(n: int) -> float:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "uvicorn"), "bench.baseline_app:app", "--port", str(port),
                             "--log-level", "warning", "--no-access-log"], cwd=Path(__file__).parent.parent)
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/")
        load = bodies(n, 500, "base")
        elapsed, _ = await closed_loop("127.0.0.1", port, "/hooks/x", lambda i: load[i], n, concurrency=32)
        return n / elapsed
    finally:
        proc.terminate()
        proc.wait()


def run(quick: bool = False, workers: int = 1) -> dict[str, object]:
    n = 2000 if quick else 10_000
    seconds = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
        env = {**os.environ, "THREADLINE_DATA_DIR": tmp, "THREADLINE_LOG_LEVEL": "warning"}
        env.pop("THREADLINE_DATABASE_URL", None)
        env.pop("THREADLINE_REDIS_URL", None)
        exe = str(BIN / "threadline")
        subprocess.run([exe, "migrate"], env=env, check=True, capture_output=True)
        out = subprocess.run([exe, "demo"], env=env, check=True, capture_output=True, text=True).stdout
        url = next(line for line in out.splitlines() if "generic API channel inbound URL" in line)
        path = "/hooks/" + url.rsplit("/hooks/", 1)[1].strip()
        tok = subprocess.run([exe, "token", "create", "--user", "supervisor@demo.threadline.dev", "--name", "bench"],
                             env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        port = free_port()
        server = subprocess.Popen([exe, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                                  stdout=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            result = asyncio.run(measure("127.0.0.1", port, path, tok, n, 200.0, seconds, contacts=500))
        finally:
            server.terminate()
            server.wait()
    result["baseline_req_per_s"] = asyncio.run(baseline(n))
    result["ratio_vs_bare_starlette"] = result["messages_per_s"] / result["baseline_req_per_s"]  # type: ignore[operator]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="server processes (above 1: the tail bus)")
    args = parser.parse_args()
    header("generic API channel ingest")
    r = run(args.quick, args.workers)
    bus = "embedded bus" if args.workers == 1 else "tail bus"
    print(f"Generic API channel ingest (SQLite, {args.workers} server process(es), {bus}; 2-core machine)")
    print(f"  throughput: {r['messages']} signed messages from 500 contacts in {r['seconds']:.2f} s "
          f"= {r['messages_per_s']:.0f} messages/s stored and on the agent socket (HTTP {r['statuses']})")
    print(f"  latency at saturation: p50 {r['sat_p50_ms']:.1f} ms, p99 {r['sat_p99_ms']:.1f} ms")
    print(f"  latency at {r['rate']:.0f}/s: p50 {r['steady_p50_ms']:.1f} ms, p99 {r['steady_p99_ms']:.1f} ms, "
          f"max {r['steady_max_ms']:.1f} ms")
    print(f"  bare Starlette JSON endpoint: {r['baseline_req_per_s']:.0f} req/s; "
          f"ratio {r['ratio_vs_bare_starlette']:.2f}")
    ok = r["messages_per_s"] >= 1000 and r["steady_p99_ms"] < 50
    print(f"  target (>= 1,000 messages/s; p99 < 50 ms at 200/s): {verdict(ok)}")


if __name__ == "__main__":
    main()

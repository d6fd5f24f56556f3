"""Twilio SMS ingest: inbound SMS webhooks (form-encoded, X-Twilio-Signature computed by the twilio library's
RequestValidator over the public URL) from many phone numbers, each verified, stored, turned into contact,
conversation, message and events and pushed to a connected supervisor's websocket. Reports messages/s
through the full path and the request→socket latency at saturation and at a steady 200/s.

Run: ``make bench`` (or ``python -m bench.messaging_ingest [--quick]``). Server and load generator are two
processes on this machine; SQLite, one server process, the embedded bus (like bench/api_ingest.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from bench.api_ingest import BIN, Receiver, free_port, wait_http
from bench.api_ingest import bodies as api_bodies
from bench.loadgen import closed_loop, open_loop, percentile

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-twilio-auth-token-0123456789"


def bodies(n: int, contacts: int, tag: str, url: str) -> list[tuple[bytes, dict[str, str]]]:
    validator = RequestValidator(AUTH_TOKEN)
    out = []
    for i in range(n):
        sid = f"SM{tag}{i:031d}"
        params = {"ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received",
                  "Body": f"Hi, I need help with my order #{i}", "To": "+15005550006", "NumSegments": "1",
                  "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": f"+1415555{i % contacts:04d}",
                  "FromCountry": "US", "ApiVersion": "2010-04-01"}
        out.append((urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                                 "X-Twilio-Signature": validator.compute_signature(url, params)}))
    return out


async def measure(host: str, port: int, path: str, url: str, token: str, n: int, rate: float, seconds: float,
                  contacts: int) -> dict[str, object]:
    rec = Receiver()
    ready = asyncio.Event()
    task = asyncio.create_task(rec.run(f"ws://{host}:{port}/api/v1/stream?token={token}", ready))
    await ready.wait()

    load = bodies(n, contacts, "a", url)
    sent: dict[str, float] = {}

    def make(i: int) -> tuple[bytes, dict[str, str]]:
        sent[f"SMa{i:031d}"] = time.perf_counter()
        return load[i]

    rec.want = n
    start = time.perf_counter()
    _, statuses = await closed_loop(host, port, path, make, n, concurrency=64)
    await asyncio.wait_for(rec.event.wait(), 120)
    elapsed = max(rec.arrived.values()) - start
    lat_a = [(rec.arrived[k] - v) * 1000 for k, v in sent.items() if k in rec.arrived]

    m = int(rate * seconds)
    load_b = bodies(m, contacts, "b", url)
    sent_b: dict[str, float] = {}

    def make_b(i: int) -> tuple[bytes, dict[str, str]]:
        sent_b[f"SMb{i:031d}"] = time.perf_counter()
        return load_b[i]

    rec.event.clear()
    rec.want = n + m
    statuses_b = await open_loop(host, port, path, make_b, rate, seconds)
    await asyncio.wait_for(rec.event.wait(), 60)
    lat_b = [(rec.arrived[k] - v) * 1000 for k, v in sent_b.items() if k in rec.arrived]
    task.cancel()
    return {"messages": n, "seconds": elapsed, "messages_per_s": n / elapsed, "statuses": statuses,
            "sat_p50_ms": percentile(lat_a, 50), "sat_p99_ms": percentile(lat_a, 99),
            "rate": rate, "steady_p50_ms": percentile(lat_b, 50), "steady_p99_ms": percentile(lat_b, 99),
            "steady_max_ms": max(lat_b), "steady_statuses": statuses_b, "received": len(rec.arrived)}


async def reference_api(port: int, path: str, token: str, n: int, rate: float, seconds: float) -> dict[str, float]:
    """The generic API channel on the same server, same phases: what the SMS figures compare with."""
    rec = Receiver()
    ready = asyncio.Event()
    task = asyncio.create_task(rec.run(f"ws://127.0.0.1:{port}/api/v1/stream?token={token}", ready))
    await ready.wait()
    load = api_bodies(n, 500, "ref")
    rec.want = n
    start = time.perf_counter()
    await closed_loop("127.0.0.1", port, path, lambda i: load[i], n, concurrency=64)
    await asyncio.wait_for(rec.event.wait(), 120)
    rate_sat = n / (max(rec.arrived.values()) - start)
    m = int(rate * seconds)
    load_b = api_bodies(m, 500, "refb")
    sent_b: dict[str, float] = {}

    def make_b(i: int) -> tuple[bytes, dict[str, str]]:
        sent_b[f"refb-{i}"] = time.perf_counter()
        return load_b[i]

    rec.event.clear()
    rec.want = n + m
    await open_loop("127.0.0.1", port, path, make_b, rate, seconds)
    await asyncio.wait_for(rec.event.wait(), 60)
    lat_b = [(rec.arrived[k] - v) * 1000 for k, v in sent_b.items() if k in rec.arrived]
    task.cancel()
    return {"messages_per_s": rate_sat, "steady_p50_ms": percentile(lat_b, 50), "steady_p99_ms": percentile(lat_b, 99)}


def run(quick: bool = False) -> dict[str, object]:
    n = 2000 if quick else 10_000
    seconds = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="tl-bench-sms-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "THREADLINE_DATA_DIR": tmp, "THREADLINE_LOG_LEVEL": "warning",
               "THREADLINE_PUBLIC_BASE_URL": base}
        env.pop("THREADLINE_DATABASE_URL", None)
        env.pop("THREADLINE_REDIS_URL", None)
        exe = str(BIN / "threadline")
        subprocess.run([exe, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([exe, "demo"], env=env, check=True, capture_output=True, text=True)
        tok = subprocess.run([exe, "token", "create", "--user", "supervisor@demo.threadline.dev", "--name", "bench"],
                             env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        server = subprocess.Popen([exe, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
        try:
            wait_http(f"{base}/healthz")
            with httpx.Client(base_url=base) as c:
                r = c.post("/api/v1/auth/login", json={"email": "admin@demo.threadline.dev",
                                                       "password": "threadline-demo"})
                r.raise_for_status()
                c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
                r = c.post("/api/v1/channels", json={"kind": "twilio", "name": "Bench SMS", "config": {
                    "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15005550006"}})
                r.raise_for_status()
                url = r.json()["inbound_url"]
                api_url = next(ch["inbound_url"] for ch in c.get("/api/v1/channels").json() if ch["kind"] == "api")
            path = "/hooks/" + url.rsplit("/hooks/", 1)[1]
            result = asyncio.run(measure("127.0.0.1", port, path, url, tok, n, 200.0, seconds, contacts=500))
            # the generic API channel on the same server right after: a reference under the same machine load
            api_path = "/hooks/" + api_url.rsplit("/hooks/", 1)[1]
            result["api"] = asyncio.run(reference_api(port, api_path, tok, n, 200.0, seconds))
        finally:
            server.terminate()
            server.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    r = run(args.quick)
    print("Twilio SMS ingest (SQLite, 1 server process, embedded bus; 2-core machine)")
    print(f"  throughput: {r['messages']} signed SMS webhooks from 500 numbers in {r['seconds']:.2f} s "
          f"= {r['messages_per_s']:.0f} messages/s stored and on the agent socket (HTTP {r['statuses']})")
    print(f"  latency at saturation: p50 {r['sat_p50_ms']:.1f} ms, p99 {r['sat_p99_ms']:.1f} ms")
    print(f"  latency at {r['rate']:.0f}/s: p50 {r['steady_p50_ms']:.1f} ms, p99 {r['steady_p99_ms']:.1f} ms, "
          f"max {r['steady_max_ms']:.1f} ms (HTTP {r['steady_statuses']})")
    api = r["api"]
    print(f"  reference, generic API channel on the same server just after: {api['messages_per_s']:.0f} "
          f"messages/s; at {r['rate']:.0f}/s p50 {api['steady_p50_ms']:.1f} ms, p99 {api['steady_p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()

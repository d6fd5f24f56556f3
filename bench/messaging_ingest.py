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
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from bench.api_ingest import BIN, Receiver, free_port, two_phases, wait_http
from bench.api_ingest import bodies as api_bodies
from bench.context import header
from bench.loadgen import closed_loop

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
    load_a, load_b = bodies(n, contacts, "a", url), bodies(int(rate * seconds), contacts, "b", url)
    return await two_phases(host, port, path, token, load_a, [f"SMa{i:031d}" for i in range(n)],
                            load_b, [f"SMb{i:031d}" for i in range(len(load_b))], rate, seconds)


async def reference_api(port: int, path: str, token: str, n: int, rate: float, seconds: float) -> dict[str, float]:
    """The generic API channel on the same server, same phases: what the SMS figures compare with."""
    load_a, load_b = api_bodies(n, 500, "ref"), api_bodies(int(rate * seconds), 500, "refb")
    return await two_phases("127.0.0.1", port, path, token, load_a, [f"ref-{i}" for i in range(n)],
                            load_b, [f"refb-{i}" for i in range(len(load_b))], rate, seconds)


META_SECRET = "bench-meta-app-secret"
TG_SECRET = "bench-telegram-secret-token"
OTHER_CHANNELS: dict[str, dict[str, object]] = {
    "whatsapp": {"phone_number_id": "106540352242922", "access_token": "EAAJB" + "x" * 40, "app_secret": META_SECRET,
                 "verify_token": "bench-verify-token"},
    "telegram": {"bot_token": "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "secret_token": TG_SECRET},
    "messenger": {"page_id": "108886302101133", "page_access_token": "EAAG" + "p" * 40, "app_secret": META_SECRET,
                  "verify_token": "bench-verify-token"},
}


def other_bodies(kind: str, n: int, contacts: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """(provider id, body, headers) as WhatsApp Cloud, Telegram and Messenger send them."""
    out = []
    for i in range(n):
        who = i % contacts
        if kind == "whatsapp":
            pid = f"wamid.bench{i:08d}"
            doc: dict[str, object] = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
                "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": f"C{who}"}, "wa_id": f"1650555{who:04d}"}],
                    "messages": [{"from": f"1650555{who:04d}", "id": pid, "timestamp": "1764000000",
                                  "type": "text", "text": {"body": f"Hi, order #{i}"}}]}}]}]}
        elif kind == "telegram":
            pid = f"{100000 + who}:{i}"
            chat = {"id": 100000 + who, "type": "private", "first_name": f"C{who}"}
            doc = {"update_id": 500000 + i, "message": {"message_id": i, "date": 1764000000, "chat": chat,
                                                        "from": {**chat, "is_bot": False}, "text": f"order #{i}"}}
        else:
            pid = f"m_bench{i:08d}"
            doc = {"object": "page", "entry": [{"id": "108886302101133", "time": 1764000000000, "messaging": [{
                "sender": {"id": f"65238451{who:08d}"}, "recipient": {"id": "108886302101133"},
                "timestamp": 1764000000000, "message": {"mid": pid, "text": f"order #{i}"}}]}]}
        body = json.dumps(doc, separators=(",", ":")).encode()
        if kind == "telegram":
            headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
        else:
            digest = hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}
        out.append((pid, body, headers))
    return out


async def saturate(port: int, path: str, token: str, load: list[tuple[str, bytes, dict[str, str]]]) -> float:
    """Messages/s through the full path (request → agent socket), 64 connections."""
    rec = Receiver()
    ready = asyncio.Event()
    task = asyncio.create_task(rec.run(f"ws://127.0.0.1:{port}/api/v1/stream?token={token}", ready))
    await ready.wait()
    wanted = {pid for pid, _, _ in load}
    rec.want = len(load)
    start = time.perf_counter()
    await closed_loop("127.0.0.1", port, path, lambda i: load[i][1:], len(load), concurrency=64)
    await asyncio.wait_for(rec.event.wait(), 120)
    task.cancel()
    return len(load) / (max(t for pid, t in rec.arrived.items() if pid in wanted) - start)


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
        server = subprocess.Popen([exe, "serve", "--port", str(port), "--workers", "1"], env=env, stdout=subprocess.DEVNULL)
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
                others = {}
                for kind, config in OTHER_CHANNELS.items():
                    r = c.post("/api/v1/channels", json={"kind": kind, "name": f"Bench {kind}", "config": config})
                    r.raise_for_status()
                    others[kind] = "/hooks/" + r.json()["inbound_url"].rsplit("/hooks/", 1)[1]
            path = "/hooks/" + url.rsplit("/hooks/", 1)[1]
            result = asyncio.run(measure("127.0.0.1", port, path, url, tok, n, 200.0, seconds, contacts=500))
            # the generic API channel on the same server right after: a reference under the same machine load
            api_path = "/hooks/" + api_url.rsplit("/hooks/", 1)[1]
            result["api"] = asyncio.run(reference_api(port, api_path, tok, n, 200.0, seconds))
            m = n // 2
            result["others"] = {kind: asyncio.run(saturate(port, p, tok, other_bodies(kind, m, 500)))
                                for kind, p in others.items()}
            result["others_n"] = m
        finally:
            server.terminate()
            server.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    header("Twilio SMS ingest")
    r = run(args.quick)
    print("Twilio SMS ingest (SQLite, 1 server process, embedded bus; 2-core machine)")
    print(f"  throughput: {r['messages']} signed SMS webhooks from 500 numbers in {r['seconds']:.2f} s "
          f"= {r['messages_per_s']:.0f} messages/s stored and on the agent socket (HTTP {r['statuses']})")
    print(f"  latency at saturation: p50 {r['sat_p50_ms']:.1f} ms, p99 {r['sat_p99_ms']:.1f} ms")
    print(f"  latency at {r['rate']:.0f}/s: p50 {r['steady_p50_ms']:.1f} ms, p99 {r['steady_p99_ms']:.1f} ms, "
          f"max {r['steady_max_ms']:.1f} ms (HTTP {r['steady_statuses']})")
    others = ", ".join(f"{k} {v:.0f}/s" for k, v in r["others"].items())  # type: ignore[union-attr]
    print(f"  other channels, {r['others_n']} signed webhooks each, same server, saturation: {others}")
    api = r["api"]
    print(f"  reference, generic API channel on the same server just after: {api['messages_per_s']:.0f} "
          f"messages/s; at {r['rate']:.0f}/s p50 {api['steady_p50_ms']:.1f} ms, p99 {api['steady_p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()

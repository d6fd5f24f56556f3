"""The paths an agent or a provider touches, measured the way the performance issue compares Threadline with a
mature Python help desk (django-helpdesk 2.6.1 under gunicorn, 2 sync workers, SQLite): ``wrk -t1 -c8``,
20 s after a 3 s warm-up, one Threadline server process (per core), SQLite, the embedded bus.

Rows (each against the peer's figure from the issue, and the ratio to a bare Starlette JSON endpoint
measured with the same wrk settings in the same run, so a reader sees ratios, not only numbers that move
between machines):

* inbound: a new message from a new contact, each request a different contact (signed generic API hook);
* reply: an agent's reply (``POST /api/v1/conversations/{id}/messages``, bearer token), delivered by the
  sender to a loopback provider (the API channel's webhook URL points at a stub answering 200);
* inbox: the agent's inbox page (HTML, logged-in agent with a session cookie, ~100 open conversations);
* list: 25 conversations as JSON (``GET /api/v1/conversations?limit=25``);
* email: 1,000 new e-mails over 8 SMTP connections, timed until the last one is on the agent's socket.

Then each path at half its target rate (an open loop, latency from when each request was due) for p99.

Run: ``make bench`` (or ``python -m bench.peer_paths [--quick] [--only inbound,reply,...] [--seconds N]``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.api_ingest import BIN, free_port, wait_http
from bench.context import header, verdict
from bench.loadgen import open_loop, percentile
from bench.stub import stub_provider
from threadline.demo import API_SECRET, DEMO_PASSWORD
from threadline.security import sign

CONNECTIONS = 8
AGENT = "alice@demo.threadline.dev"
OPEN_CONVERSATIONS = 100
ROOT = Path(__file__).parent.parent


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    target: float  # per second, one process
    peer: float  # django-helpdesk, 2 workers, from the issue


ROWS = {
    "inbound": Row("inbound", "new inbound message from a new contact (signed API hook)", 1000, 90),
    "reply": Row("reply", "agent reply, delivered to a loopback provider", 500, 107),
    "inbox": Row("inbox", "agent's inbox page (HTML, ~100 open conversations)", 600, 120),
    "list": Row("list", "25 conversations as JSON", 1000, 51),
    "email": Row("email", "1,000 new e-mails over 8 SMTP connections", 500, 83),
}


def lua_string(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid Lua string for ASCII text


def inbound_script(path: str, n: int, tag: str, folder: Path) -> str:
    """A wrk script cycling through ``n`` signed requests, each from a new contact. The bodies and their
    signatures are in a data file the script reads at start (a Lua chunk holds too few constants for them)."""
    ts = str(int(time.time()))
    data = folder / f"{tag}.tsv"
    with data.open("w") as out:
        for i in range(n):
            body = json.dumps({"id": f"{tag}-{i}", "contact": {"id": f"{tag}-c{i}", "name": f"Customer {i}"},
                               "text": f"hello, I need help with my order #{i}"})
            out.write(f"{sign(API_SECRET, body.encode(), ts)}\t{body}\n")
    return (f"local reqs = {{}}\n"
            f"for line in io.lines({lua_string(str(data))}) do\n"
            "  local sig, body = line:match('^([^\\t]+)\\t(.*)$')\n"
            f"  reqs[#reqs + 1] = wrk.format('POST', {lua_string(path)}, {{['Content-Type']='application/json', "
            f"['X-Threadline-Timestamp']='{ts}', ['X-Threadline-Signature']=sig}}, body)\n"
            "end\n"
            "local i = 0\n"
            "request = function() i = i + 1; if i > #reqs then i = 1 end; return reqs[i] end\n")


def reply_script(token: str, conversation_ids: list[int]) -> str:
    ids = ", ".join(str(i) for i in conversation_ids)
    return (f"local ids = {{{ids}}}\nlocal i = 0\n"
            f"local headers = {{['Content-Type']='application/json', ['Authorization']='Bearer {token}'}}\n"
            "request = function()\n  i = i + 1\n  local id = ids[(i % #ids) + 1]\n"
            "  local body = '{\"text\":\"Thanks, we are looking into it (' .. i .. ').\"}'\n"
            "  return wrk.format('POST', '/api/v1/conversations/' .. id .. '/messages', headers, body)\nend\n")


def get_script(path: str, headers: dict[str, str]) -> str:
    hs = ", ".join(f"[{lua_string(k)}]={lua_string(v)}" for k, v in headers.items())
    return f"local req = wrk.format('GET', {lua_string(path)}, {{{hs}}})\nrequest = function() return req end\n"


def post_json_script(path: str) -> str:
    body = json.dumps({"id": 42, "channel": "webchat", "text": "hello, I need help with my order #1234"})
    return (f"local req = wrk.format('POST', {lua_string(path)}, {{['Content-Type']='application/json'}}, "
            f"{lua_string(body)})\nrequest = function() return req end\n")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(port: int, script: str, seconds: int, warmup: int, tmp: Path) -> dict[str, float]:
    """``wrk -t1 -c8`` for ``seconds`` after ``warmup`` seconds; requests/s, p50/p99 (ms), non-2xx/3xx."""
    file = tmp / f"s{time.monotonic_ns()}.lua"
    file.write_text(script)
    url = f"http://127.0.0.1:{port}"
    if warmup:
        subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{warmup}s", "-s", str(file), url],
                       check=True, capture_output=True)
    run = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(file), url],
                         check=True, capture_output=True, text=True)
    out = run.stdout
    if run.stderr.strip() or "error" in out.lower().split("requests/sec")[0].replace("socket errors", ""):
        raise RuntimeError(f"wrk or its script failed: {run.stderr.strip() or out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "bad": int(bad.group(1)) if bad else 0}


def floor(seconds: int, warmup: int, tmp: Path) -> dict[str, float]:
    """The bare Starlette endpoint (parse JSON, answer JSON) with the same wrk settings, one process."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "uvicorn"), "bench.baseline_app:app", "--port", str(port),
                             "--log-level", "warning", "--no-access-log"], cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        return wrk(port, post_json_script("/hooks/x"), seconds, warmup, tmp)
    finally:
        proc.terminate()
        proc.wait()


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Server:
    """``threadline serve --workers 1`` on a fresh SQLite data folder with the demo, ~100 open conversations in
    the agent's queue, the API channel delivering to a loopback provider and an SMTP receiver."""

    def __init__(self, tmp: Path, workers: int = 1) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.port, self.smtp_port = free_port(), free_port()
        self.env = {**os.environ, "THREADLINE_DATA_DIR": str(tmp / "data"), "THREADLINE_LOG_LEVEL": "warning",
                    "THREADLINE_CHANNELS_ALLOW_PRIVATE": "true", "THREADLINE_SMTP_PORT": str(self.smtp_port),
                    "THREADLINE_SMTP_HOST": "127.0.0.1", "THREADLINE_IMAP_POLLING": "false"}
        for var in ("THREADLINE_DATABASE_URL", "THREADLINE_REDIS_URL"):
            self.env.pop(var, None)
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.provider = stub_provider(200, {"id": "ok"})  # the loopback provider replies are delivered to

    def cli(self, *args: str) -> str:
        return subprocess.run([str(BIN / "threadline"), *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def start(self) -> None:
        self.cli("migrate")
        out = self.cli("demo")
        url = next(line for line in out.splitlines() if "generic API channel inbound URL" in line)
        self.hook = "/hooks/" + url.rsplit("/hooks/", 1)[1].strip()
        self.admin = self.cli("token", "create", "--user", "admin@demo.threadline.dev", "--name", "bench")\
            .strip().splitlines()[-1]
        self.agent = self.cli("token", "create", "--user", AGENT, "--name", "bench").strip().splitlines()[-1]
        self.proc = subprocess.Popen([str(BIN / "threadline"), "serve", "--port", str(self.port), "--workers",
                                      str(self.workers)], env=self.env, stdout=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.base}/healthz")
        admin = {"Authorization": f"Bearer {self.admin}"}
        channels = httpx.get(f"{self.base}/api/v1/channels", headers=admin).json()
        api = next(c for c in channels if c["kind"] == "api")
        stub = f"http://127.0.0.1:{self.provider.server_address[1]}/messages"
        httpx.patch(f"{self.base}/api/v1/channels/{api['id']}", headers=admin,
                    json={"config": {"webhook_url": stub}}).raise_for_status()
        r = httpx.post(f"{self.base}/api/v1/channels", headers=admin,
                       json={"kind": "email", "name": "Bench mail", "config": {"address": "support@bench.threadline.dev"}})
        r.raise_for_status()
        self.seed_open_conversations()
        self.cookie = self.login()

    def seed_open_conversations(self) -> None:
        ts = str(int(time.time()))
        with httpx.Client(base_url=self.base) as client:
            for i in range(OPEN_CONVERSATIONS):
                body = json.dumps({"id": f"seed-{i}", "contact": {"id": f"seed-{i}", "name": f"Seeded {i}"},
                                   "text": f"Where is my order #{1000 + i}?"}).encode()
                client.post(self.hook, content=body, headers={
                    "Content-Type": "application/json", "X-Threadline-Timestamp": ts,
                    "X-Threadline-Signature": sign(API_SECRET, body, ts)}).raise_for_status()
            deadline = time.time() + 30
            while time.time() < deadline:
                page = client.get("/api/v1/conversations", params={"limit": 100, "status": "open"},
                                  headers={"Authorization": f"Bearer {self.agent}"}).json()
                self.conversations = [c["id"] for c in page["items"]]
                if len(self.conversations) >= OPEN_CONVERSATIONS:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"the agent sees {len(self.conversations)} open conversations, not "
                                   f"{OPEN_CONVERSATIONS}")
            me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {self.agent}"}).json()
            for cid in self.conversations:  # the agent's inbox ("mine") holds them
                client.patch(f"/api/v1/conversations/{cid}", json={"assignee_id": me["id"]},
                             headers={"Authorization": f"Bearer {self.admin}"}).raise_for_status()

    def login(self) -> str:
        r = httpx.post(f"{self.base}/login", data={"email": AGENT, "password": DEMO_PASSWORD},
                       headers={"Origin": self.base}, follow_redirects=False)
        if r.status_code != 303:
            raise RuntimeError(f"desk login answered {r.status_code}")
        cookie = "; ".join(f"{k}={v}" for k, v in r.cookies.items())
        page = httpx.get(f"{self.base}/", headers={"Cookie": cookie})
        if page.status_code != 200 or "Seeded" not in page.text:
            raise RuntimeError(f"the inbox page answered {page.status_code} without the seeded conversations")
        return cookie

    def settle(self, quiet: float = 2.0, limit: float = 90.0) -> float:
        """Wait until the server has finished the work a row left behind (sends, events, timers): no commit
        to its database for ``quiet`` seconds. Each row is then measured on its own, as the peer's are."""
        import sqlite3

        start = time.monotonic()
        db = sqlite3.connect(f"file:{self.tmp / 'data' / 'threadline.db'}?mode=ro", uri=True, isolation_level=None)
        try:
            last, since = None, time.monotonic()
            while time.monotonic() - start < limit:
                version = db.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last, since = version, time.monotonic()
                elif time.monotonic() - since >= quiet:
                    break
                time.sleep(0.1)
        finally:
            db.close()
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
        self.provider.shutdown()

    def rss(self) -> float:
        return rss_mb(self.proc.pid) if self.proc else float("nan")


async def paced(port: int, method: str, path: str, make, rate: float, seconds: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    lat: dict[int, float] = {}
    statuses = await open_loop("127.0.0.1", port, path, make, rate, seconds, concurrency=CONNECTIONS * 4,
                               latencies=lat, method=method)
    values = list(lat.values())
    return {"rate": rate, "p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values),
            "bad": sum(v for k, v in statuses.items() if k >= 400)}


def half_rate(server: Server, name: str, seconds: float) -> dict[str, float]:
    """The path at half its target rate, open loop (latency from when each request was due)."""
    rate = ROWS[name].target / 2
    n = int(rate * seconds) + 1
    if name == "inbound":
        ts = str(int(time.time()))
        load = []
        for i in range(n):
            body = json.dumps({"id": f"half-{i}", "contact": {"id": f"half-c{i}"}, "text": f"order #{i}?"}).encode()
            load.append((body, {"Content-Type": "application/json", "X-Threadline-Timestamp": ts,
                                "X-Threadline-Signature": sign(API_SECRET, body, ts)}))
        return asyncio.run(paced(server.port, "POST", server.hook, lambda i: load[i], rate, seconds))
    if name == "reply":
        convs = server.conversations
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {server.agent}"}

        def path(i: int) -> str:
            return f"/api/v1/conversations/{convs[i % len(convs)]}/messages"

        return asyncio.run(paced(server.port, "POST", path,  # type: ignore[arg-type]
                                 lambda i: (json.dumps({"text": f"On it ({i})."}).encode(), auth), rate, seconds))
    if name == "inbox":
        return asyncio.run(paced(server.port, "GET", "/", lambda i: (b"", {"Cookie": server.cookie}), rate, seconds))
    if name == "list":
        return asyncio.run(paced(server.port, "GET", "/api/v1/conversations?limit=25",
                                 lambda i: (b"", {"Authorization": f"Bearer {server.agent}"}), rate, seconds))
    raise ValueError(name)


def email_rows(server: Server, quick: bool) -> tuple[dict[str, float], dict[str, float]]:
    from bench.api_ingest import Receiver
    from bench.email_ingest import mails, saturate, steady

    async def go() -> tuple[dict[str, float], dict[str, float]]:
        rec = Receiver()
        ready = asyncio.Event()
        task = asyncio.create_task(rec.run(f"ws://127.0.0.1:{server.port}/api/v1/stream?token={server.admin}",
                                           ready))
        await ready.wait()
        n = 300 if quick else 1000
        load = mails(n, n, "peer")  # every mail from a new sender
        sent: dict[str, float] = {}
        rec.want = n
        start = time.perf_counter()
        codes = await saturate(server.smtp_port, load, sent, concurrency=CONNECTIONS)
        await asyncio.wait_for(rec.event.wait(), 300)
        elapsed = max(rec.arrived.values()) - start
        rate = ROWS["email"].target / 2
        seconds = 4 if quick else 10
        load_b = mails(int(rate * seconds), int(rate * seconds), "peerb")
        sent_b: dict[str, float] = {}
        acked: dict[str, float] = {}
        rec.event.clear()
        rec.want = n + len(load_b)
        await steady(server.smtp_port, load_b, sent_b, rate, acked)
        await asyncio.wait_for(rec.event.wait(), 120)
        lat = [(rec.arrived[k] - v) * 1000 for k, v in sent_b.items() if k in rec.arrived]
        task.cancel()
        bad = sum(v for k, v in codes.items() if not k.startswith("2"))
        return ({"rps": n / elapsed, "p50": float("nan"), "p99": float("nan"), "bad": bad},
                {"rate": rate, "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat), "bad": 0})

    return asyncio.run(go())


def run(quick: bool = False, only: list[str] | None = None, seconds: int = 20, warmup: int = 3,
        workers: int = 1) -> dict[str, object]:
    names = only or list(ROWS)
    if quick:
        seconds, warmup = min(seconds, 5), min(warmup, 1)
    results: dict[str, object] = {"seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="tl-bench-peer-") as tmpdir:
        tmp = Path(tmpdir)
        results["floor"] = floor(seconds, warmup, tmp)
        peak = idle = 0.0
        for name in names:  # each row on a fresh server and database, as the peer's rows were measured
            server = Server(tmp / name, workers)
            try:
                server.start()
                idle = max(idle, server.rss())
                if name == "email":
                    results[name], results[f"{name}_half"] = email_rows(server, quick)
                    peak = max(peak, server.rss())
                    continue
                if name == "inbound":
                    n = int(3000 * (seconds + warmup)) if not quick else 10_000
                    script = inbound_script(server.hook, n, "wrk", tmp)
                elif name == "reply":
                    script = reply_script(server.agent, server.conversations)
                elif name == "inbox":
                    script = get_script("/", {"Cookie": server.cookie})
                else:
                    script = get_script("/api/v1/conversations?limit=25", {"Authorization": f"Bearer {server.agent}"})
                results[name] = wrk(server.port, script, seconds, warmup, tmp)
                peak = max(peak, server.rss())
                server.settle()  # what the full-rate run left (sends, events) is done before the half-rate one
                results[f"{name}_half"] = half_rate(server, name, 4 if quick else 10)
                peak = max(peak, server.rss())
            finally:
                server.stop()
        results["rss_idle_mb"], results["rss_load_mb"] = idle, peak
    results["client_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def report(r: dict[str, object]) -> bool:
    fl = r["floor"]
    assert isinstance(fl, dict)
    print(f"  bare Starlette JSON endpoint, same wrk settings: {fl['rps']:,.0f} req/s, p99 {fl['p99']:.1f} ms")
    print(f"  {'path':<60} {'req/s':>8} {'p99':>8} {'÷floor':>7} {'×peer':>6} {'target':>7} {'½-rate p99':>11}")
    ok_all = True
    for name, row in ROWS.items():
        m = r.get(name)
        h = r.get(f"{name}_half")
        if not isinstance(m, dict) or not isinstance(h, dict):
            continue
        ok = m["rps"] >= row.target and h["p99"] <= 50 and not m["bad"] and not h["bad"]
        ok_all &= ok
        bad = f" ({m['bad']:.0f} errors)" if m["bad"] or h["bad"] else ""
        print(f"  {row.what:<60} {m['rps']:>8,.0f} {m['p99']:>6.1f}ms {m['rps'] / fl['rps']:>7.3f} "
              f"{m['rps'] / row.peer:>5.1f}× {row.target:>7,.0f} {h['p99']:>6.1f}ms@{h['rate']:.0f} "
              f"{verdict(ok)}{bad}")
    print(f"  resident memory of the server process: idle {r['rss_idle_mb']:.0f} MB, under load {r['rss_load_mb']:.0f} MB "
          f"({verdict(float(r['rss_load_mb']) < 300)} < 300 MB)")  # type: ignore[arg-type]
    return ok_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated rows: " + ",".join(ROWS))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="server processes (the targets are per process)")
    args = parser.parse_args()
    header("the peer's paths (wrk -t1 -c8)")
    only = [x for x in args.only.split(",") if x] or None
    r = run(args.quick, only, args.seconds, workers=args.workers)
    print(f"Desk and provider paths, {args.workers} server process(es), SQLite, embedded bus; wrk -t1 -c{CONNECTIONS}, "
          f"{r['seconds']} s after a warm-up; ½-rate: open loop at half the target, latency from when due; "
          "each row on a fresh server and database")
    report(r)


if __name__ == "__main__":
    main()

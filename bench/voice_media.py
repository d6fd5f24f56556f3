"""Server-side media of calls in the browser: how many relayed and recorded calls one Threadline process
carries on this machine before the audio it sends is late, and what a call costs.

The server is one process running Threadline's ``MediaHub`` (voice/browser/media.py: aiortc peers, the
20 ms speakers, the two-channel recorder) behind a small HTTP endpoint that takes offers, as the real
``/widget/calls/{id}/media`` and ``/api/v1/calls/{id}/media`` do. The load generator is another process:
for each call two aiortc peers (the visitor and the agent) send a looping tone and receive what the server
relays. Steps of N concurrent calls each run for ``--seconds``; for each step the server reports the frames
its speakers sent, how many were late (handed to the encoder more than 20 ms after their time), the worst
lateness, and its own CPU time. A step passes when under 1 % of frames are late and the worst is under
100 ms. The peers of the load generator run on the same two cores and cost about as much as the server
(Opus encode and decode per party), so the figure is a floor for a machine that only serves.

Run: ``python -m bench.voice_media [--quick] [--seconds 10] [--steps 1,2,4,8,12,16]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- the server process

def serve(port: int) -> None:
    import gc

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from threadline.voice.browser.media import AGENT, MediaHub

    gc.collect()
    gc.freeze()  # as the app does after its start (web/app.py)
    hub = MediaHub()

    async def offer(request: Request) -> PlainTextResponse:
        call_id, who = int(request.path_params["call"]), request.path_params["who"]
        mc = hub.open(call_id)
        sdp = await mc.answer(who, (await request.body()).decode(), [])
        if who == AGENT:
            mc.recorder.start()
        return PlainTextResponse(sdp)

    async def stats(request: Request) -> JSONResponse:
        frames = late = 0
        worst = 0.0
        heard = 0
        for mc in hub.calls.values():
            for sp in (mc.to_customer, mc.to_agent):
                frames, late, worst = frames + sp.pace.frames, late + sp.pace.late, max(worst, sp.pace.worst)
                sp.pace.frames = sp.pace.late = 0
                sp.pace.worst = 0.0
            heard += sum(mc.recorder.heard.values())
        return JSONResponse({"frames": frames, "late": late, "worst": worst, "heard": heard, "calls": len(hub.calls)})

    async def end_all(request: Request) -> JSONResponse:
        seconds = 0.0
        for call_id in list(hub.calls):
            mc = await hub.end(call_id)
            if mc is not None and mc.recording:
                seconds += len(mc.recording) / 4 / 16_000
        return JSONResponse({"recorded_seconds": seconds})

    app = Starlette(routes=[Route("/offer/{call}/{who}", offer, methods=["POST"]), Route("/stats", stats),
                            Route("/end", end_all, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --------------------------------------------------------------------------- the load generator

def _tone(path: Path, hz: float) -> str:
    rate = 48_000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                               for i in range(rate * 2)))
    return str(path)


class Party:
    def __init__(self, sound: str) -> None:
        from aiortc import RTCPeerConnection
        from aiortc.contrib.media import MediaPlayer

        self.pc = RTCPeerConnection()
        self.pc.addTrack(MediaPlayer(sound, loop=True).audio)
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", lambda t: self.tasks.append(asyncio.ensure_future(self._drain(t))))

    async def _drain(self, track: object) -> None:
        try:
            while True:
                await track.recv()  # type: ignore[attr-defined]
        except Exception:
            return

    async def connect(self, http: httpx.AsyncClient, call_id: int, who: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setLocalDescription(await self.pc.createOffer())
        r = await http.post(f"/offer/{call_id}/{who}", content=self.pc.localDescription.sdp)
        r.raise_for_status()
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))

    async def close(self) -> None:
        await self.pc.close()
        for t in self.tasks:
            t.cancel()


async def _step(http: httpx.AsyncClient, pid: int, n: int, seconds: float, sounds: tuple[str, str],
                first_id: int) -> dict[str, float]:
    parties: list[Party] = []
    for i in range(n):
        visitor, agent = Party(sounds[0]), Party(sounds[1])
        await visitor.connect(http, first_id + i, "customer")
        await agent.connect(http, first_id + i, "agent")
        parties += [visitor, agent]
    await asyncio.sleep(2.0)  # connected, warmed up
    await http.get("/stats")  # reset the counters
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    stats = (await http.get("/stats")).json()
    cpu = _cpu_seconds(pid) - cpu0
    wall = time.monotonic() - t0
    recorded = (await http.post("/end")).json()["recorded_seconds"]
    for p in parties:
        await p.close()
    frames = max(1, stats["frames"])
    return {"calls": n, "frames": frames, "late_pct": 100 * stats["late"] / frames, "worst_ms": 1000 * stats["worst"],
            "cpu_pct": 100 * cpu / wall, "cpu_ms_per_call_second": 1000 * cpu / wall / n,
            "recorded_s": recorded, "heard": stats["heard"]}


async def _run(steps: list[int], seconds: float) -> list[dict[str, float]]:
    from threadline.voice.browser.media import _faster_aiortc

    _faster_aiortc()  # the load generator's peers too: aiortc's audio level costs ~1.8 ms a frame otherwise
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.voice_media", "--serve", str(port)])
    out: list[dict[str, float]] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(100):
                try:
                    await http.get("/stats")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            with tempfile.TemporaryDirectory() as tmp:
                sounds = (_tone(Path(tmp) / "v.wav", 440), _tone(Path(tmp) / "a.wav", 660))
                next_id = 1
                for n in steps:
                    r = await _step(http, proc.pid, n, seconds, sounds, next_id)
                    next_id += n
                    r["ok"] = r["late_pct"] < 1.0 and r["worst_ms"] < 100
                    out.append(r)
                    print(f"{n:>3} calls: {r['late_pct']:5.2f} % frames late, worst {r['worst_ms']:6.1f} ms, "
                          f"server CPU {r['cpu_pct']:5.1f} % ({r['cpu_ms_per_call_second']:.0f} ms per call-second), "
                          f"recorded {r['recorded_s']:.0f} s  {'ok' if r['ok'] else 'LATE'}", flush=True)
                    if not r["ok"]:
                        break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", type=int)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", default="1,2,4,6,8,12,16,24")
    args, _ = ap.parse_known_args()
    if args.serve:
        serve(args.serve)
        return
    steps = [1, 2, 4] if args.quick else [int(x) for x in args.steps.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    results = asyncio.run(_run(steps, 5.0 if args.quick else args.seconds))
    carried = [r["calls"] for r in results if r["ok"]]
    print(f"carried without late frames: {max(carried) if carried else 0} concurrent relayed and recorded calls "
          f"(load generator on the same cores)")


if __name__ == "__main__":
    main()

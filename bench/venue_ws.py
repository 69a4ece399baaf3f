"""The venue's market channel: the highest update rate it sustains to one
subscriber over loopback (updates_per_second raised step by step through live
config edits until delivery falls behind), the lag from event timestamp to the
client, a 4-subscriber fan-out, and as the baseline measured in the same run a
raw aiohttp WebSocket server sending pre-encoded frames.

    python -m bench.venue_ws [--step-seconds 1.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets
import yaml

from bench.common import write_result
from config.loader import DEFAULT_PATH
from sandbox.testbed import free_port

POLYARB = str(Path(sys.executable).with_name("polyarb"))
ROOT = Path(__file__).resolve().parent.parent
RATES = (2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 16_000)  # updates per second offered, in turn
# A rate is sustained if at least this share of its frames arrives, with the
# event-to-client lag p99 below LAG_LIMIT_MS (a growing queue shows as lag first).
SUSTAINED = 0.9
LAG_LIMIT_MS = 50.0

# A server that only sends one ~340-byte price_change, pre-encoded, in a loop.
RAW_SERVER = """
import asyncio, sys
from aiohttp import web, WSMsgType
FRAME = (b'{"market":"0x' + b'5f' * 32 + b'","price_changes":[{"asset_id":"' + b'7' * 77 +
         b'","price":"0.62","size":"200","side":"BUY","hash":"' + b'a' * 40 +
         b'","best_bid":"0.62","best_ask":"0.64"}],"timestamp":"1767225600123","event_type":"price_change"}')
async def handle(request):
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    await ws.receive()
    try:
        while True:
            for _ in range(100):
                await ws.send_frame(FRAME, WSMsgType.TEXT)
            await asyncio.sleep(0)
    except Exception:
        pass
    return ws
app = web.Application()
app.router.add_get("/ws", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def _write_config(path: Path, raw: dict[str, Any], updates_per_second: float) -> None:
    raw["sandbox"]["venue"]["updates_per_second"] = updates_per_second
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.replace(tmp, path)  # atomic, as the hot reload expects


def _config(tmp: Path, port: int) -> tuple[Path, dict[str, Any]]:
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    for name in raw["bus"]["endpoints"]:
        raw["bus"]["endpoints"][name] = {"pub": f"tcp://127.0.0.1:{free_port()}"}
    raw["chain"]["rpc_url"] = f"http://127.0.0.1:{free_port()}"  # no chain: market data only
    raw["runtime"].update(log_level="WARNING", config_debounce_ms=50)
    raw["sandbox"]["venue"]["port"] = port
    raw["sandbox"]["venue"]["state_dir"] = str(tmp / "state")
    raw["sandbox"]["venue"]["arbitrage"]["rate_per_minute"] = 0
    path = tmp / "config.yaml"
    _write_config(path, raw, RATES[0])
    return path, raw


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - our local venue
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _subscriber(url: str, ids: list[str], seconds: float, lags: list[float] | None = None) -> dict[str, Any]:
    """Frames per second received over `seconds` (after the snapshot); `closed` if the
    venue dropped us (a slow consumer: it could not keep up)."""
    frames, closed = 0, False
    # max_queue=None: frames still arriving after the measurement must not pause reading,
    # or the venue's close frame is never read and the close waits for its timeout.
    async with websockets.connect(url, compression=None, max_size=None, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "market", "assets_ids": ids, "custom_feature_enabled": False}))
        await ws.recv()  # the snapshot array
        t0 = time.monotonic()
        end = t0 + seconds
        try:
            while time.monotonic() < end:
                msg = await ws.recv()
                frames += 1
                if lags is not None and frames % 20 == 0:  # decode a sample only: the client must keep up
                    lags.append(time.time() * 1000 - int(json.loads(msg)["timestamp"]))
        except websockets.ConnectionClosed:
            closed = True
        elapsed = time.monotonic() - t0
    return {"frames_per_s": frames / elapsed, "closed": closed}


async def _raw_baseline(seconds: float) -> float:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", RAW_SERVER, str(port)])  # noqa: ASYNC220 - started once, before timing
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=None)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        await ws.send("go")
        frames, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            await ws.recv()
            frames += 1
        rate = frames / (time.monotonic() - t0)
        ws.transport.abort()  # no close handshake with a server that never stops sending
        return rate
    finally:
        server.kill()  # a throwaway echo-less server: no graceful shutdown needed
        server.wait(10)


def run(step_seconds: float = 1.2) -> dict[str, Any]:
    port = free_port()
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path, raw = _config(Path(tmp), port)
        log = open(Path(tmp) / "venue.log", "wb")
        venue = subprocess.Popen([POLYARB, "--config", str(path), "actor", "venue"], stdout=log,
                                 stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            _wait_http(f"http://127.0.0.1:{port}/markets")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/markets") as r:
                ids = [t["token_id"] for m in json.loads(r.read())["data"] for t in m["tokens"]]
            url = f"ws://127.0.0.1:{port}/ws/market"
            best: dict[str, Any] | None = None
            for rate in RATES:
                _write_config(path, raw, rate)
                time.sleep(0.4)  # the reload (50 ms debounce) and the new rate settling
                lags: list[float] = []
                cpu0, t0 = _cpu_seconds(venue.pid), time.monotonic()
                got = asyncio.run(_subscriber(url, ids, step_seconds, lags))
                cpu1, wall = _cpu_seconds(venue.pid), time.monotonic() - t0
                print(f"  {rate} updates/s offered: {got['frames_per_s']:.0f} frames/s in {wall:.1f}s", flush=True)
                lags.sort()
                step = {"offered_updates_per_s": rate, "frames_per_s": round(got["frames_per_s"]),
                        "disconnected_as_slow": got["closed"],
                        "venue_cpu_share": None if cpu0 is None or cpu1 is None else round((cpu1 - cpu0) / wall, 2),
                        "lag_ms_p50": round(lags[len(lags) // 2], 1) if lags else None,
                        "lag_ms_p99": round(lags[int(len(lags) * 0.99)], 1) if lags else None}
                steps.append(step)
                if got["closed"] or got["frames_per_s"] < SUSTAINED * rate or (step["lag_ms_p99"] or 0) > LAG_LIMIT_MS:
                    break
                best = step
            fan_rate = max(RATES[0], (best or steps[0])["offered_updates_per_s"] // 4)
            _write_config(path, raw, fan_rate)
            time.sleep(0.4)

            async def fan_out() -> list[dict[str, Any]]:
                return list(await asyncio.gather(*(_subscriber(url, ids, step_seconds) for _ in range(4))))

            four = asyncio.run(fan_out())
        finally:
            t = time.monotonic()
            venue.send_signal(signal.SIGTERM)
            venue.wait(15)
            log.close()
            print(f"  venue stopped in {time.monotonic() - t:.1f}s", flush=True)
    raw_rate = asyncio.run(_raw_baseline(step_seconds * 2))
    top = steps[-1]
    results = {
        "max_sustained_updates_per_s": best["offered_updates_per_s"] if best else None,
        "frames_per_s_at_max_sustained": best["frames_per_s"] if best else None,
        "lag_ms_p50_at_max_sustained": best["lag_ms_p50"] if best else None,
        "lag_ms_p99_at_max_sustained": best["lag_ms_p99"] if best else None,
        "venue_cpu_share_at_max_sustained": best["venue_cpu_share"] if best else None,
        "frames_per_s_beyond_capacity": top["frames_per_s"] if top is not best else None,
        "fan_out_4_subscribers_offered_updates_per_s": fan_rate,
        "fan_out_4_subscribers_min_frames_per_s": round(min(s["frames_per_s"] for s in four)),
        "fan_out_4_subscribers_any_disconnected": any(s["closed"] for s in four),
        "raw_aiohttp_frames_per_s": round(raw_rate),
        "steps": steps,
    }
    peak = max(s["frames_per_s"] for s in steps)
    ratios = {
        "venue_peak_vs_raw_server": round(peak / raw_rate, 3),
        "fan_out_delivered_vs_offered": round(min(s["frames_per_s"] for s in four) / fan_rate, 3),
    }
    return {"name": "venue_ws", "results": results, "ratios": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step-seconds", type=float, default=1.2)
    result = run(parser.parse_args().step_seconds)
    path = write_result("venue_ws", {k: v for k, v in result.items() if k != "name"})
    print(json.dumps({"results": result["results"], "ratios": result["ratios"]}, indent=1))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Latency and overload behaviour of the REST API: a real `siamface serve --no-ui` subprocess
on loopback, measured from a client.

    .venv/bin/python benchmarks/bench_api.py [--requests 50] [--burst 64] [--queue-size 8]

1. warm single verify: ``--requests`` sequential POST /api/v1/verify of two 250 px LFW photos
   (Aaron_Peirsol 1 and 2; the shipped example photos when LFW is absent) as multipart,
   after ``--warmup`` requests: p50 / p95 / mean client-side latency;
2. burst: ``--burst`` concurrent verifies: wall time, throughput (answered 200 per second),
   the share answered 503 (busy) and whether every 503 carried Retry-After;
3. with ``--profile``: where the time of one warm verify goes, measured in this process on
   the same photos (decode, face detection of the pair, embedding with and without the
   flip average, the whole service call), so that the API's own overhead is the difference.

The server's peak RSS (VmHWM) is read from /proc after the burst.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _machine
import httpx

REPO = Path(__file__).resolve().parents[1]
LFW = Path(os.environ.get("SIAMFACE_LFW", REPO.parent / "shared" / "data" / "lfw"))
ADDRESS = re.compile(r"siamface serve: (http://127\.0\.0\.1:\d+)/")


def photos() -> tuple[str, Path, Path]:
    a = LFW / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    b = LFW / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg"
    if a.is_file() and b.is_file():
        return "LFW Aaron_Peirsol 1 + 2 (250x250)", a, b
    from siamface import examples

    return ("example photos kofi_annan_1 + 2", examples.path("kofi_annan_1"),
            examples.path("kofi_annan_2"))


def start_server(queue_size: int, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k != "SIAMFACE_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "siamface.cli.main", "serve", "--no-ui", "--port", "0",
         "--queue-size", str(queue_size), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            match = ADDRESS.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
            elif not found:
                sys.stderr.write(line)
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120) or not found:
        proc.kill()
        raise SystemExit("the server did not start")
    url = found[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("no /health answer")


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def sequential(client: httpx.Client, url: str, files: dict, n: int, warmup: int,
               pid: int) -> dict:
    for _ in range(warmup):
        client.post(f"{url}/api/v1/verify", files=files).raise_for_status()
    cpu0 = cpu_seconds(pid)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(f"{url}/api/v1/verify", files=files)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    server_cpu = (cpu_seconds(pid) - cpu0) / n * 1000
    ms = [t * 1000 for t in times]
    return {"requests": n, "p50_ms": statistics.median(ms), "p95_ms": percentile(ms, 0.95),
            "mean_ms": statistics.fmean(ms), "min_ms": min(ms),
            "server_cpu_ms_per_request": server_cpu}


def burst(url: str, files: dict, n: int) -> dict:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    barrier = threading.Barrier(n)
    with httpx.Client(limits=limits, timeout=300) as client:
        def one(_: int) -> httpx.Response:
            barrier.wait(60)
            return client.post(f"{url}/api/v1/verify", files=files)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(one, range(n)))
        seconds = time.perf_counter() - t0
    ok = sum(r.status_code == 200 for r in answers)
    busy = [r for r in answers if r.status_code == 503]
    return {"requests": n, "seconds": seconds, "ok": ok, "busy": len(busy),
            "other": n - ok - len(busy), "ok_per_s": ok / seconds,
            "answered_per_s": n / seconds, "busy_share": len(busy) / n,
            "retry_after_on_every_503": all("retry-after" in r.headers for r in busy)}


def profile(path_a: Path, path_b: Path, runs: int = 20) -> dict:
    """Stages of one warm verify in this process (the server does the same work): for each,
    the median and the minimum (the least disturbed run) wall time in ms."""
    import numpy as np

    from siamface.io import load_image
    from siamface.service import load

    service = load()
    raw_a, raw_b = path_a.read_bytes(), path_b.read_bytes()
    a, b = load_image(raw_a), load_image(raw_b)
    for _ in range(3):
        service.verify(a, b)

    def timed(fn) -> dict:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return {"p50_ms": statistics.median(times), "min_ms": min(times)}

    chips = np.stack([c.chip for c in service.pipeline.crop_batch([a, b])])
    flip = service.flip
    out = {"decode 2": timed(lambda: (load_image(raw_a), load_image(raw_b))),
           "detect + align 2": timed(lambda: service.pipeline.crop_batch([a, b]))}
    service.flip = True
    out["embed 2, flip average"] = timed(lambda: service._run_chips(chips))
    service.flip = False
    out["embed 2, no flip"] = timed(lambda: service._run_chips(chips))
    service.flip = flip
    out["service.verify"] = timed(lambda: service.verify(a, b))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--burst", type=int, default=64)
    p.add_argument("--queue-size", type=int, default=8)
    p.add_argument("--profile", action="store_true", help="also time the stages in-process")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("server_args", nargs="*", help="more `siamface serve` options (after --)")
    args = p.parse_args(argv)

    label, path_a, path_b = photos()
    files = {"a": (path_a.name, path_a.read_bytes(), "image/jpeg"),
             "b": (path_b.name, path_b.read_bytes(), "image/jpeg")}
    proc, url = start_server(args.queue_size, args.server_args)
    try:
        with httpx.Client(timeout=120) as client:
            load_before = os.getloadavg()[0]
            single = sequential(client, url, files, args.requests, args.warmup, proc.pid)
        overload = burst(url, files, args.burst)
        with httpx.Client(timeout=120) as client:
            after = client.post(f"{url}/api/v1/verify", files=files).status_code
        rss = peak_rss_mib(proc.pid)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(15)
    stages = profile(path_a, path_b) if args.profile else None
    result = {"photos": label, "cpu_count": os.cpu_count(), "queue_size": args.queue_size,
              "load_average_before": load_before,
              "single": single, "burst": overload, "after_burst_status": after,
              "server_alive": alive, "server_peak_rss_mib": rss, "stages": stages}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"photos: {label}; {os.cpu_count()} CPU(s); queue size {args.queue_size}; load "
          f"average {load_before:.2f} before (other processes on the machine)")
    print(_machine.describe())
    print(f"warm single verify ({single['requests']} sequential): p50 {single['p50_ms']:.0f} ms, "
          f"p95 {single['p95_ms']:.0f} ms, mean {single['mean_ms']:.0f} ms, "
          f"min {single['min_ms']:.0f} ms; server CPU "
          f"{single['server_cpu_ms_per_request']:.0f} ms per request")
    print(f"burst of {overload['requests']} concurrent: {overload['seconds']:.2f} s, "
          f"{overload['ok']} x 200 ({overload['ok_per_s']:.1f}/s), {overload['busy']} x 503 "
          f"({100 * overload['busy_share']:.0f}%), other {overload['other']}, Retry-After on "
          f"every 503: {overload['retry_after_on_every_503']}; all answered at "
          f"{overload['answered_per_s']:.0f}/s")
    print(f"after the burst: {after}; server alive: {alive}; peak RSS "
          f"{'n/a' if rss is None else f'{rss:.0f} MiB'}")
    if stages:
        print("in-process stages of one warm verify (p50 / min):")
        for name, t in stages.items():
            print(f"  {name:<24} {t['p50_ms']:7.1f} / {t['min_ms']:6.1f} ms")
        print(f"API overhead (client - service.verify): p50 "
              f"{single['p50_ms'] - stages['service.verify']['p50_ms']:.1f} ms, min "
              f"{single['min_ms'] - stages['service.verify']['min_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Overload on loopback: a real `siamface serve --no-ui --queue-size 4` subprocess gets 64
concurrent verify requests. Every one is answered (200, or 503 with Retry-After), at least as
many succeed as the queue holds, the server survives with its peak memory under 3 GB, and a
request after the burst succeeds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from siamface import examples

QUEUE = 4
BURST = 64
PEAK_RSS_LIMIT = 3 * 2**30
ADDRESS = re.compile(r"siamface serve: (http://127\.0\.0\.1:\d+)/")


def _peak_rss(pid: int) -> int:
    """VmHWM (the peak resident set) of a live process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def server(tmp_path):
    """The server on a free loopback port (--port 0; the address is read from its output)."""
    env = {k: v for k, v in os.environ.items() if k != "SIAMFACE_API_KEY"}
    env.update(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "siamface.cli.main", "serve", "--no-ui", "--port", "0",
         "--queue-size", str(QUEUE)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            match = ADDRESS.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(60) and found, "server did not start:\n" + "".join(lines)
        url = found[0]
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "server exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "no /health answer:\n" + "".join(lines)
            time.sleep(0.2)
        yield proc, url, lines
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_64_concurrent_verifies(server):
    proc, url, lines = server
    a = examples.path("kofi_annan_1").read_bytes()
    b = examples.path("kofi_annan_2").read_bytes()
    files = {"a": ("a.jpg", a, "image/jpeg"), "b": ("b.jpg", b, "image/jpeg")}
    start = threading.Barrier(BURST)
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    with httpx.Client(limits=limits, timeout=120) as client:
        assert client.post(f"{url}/api/v1/verify", files=files).status_code == 200  # warm

        def one(_: int):
            start.wait(30)
            return client.post(f"{url}/api/v1/verify", files=files)

        t0 = time.monotonic()
        with ThreadPoolExecutor(BURST) as pool:
            answers = list(pool.map(one, range(BURST)))
        seconds = time.monotonic() - t0
        statuses = [r.status_code for r in answers]
        ok = [r for r in answers if r.status_code == 200]
        busy = [r for r in answers if r.status_code == 503]
        assert len(ok) + len(busy) == BURST, statuses
        assert len(ok) >= QUEUE, statuses
        assert all(r.json()["is_match"] is True for r in ok)
        for r in busy:
            assert r.json()["code"] == "busy" and int(r.headers["retry-after"]) >= 1
        after = client.post(f"{url}/api/v1/verify", files=files)
        assert after.status_code == 200 and after.json()["is_match"] is True
    assert proc.poll() is None, "server died:\n" + "".join(lines)
    peak = _peak_rss(proc.pid)
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    print(f"\n{len(ok)} x 200, {len(busy)} x 503 in {seconds:.1f} s; peak RSS "
          f"{peak / 2**20:.0f} MiB")


def test_accepted_connections_send_without_nagle_delay():
    """The listening socket says IPPROTO_TCP, so asyncio turns TCP_NODELAY on for each
    accepted connection (without it, every keep-alive request after the first waited for
    the client's delayed ACK, 40 ms on Linux)."""
    import asyncio
    import socket

    from siamface.cli.serve import _bind

    listener = _bind("127.0.0.1", 0)
    seen: list[int] = []

    class Record(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def accept_one() -> None:
        server = await asyncio.get_running_loop().create_server(Record, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(accept_one())
    assert seen and seen[0] != 0


def test_models_are_loaded_on_the_inference_worker(monkeypatch):
    """torch's first parallel work happens on the thread that runs every model: loading
    on the main thread left the worker's OpenMP team using about 1.3 of 2 cores."""
    import siamface.service
    from siamface.web.state import AppState, ServeConfig

    threads = []
    real_load = siamface.service.load

    def recording_load(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(siamface.service, "load", recording_load)
    state = AppState(ServeConfig(ui=False))
    try:
        state.run(lambda: state.service(crop="center"))
    finally:
        state.close()
    assert len(threads) == 1 and threads[0].startswith("siamface-infer")

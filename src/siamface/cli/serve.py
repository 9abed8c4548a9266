"""`siamface serve`: the web UI and the REST API (`/api/v1`) in one server. Needs the
`web` extra: `pip install 'siamface[web]'`. Listens on 127.0.0.1 unless told otherwise;
set `SIAMFACE_API_KEY` to require `Authorization: Bearer <key>` on the API (and the key
as the UI's password)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import signal
import socket
import sys
from pathlib import Path

from siamface.cli._common import EXIT_BAD_INPUT, positive_int
from siamface.service import RUNTIMES

INSTALL_HINT = "pip install 'siamface[web]'"
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]", "::1"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free port), "
                                         f"got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from siamface.io import DEFAULT_MAX_PIXELS

    p = sub.add_parser("serve", help="web app and REST API (needs the web extra)",
                       description=__doc__.split(":", 1)[1].strip() if __doc__ else None)
    p.add_argument("--model", metavar="PATH", default=None,
                   help="default checkpoint (.safetensors); default: the shipped model")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_port, default=7860, help="port (default: 7860; 0: any free)")
    p.add_argument("--models-dir", type=Path, default=None, metavar="DIR",
                   help="more checkpoints to offer (*.safetensors); uploaded ones are saved here")
    p.add_argument("--allow-path", type=Path, action="append", default=[], metavar="DIR",
                   dest="allow_paths",
                   help="a server folder clients may name (datasets, galleries); repeatable")
    p.add_argument("--queue-size", type=positive_int, default=8, metavar="N",
                   help="inference requests admitted at once, running or waiting; more are "
                        "answered 503 with Retry-After (default: 8)")
    p.add_argument("--inference-threads", type=positive_int, default=1, metavar="N",
                   help="inference workers (default: 1; torch uses every core within one)")
    p.add_argument("--max-request-mb", type=positive_int, default=25, metavar="MB",
                   help="largest request body in MiB (default: 25)")
    p.add_argument("--max-files", type=positive_int, default=16, metavar="N",
                   help="most files in one request (default: 16)")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse images with more pixels (default: {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="inference runtime (default: torch); onnx / onnx-int8 run each "
                        "model's ONNX export (`siamface export --format onnx --with-detector`) "
                        "with ONNX Runtime")
    p.add_argument("--onnx-dir", type=Path, default=None, metavar="DIR",
                   help="with --runtime onnx: the default model's export folder (default: the "
                        "export cache)")
    p.add_argument("--no-ui", dest="ui", action="store_false",
                   help="serve the REST API only (no Gradio UI)")
    p.add_argument("--log-level", default="warning",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="server log level (default: warning)")
    p.set_defaults(run=run)


def _missing_extra() -> str | None:
    import importlib.util

    missing = []
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"),
                            ("python_multipart", "python-multipart")):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules
            found = False
        if not found:
            missing.append(package)
    return ", ".join(missing) if missing else None


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets that say
    # so, and without it every keep-alive request after the first waited 40 ms (Nagle
    # holding the response's second write for the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        from siamface.errors import ConfigError

        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise ConfigError(f"address {host}:{port} {why}; choose another --port or --host"
                          ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    from siamface.checkpoint import read_checkpoint_info
    from siamface.errors import ConfigError

    missing = _missing_extra()
    if missing:
        print(f"siamface serve: error: the web extra is not installed ({missing} missing); "
              f"install it with: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.model is not None:
        read_checkpoint_info(args.model)  # a missing or foreign file fails before binding
    if args.models_dir is not None and not args.models_dir.is_dir():
        raise ConfigError(f"--models-dir {args.models_dir} is not a folder; create it first")
    for root in args.allow_paths:
        if not root.is_dir():
            raise ConfigError(f"--allow-path {root} is not a folder")

    import uvicorn

    from siamface.web.app import create_app
    from siamface.web.state import ServeConfig

    loopback = _is_loopback(args.host)
    config = ServeConfig(model=args.model, models_dir=args.models_dir,
                         allow_paths=list(args.allow_paths), host=args.host, port=args.port,
                         max_request_bytes=args.max_request_mb * 2**20,
                         max_files=args.max_files, max_pixels=args.max_pixels,
                         queue_size=args.queue_size, inference_threads=args.inference_threads,
                         device=args.device, runtime=args.runtime, onnx_dir=args.onnx_dir,
                         ui=args.ui,
                         allowed_hosts=LOOPBACK_NAMES if loopback else None)
    if not loopback and not config.api_key:
        print(f"siamface serve: warning: listening on {args.host} without an API key: anyone "
              "who can reach this address can use the API and the UI; set SIAMFACE_API_KEY",
              file=sys.stderr)
    sock = _bind(args.host, args.port)
    try:
        port = config.port = sock.getsockname()[1]
        app = create_app(config)
        shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
        ui = "" if getattr(app.state, "ui_mounted", False) else ", no UI"
        print(f"siamface serve: http://{shown}:{port}/ (API under /api/v1{ui})", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level,
                                               timeout_graceful_shutdown=5))
        # uvicorn re-raises SIGTERM after its graceful shutdown; the default action would end
        # the process without the atexit cleanup of the private upload folder
        signal.signal(signal.SIGTERM, _exit_cleanly)
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)

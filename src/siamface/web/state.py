"""What the web app holds while it runs: its configuration, the loaded models (one
:class:`~siamface.service.FaceService` per model, crop mode and fallback policy, sharing the
network weights), and the bounded inference queue.

The queue admits at most ``queue_size`` inference calls at once (running or waiting for one
of the ``inference_threads`` workers); a call beyond that raises :class:`Busy` at once, which
the API answers with 503 and a ``Retry-After`` header. Overload therefore costs a short
refusal, never unbounded memory or latency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamface.errors import SiamfaceError, UnknownNameError
from siamface.io import DEFAULT_MAX_PIXELS

__all__ = [
    "DEFAULT_MODEL_NAME",
    "AppState",
    "Busy",
    "PathNotAllowedError",
    "ServeConfig",
    "UnknownModelError",
]

DEFAULT_MODEL_NAME = "default"
"""The name of the shipped model in ``/models`` when ``--model`` is not given."""
API_KEY_ENV = "SIAMFACE_API_KEY"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class ServeConfig:
    """How ``siamface serve`` (and :func:`siamface.web.app.create_app`) runs."""

    model: str | None = None  # default checkpoint (None: the shipped model)
    models_dir: Path | None = None  # more .safetensors checkpoints (listed; uploads land here)
    allow_paths: list[Path] = field(default_factory=list)  # server folders a client may name
    host: str = "127.0.0.1"
    port: int = 7860
    api_key: str | None = None  # from SIAMFACE_API_KEY when not given
    max_request_bytes: int = 25 * 2**20
    max_files: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_zip_members: int = 5_000  # an uploaded or named zip: members, and bytes once expanded
    max_zip_bytes: int = 512 * 2**20
    queue_size: int = 8  # inference requests admitted at once (running + waiting)
    inference_threads: int = 1
    retry_after_s: int = 2
    device: str = "cpu"
    runtime: str = "torch"  # or "onnx" / "onnx-int8": siamface.ort, from an ONNX export
    onnx_dir: Path | None = None  # the export folder (None: the export cache)
    ui: bool = True  # mount the Gradio UI at / (when gradio is importable)
    allowed_hosts: list[str] | None = None  # Host header names answered (None: any)

    def __post_init__(self) -> None:
        from siamface.errors import ConfigError

        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        if self.models_dir is not None:
            self.models_dir = Path(self.models_dir)
        self.allow_paths = [Path(p) for p in self.allow_paths]
        for name in ("max_request_bytes", "max_files", "max_pixels", "max_zip_members",
                     "max_zip_bytes", "queue_size",
                     "inference_threads", "retry_after_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")


class Busy(SiamfaceError):
    """The inference queue is full: try again after ``retry_after`` seconds."""

    def __init__(self, queue_size: int, retry_after: int):
        self.queue_size, self.retry_after = queue_size, retry_after
        super().__init__(f"the server is busy ({queue_size} inference request(s) already "
                         f"admitted); retry after {retry_after} s")


class UnknownModelError(UnknownNameError):
    """A model name that is not in ``/models``."""

    def __init__(self, name: str, valid: list[str]):
        super().__init__("model", name, valid)


class PathNotAllowedError(SiamfaceError, PermissionError):
    """A server path outside every ``--allow-path`` root (or none was given)."""


@dataclass
class _Model:
    name: str
    path: Path | None  # None: the untrained default backbone (a build without the asset)
    default: bool = False


class AppState:
    """Models, services and the inference queue of one running app. Thread-safe."""

    def __init__(self, config: ServeConfig | None = None, *, service=None):
        """Load the default model once (``service``: use this already loaded one)."""
        from siamface.service import default_model_path, load

        self.config = config if config is not None else ServeConfig()
        self._lock = threading.Lock()
        self._services: dict[tuple[str, str | None, str | None], Any] = {}
        self._upload_dir: Path | None = None
        default_path = (Path(self.config.model) if self.config.model is not None
                        else default_model_path())
        if default_path is not None and self.config.model is not None:
            default_name = _safe_name(default_path.stem) or DEFAULT_MODEL_NAME
        else:
            default_name = DEFAULT_MODEL_NAME
        self.default_model = default_name
        self._default = _Model(default_name, default_path, True)
        self._admitted = 0
        self._admit_lock = threading.Lock()
        self._local = threading.local()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.inference_threads, thread_name_prefix="siamface-infer",
            initializer=self._mark_worker)
        self._closed = False
        if service is None:
            # loaded on an inference worker, where every model runs: torch's first parallel
            # work in this thread instead left the workers' OpenMP teams using 1.3 of 2
            # cores (verify 130-170 ms instead of 115-140 on 2 cores)
            path = None if default_path is None else default_path
            try:
                service = self._pool.submit(load, path,
                                            **self._load_options(default=True)).result()
            except BaseException:
                self._pool.shutdown(wait=False)
                raise
        self._services[(default_name, None, None)] = service

    # -- models -----------------------------------------------------------------------------

    def _mark_worker(self) -> None:
        self._local.worker = True

    def _catalogue(self) -> dict[str, _Model]:
        """Every model by name: the default first, then ``models_dir`` and uploads by stem."""
        found = {self._default.name: self._default}
        for folder in (self.config.models_dir, self._upload_dir):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.safetensors")):
                name = _safe_name(path.stem)
                if name and name not in found and path.is_file():
                    found[name] = _Model(name, path)
        return found

    def model_path(self, model: str | None = None) -> Path | None:
        """The checkpoint file of ``model`` (None: the default); :class:`UnknownModelError`."""
        return self._resolve(model).path

    def _resolve(self, model: str | None) -> _Model:
        if model is None or model == "":
            return self._default
        catalogue = self._catalogue()
        if model not in catalogue:
            raise UnknownModelError(str(model), list(catalogue))
        return catalogue[model]

    def service(self, model: str | None = None, *, crop: str | None = None,
                fallback_policy: str | None = None):
        """The :class:`~siamface.service.FaceService` of ``model`` (None: the default) with
        this crop mode and fallback policy (None: the model's own), loaded once and cached;
        variants of one model share its network."""
        from siamface.faces import CROP_MODES, FALLBACK_POLICIES
        from siamface.service import FaceService, load, pipeline_for

        if crop is not None and crop not in CROP_MODES:
            raise UnknownNameError("crop mode", crop, CROP_MODES)
        if fallback_policy is not None and fallback_policy not in FALLBACK_POLICIES:
            raise UnknownNameError("fallback policy", fallback_policy, FALLBACK_POLICIES)
        entry = self._resolve(model)
        key = (entry.name, crop, fallback_policy)
        with self._lock:
            if key in self._services:
                return self._services[key]
            base = self._services.get((entry.name, None, None))
            if base is None:
                base = load(entry.path, **self._load_options(default=entry.default))
                self._services[(entry.name, None, None)] = base
            if crop is None and fallback_policy is None:
                return base
            if self.config.runtime != "torch":  # no torch model to share: load the variant
                variant = load(entry.path, crop=crop, fallback_policy=fallback_policy,
                               **self._load_options(default=entry.default))
                self._services[key] = variant
                return variant
            pipeline = pipeline_for(entry.path, backbone=None if entry.path else base.info.backbone,
                                    crop=crop, fallback_policy=fallback_policy,
                                    max_pixels=self.config.max_pixels)
            variant = FaceService(base.model, base.info, pipeline, flip=base.flip,
                                  device=base.device, batch_size=base.batch_size,
                                  model_path=base.model_path)
            self._services[key] = variant
            return variant

    def _load_options(self, *, default: bool) -> dict[str, Any]:
        """How :func:`siamface.service.load` loads a model of this app. ``onnx_dir`` names
        the default model's export; other checkpoints use their own in the export cache."""
        options: dict[str, Any] = {"max_pixels": self.config.max_pixels,
                                   "device": self.config.device, "runtime": self.config.runtime}
        if self.config.runtime != "torch" and default and self.config.onnx_dir is not None:
            options["onnx_dir"] = self.config.onnx_dir
        return options

    def models(self) -> list[dict]:
        """What ``GET /models`` lists: each model's name, file, backbone, threshold and how
        it was chosen, calibration, training data and metrics summary, and the default flag."""
        from siamface.checkpoint import read_checkpoint_info

        out = []
        for entry in self._catalogue().values():
            if entry.path is None:
                info = self._services[(entry.name, None, None)].info
            else:
                try:
                    info = read_checkpoint_info(entry.path)
                except SiamfaceError as exc:  # a broken file dropped into models_dir
                    out.append({"name": entry.name, "path": str(entry.path),
                                "default": entry.default, "error": str(exc)})
                    continue
            out.append(describe_model(entry.name, entry.path, info, default=entry.default))
        return out

    def upload_dir(self) -> Path:
        """Where uploaded checkpoints go: ``models_dir``, else a private folder removed at
        :meth:`close`."""
        if self.config.models_dir is not None:
            self.config.models_dir.mkdir(parents=True, exist_ok=True)
            return self.config.models_dir
        with self._lock:
            if self._upload_dir is None:
                self._upload_dir = Path(tempfile.mkdtemp(prefix="siamface-models-"))
                os.chmod(self._upload_dir, 0o700)
            return self._upload_dir

    def forget(self, model: str) -> None:
        """Drop the cached services of ``model`` (its file was replaced)."""
        with self._lock:
            for key in [k for k in self._services if k[0] == model]:
                if model != self._default.name:
                    del self._services[key]

    # -- the inference queue ----------------------------------------------------------------

    def _admit(self) -> None:
        with self._admit_lock:
            if self._closed:
                raise Busy(self.config.queue_size, self.config.retry_after_s)
            if self._admitted >= self.config.queue_size:
                raise Busy(self.config.queue_size, self.config.retry_after_s)
            self._admitted += 1

    def _release(self, _future: Any = None) -> None:
        with self._admit_lock:
            self._admitted -= 1

    @property
    def admitted(self) -> int:
        """Inference calls running or waiting now."""
        return self._admitted

    def run(self, fn, /, *args, **kwargs):
        """``fn(*args, **kwargs)`` on an inference worker, waiting for its result; raises
        :class:`Busy` at once when ``queue_size`` calls are already admitted. Called from a
        worker itself (an action inside an action), it runs ``fn`` directly."""
        if getattr(self._local, "worker", False):
            return fn(*args, **kwargs)
        return self._submit(fn, args, kwargs).result()

    async def run_async(self, fn, /, *args, **kwargs):
        """:meth:`run` for coroutines: awaits the worker without blocking the event loop.
        A cancelled caller does not free its place until ``fn`` has finished."""
        return await asyncio.wrap_future(self._submit(fn, args, kwargs))

    def _submit(self, fn, args: tuple, kwargs: dict):
        """Admit one call (or raise :class:`Busy`) and hand it to the pool; its place is freed
        when it finishes."""
        self._admit()
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    # -- paths ------------------------------------------------------------------------------

    def check_path(self, path: str | os.PathLike) -> Path:
        """``path`` resolved (symlinks followed) when it lies under one of the
        ``allow_paths`` roots (resolved too), else :class:`PathNotAllowedError`."""
        roots = [Path(os.path.realpath(r)) for r in self.config.allow_paths]
        if not roots:
            raise PathNotAllowedError(
                "server paths are disabled: start siamface serve with --allow-path DIR to let "
                "clients name files under DIR")
        text = os.fspath(path)
        if "\x00" in text:
            raise PathNotAllowedError("the path contains a NUL byte")
        resolved = Path(os.path.realpath(text))
        for root in roots:
            with contextlib.suppress(ValueError):
                if os.path.commonpath([resolved, root]) == str(root):
                    if not resolved.exists():
                        raise PathNotAllowedError(f"{text} does not exist")
                    return resolved
        raise PathNotAllowedError(
            f"{text} is not under an allowed folder ({', '.join(str(r) for r in roots)}); "
            "start siamface serve with --allow-path for it")

    # -- life -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the workers (after the running calls) and remove uploaded checkpoints kept in
        a private folder."""
        with self._admit_lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._upload_dir is not None:
            shutil.rmtree(self._upload_dir, ignore_errors=True)


def _safe_name(stem: str) -> str | None:
    return stem if _MODEL_NAME.match(stem) else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_model(name: str, path: Path | None, info, *, default: bool = False) -> dict:
    """A model as JSON: what ``/models`` and the UI's Models tab show."""
    training = info.training or {}
    config = training.get("config") if isinstance(training.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    summary = {key: data[key] for key in ("layout", "root", "val_fraction", "include_distorted",
                                          "crop", "select") if key in data}
    stages = {}
    for stage in ("stage1", "stage2", "stage3"):
        s = config.get(stage)
        if isinstance(s, dict) and s.get("enabled"):
            stages[stage] = {k: s.get(k) for k in ("epochs", "unlocked_groups", "lr")}
    loss = config.get("loss") if isinstance(config.get("loss"), dict) else {}
    gender = training.get("gender") if isinstance(training.get("gender"), dict) else {}
    if isinstance(gender.get("data"), list):  # a gender head retrained on other data
        summary["gender data"] = "; ".join(str(d) for d in gender["data"])
    return {
        "name": name,
        "path": None if path is None else str(path),
        "default": default,
        "backbone": info.backbone,
        "threshold": float(info.threshold),
        "threshold_source": info.threshold_source,
        "calibration": dict(info.calibration or {}),
        "gender_trained": bool(info.gender_trained),
        "gender_classes": list(info.head.gender_classes),
        "stored_groups": list(info.stored_groups),
        "preprocessing": {k: info.preprocessing.get(k) for k in ("crop", "select", "flip_average",
                                                                  "input_size")
                          if k in info.preprocessing},
        "training": {"data": summary, "stages": stages,
                     "losses": {k: loss.get(k) for k in ("verification", "gender") if k in loss}},
        "metrics": dict(info.metrics or {}),
        "format_version": info.format_version,
        "size_bytes": None if path is None else path.stat().st_size,
    }

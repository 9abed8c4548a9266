"""Crop cache: face chips keyed by the source file's content hash and the preprocessing params.

Layout under the cache directory::

    <params hash>/            one namespace per set of preprocessing parameters, so changed
        params.json           parameters never serve stale crops
        index.jsonl           append-only, one JSON record per line, fsync'ed per line
        chips/ab/abcd....png  the chip of the image whose file bytes hash to abcd...
        .lock                 held (flock) by the one process that writes

A record is written only after its chip is in place (temp file in the same folder, fsync,
``os.replace``), so a crash at any moment leaves at worst an orphan chip or a torn last index
line; both are repaired when a writer next opens the cache. Images that cannot be decoded are
recorded with their error, so a resumed ``prepare`` does not retry them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from siamface._atomic import atomic_write_bytes
from siamface.errors import (
    ConfigError,
    DatasetError,
    ImageDecodeError,
    ImageTooLargeError,
    SiamfaceError,
)
from siamface.faces import FaceCrop
from siamface.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    find_images,
    image_sha256,
    load_image,
)

try:  # POSIX; elsewhere the single-writer rule is not enforced
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CACHE_FORMAT",
    "DATA_CACHE_ENV",
    "CacheBusyError",
    "CacheEntry",
    "CropCache",
    "CropLike",
    "CropPipeline",
    "FillResult",
    "PrepareReport",
    "data_cache_dir",
    "fill_cache",
    "params_hash",
    "prepare",
    "read_chip",
]

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bumped when the on-disk layout changes; part of the namespace hash."""

DATA_CACHE_ENV = "SIAMFACE_DATA_CACHE"


def data_cache_dir() -> Path:
    """Where face crops and embeddings are cached by default (biometric data: see the README):
    ``$SIAMFACE_DATA_CACHE`` if set, else ``~/.cache/siamface/faces``. Crops live under
    ``crops/``, embeddings under ``embeddings/``."""
    env = os.environ.get(DATA_CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "siamface" / "faces"


class CacheBusyError(SiamfaceError, RuntimeError):
    """Another process is writing to the same cache namespace."""


class CropLike(Protocol):
    """What the cache stores of a ``siamface.faces.FaceCrop``."""

    chip: np.ndarray
    box: Any
    landmarks: Any
    score: float | None
    detected: bool
    crop: str
    select: str
    fallback: str | None
    face_score: float | None
    no_face: str | None


class CropPipeline(Protocol):
    """The part of ``siamface.faces.FacePipeline`` the cache uses."""

    def crop(self, image: np.ndarray) -> CropLike: ...

    def params(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CacheEntry:
    """One index record: the result of cropping one image content (no pixels)."""

    key: str
    path: str
    chip: str | None = None
    detected: bool = False
    fallback: str | None = None
    crop: str | None = None
    select: str | None = None
    box: tuple[float, ...] | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None
    score: float | None = None
    error: str | None = None
    face_score: float | None = None
    no_face: str | None = None
    detected_by: str | None = None
    restored: str | None = None

    @property
    def status(self) -> str:
        """``"failed"`` (no chip: ``error`` says why), ``"absent"`` (a chip that the fallback
        policy does not take for a face: ``no_face`` says why), ``"fallback"`` (no face found, a
        fallback chip), ``"detected"``, or ``"plain"`` (no detection run, e.g. a centre crop)."""
        if self.error is not None:
            return "failed"
        if self.no_face is not None:
            return "absent"
        if self.fallback is not None:
            return "fallback"
        return "detected" if self.detected else "plain"

    def to_json(self) -> str:
        record = {"v": CACHE_FORMAT, **asdict(self)}
        return json.dumps(record, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CacheEntry:
        box, landmarks = record.get("box"), record.get("landmarks")
        return cls(
            key=str(record["key"]),
            path=str(record["path"]),
            chip=record.get("chip"),
            detected=bool(record.get("detected", False)),
            fallback=record.get("fallback"),
            crop=record.get("crop"),
            select=record.get("select"),
            box=None if box is None else tuple(float(v) for v in box),
            landmarks=None if landmarks is None else tuple(
                (float(x), float(y)) for x, y in landmarks
            ),
            score=None if record.get("score") is None else float(record["score"]),
            error=record.get("error"),
            face_score=None if record.get("face_score") is None else float(record["face_score"]),
            no_face=record.get("no_face"),
            detected_by=record.get("detected_by"),
            restored=record.get("restored"),
        )


def params_hash(params: dict[str, Any]) -> str:
    """Short stable hash of JSON-serialisable preprocessing parameters (and the format)."""
    return hashlib.sha256(_canonical_params(params).encode()).hexdigest()[:16]


def _canonical_params(params: dict[str, Any]) -> str:
    try:
        return json.dumps(
            {"cache_format": CACHE_FORMAT, "params": params},
            sort_keys=True, separators=(",", ":"), allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"preprocessing params must be JSON-serialisable (str, number, bool, None, list, "
            f"dict) to key the crop cache; got {params!r}: {exc}"
        ) from exc


_MAX_CHIP_SIDE = 1024


def read_chip(path: str | os.PathLike) -> np.ndarray:
    """A cached chip file as (S, S, 3) uint8 RGB.

    Chips are PNGs the crop cache wrote, so they skip :func:`siamface.io.load_image`'s checks
    for foreign files (a quarter of the decoding time); anything else is refused."""
    try:
        with Image.open(path, formats=("PNG",)) as img:
            if max(img.size) > _MAX_CHIP_SIDE:  # never decode a planted huge file
                raise OSError(f"{img.width}x{img.height} is larger than any chip")
            img.load()
            chip = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(str(path), f"cached chip unreadable: {exc}") from exc
    if chip.ndim != 3 or chip.shape[2] != 3 or chip.shape[0] != chip.shape[1]:
        raise ImageDecodeError(str(path), f"not a cached chip (shape {chip.shape})")
    return chip


class CropCache:
    """Crops on disk for one set of preprocessing ``params`` under ``directory``.

    Reading needs no lock; the first write takes an exclusive lock on the namespace (released
    by ``close``), so one process writes at a time and stale temp files can be swept safely.
    """

    def __init__(self, directory: str | os.PathLike, params: dict[str, Any]):
        self.directory = Path(directory)
        self.params = json.loads(_canonical_params(params))["params"]
        self.params_hash = params_hash(params)
        self.namespace = self.directory / self.params_hash
        self.index_path = self.namespace / "index.jsonl"
        self._entries: dict[str, CacheEntry] | None = None
        self._lock_fd: int | None = None
        self._index_fd: int | None = None

    # -- reading --------------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """All records, one per content key (the latest wins), in index order."""
        return list(self._index().values())

    def lookup(self, key: str) -> CacheEntry | None:
        """The record for a content hash, or None."""
        return self._index().get(key)

    def get(self, source: str | os.PathLike | bytes) -> CacheEntry | None:
        """The record for an image file (or its bytes), found by hashing its content."""
        entry = self.lookup(image_sha256(source))
        return entry if entry is not None and self.is_complete(entry) else None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._index()

    def __len__(self) -> int:
        return len(self._index())

    def is_complete(self, entry: CacheEntry) -> bool:
        """True for error records and records whose chip file exists."""
        return entry.chip is None or (self.namespace / entry.chip).is_file()

    def chip_path(self, entry: CacheEntry) -> Path:
        if entry.chip is None:
            raise ImageDecodeError(entry.path, f"no chip cached: {entry.error}")
        return self.namespace / entry.chip

    def load_chip(self, entry: CacheEntry) -> np.ndarray:
        """The chip of a record as (S, S, 3) uint8 RGB (see :func:`read_chip`)."""
        return read_chip(self.chip_path(entry))

    def reload(self) -> None:
        """Forget the in-memory index (re-read on next access), e.g. after another process
        wrote to the cache."""
        self._entries = None

    def _index(self) -> dict[str, CacheEntry]:
        if self._entries is None:
            self._entries = dict(_read_index(self.index_path))
        return self._entries

    # -- writing --------------------------------------------------------------------------

    def put(
        self,
        path: str | os.PathLike,
        crop: CropLike | None = None,
        *,
        error: str | None = None,
        key: str | None = None,
    ) -> CacheEntry:
        """Record the crop of the image at ``path`` (or the ``error`` that prevented it).

        ``key`` is the content hash of the bytes that were cropped; it is computed from
        ``path`` when omitted.
        """
        if (crop is None) == (error is None):
            raise ValueError("pass exactly one of crop and error")
        self._open_for_writing()
        key = key or image_sha256(path)
        source = os.path.abspath(os.fspath(path))
        if crop is None:
            entry = CacheEntry(key=key, path=source, error=str(error))
        else:
            chip_rel = f"chips/{key[:2]}/{key}.png"
            _write_chip_atomically(self.namespace / chip_rel, _check_chip(crop.chip, source))
            entry = _entry_from_crop(key, source, chip_rel, crop)
        self._append(entry)
        return entry

    def close(self) -> None:
        """Release the write lock and the index file."""
        for attr in ("_index_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)  # closing the lock file releases the flock
                setattr(self, attr, None)

    def __enter__(self) -> CropCache:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self.close()

    def _open_for_writing(self) -> None:
        if self._index_fd is not None:
            return
        (self.namespace / "chips").mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.namespace / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                self.close()
                raise CacheBusyError(
                    f"crop cache {self.namespace} is being written by another process; "
                    "wait for it to finish (one writer at a time)"
                ) from exc
        _write_params(self.namespace / "params.json", self.params)
        _sweep_temp_files(self.namespace)
        _repair_torn_tail(self.index_path)
        self._index_fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.reload()  # see what earlier writers finished

    def _append(self, entry: CacheEntry) -> None:
        assert self._index_fd is not None
        line = (entry.to_json() + "\n").encode()
        written = os.write(self._index_fd, line)  # one write: lines never interleave
        if written != len(line):  # pragma: no cover - disk full or similar
            raise OSError(f"short write to {self.index_path}")
        os.fsync(self._index_fd)
        self._index()[entry.key] = entry


def _read_index(path: Path) -> Iterator[tuple[str, CacheEntry]]:
    """Records of an index file, skipping a torn last line (and, with a warning, any other
    unreadable line)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, 1):
        try:
            entry = CacheEntry.from_record(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            if number != len(lines) or data.endswith(b"\n"):
                logger.warning("%s:%d: skipping unreadable record (%s)", path, number, exc)
            continue
        yield entry.key, entry


def _repair_torn_tail(path: Path) -> None:
    """Cut an incomplete last line (a crash mid-append) so the next append starts clean."""
    try:
        with open(path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                logger.warning("%s: removing a torn last record (%d bytes)", path, len(data) - keep)
                fh.truncate(keep)
                os.fsync(fh.fileno())
    except FileNotFoundError:
        pass


def _sweep_temp_files(namespace: Path) -> None:
    for temp in namespace.glob("**/.*.tmp"):
        logger.info("removing leftover temp file %s", temp)
        temp.unlink(missing_ok=True)


def _write_params(path: Path, params: dict[str, Any]) -> None:
    if path.exists():
        return
    text = json.dumps({"cache_format": CACHE_FORMAT, "params": params}, indent=2, sort_keys=True)
    atomic_write_bytes(path, text.encode() + b"\n")


def _write_chip_atomically(path: Path, chip: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(chip, mode="RGB").save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(path, buf.getvalue())  # temp file beside it, fsync, os.replace


def _check_chip(chip: Any, source: str) -> np.ndarray:
    chip = np.asarray(chip)
    if chip.dtype != np.uint8 or chip.ndim != 3 or chip.shape[2] != 3:
        raise ValueError(
            f"pipeline returned a chip of shape {chip.shape} dtype {chip.dtype} for {source}; "
            "expected (S, S, 3) uint8"
        )
    return np.ascontiguousarray(chip)


def _as_floats(value: Any, shape: tuple[int, ...]) -> Any:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64).reshape(shape)
    if array.ndim == 1:
        return tuple(float(v) for v in array)
    return tuple((float(x), float(y)) for x, y in array)


def _entry_from_crop(key: str, source: str, chip_rel: str, crop: CropLike) -> CacheEntry:
    score = getattr(crop, "score", None)
    face_score = getattr(crop, "face_score", None)
    return CacheEntry(
        key=key,
        path=source,
        chip=chip_rel,
        detected=bool(crop.detected),
        fallback=None if crop.fallback is None else str(crop.fallback),
        crop=None if getattr(crop, "crop", None) is None else str(crop.crop),
        select=None if getattr(crop, "select", None) is None else str(crop.select),
        box=_as_floats(getattr(crop, "box", None), (4,)),
        landmarks=_as_floats(getattr(crop, "landmarks", None), (5, 2)),
        score=None if score is None else float(score),
        face_score=None if face_score is None else float(face_score),
        no_face=getattr(crop, "no_face", None),
        detected_by=getattr(crop, "detected_by", None),
        restored=getattr(crop, "restored", None),
    )


# --- filling the cache -------------------------------------------------------------------------


@dataclass
class PrepareReport:
    """What ``prepare`` did. ``total`` image files were found; ``cached`` of them were already
    in the cache and ``processed`` were cropped in this run (files repeating another file's
    content are cropped once). ``detected``, ``fallback``, ``plain`` (no detection run),
    ``absent`` (no face: the fallback policy refused the crop) and ``failed`` count every file
    (see ``CacheEntry.status``);
    ``failures`` lists (path, reason) for each failed or absent one, in path order."""

    namespace: Path
    total: int = 0
    cached: int = 0
    processed: int = 0
    detected: int = 0
    fallback: int = 0
    plain: int = 0
    absent: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Result:
    path: str
    key: str | None
    crop: CropLike | None = None
    error: str | None = None
    permanent: bool = True  # False: not recorded, so a rerun retries (a bug, a size limit)


@dataclass
class FillResult:
    """What :func:`fill_cache` found: ``keys`` maps every path whose content has a record in
    the cache (a chip or a recorded error) to its content key; ``unreadable`` maps the others
    to the reason. ``cached`` paths were in the cache already, ``processed`` were cropped."""

    keys: dict[str, str]
    unreadable: dict[str, str]
    cached: int
    processed: int


def fill_cache(
    cache: CropCache,
    paths: Sequence[str | os.PathLike],
    pipeline: CropPipeline,
    *,
    factory: Callable[[], CropPipeline] | None = None,
    workers: int = 1,
    batch_size: int = 16,
    on_result: Callable[[CacheEntry | None], None] | None = None,
) -> FillResult:
    """Crop every file of ``paths`` whose content is not in ``cache`` yet and record it: the
    one routine that fills the crop cache, used by ``siamface prepare`` and by the trainer.

    Files are decoded and cropped ``batch_size`` at a time (one detector batch); with
    ``workers > 1`` each of that many spawned processes builds its own pipeline from
    ``factory`` (a picklable zero-argument callable). ``on_result`` is called once per cropped
    file with its new record (``None`` when nothing was recorded). Unreadable images are
    recorded with their error and never stop the run.
    """
    hashed, unreadable = _hash_files(paths)
    keys, todo, duplicates = _plan(hashed, cache)
    if todo:  # a complete cache is only read: no lock, so ranks of one run can share it
        cache._open_for_writing()  # lock, and see what earlier writers finished
        keys, todo, duplicates = _plan(hashed, cache)
    cached = len(keys)
    for result in _run(todo, pipeline, factory, workers, batch_size):
        entry = _record(cache, result)
        if entry is None:
            unreadable[result.path] = result.error or "unknown error"
        else:
            keys[result.path] = entry.key
        if on_result is not None:
            on_result(entry)
    for path, key in duplicates.items():
        if cache.lookup(key) is not None:
            keys[path] = key
        else:
            unreadable[path] = "same content as a file that could not be cropped"
    return FillResult(keys, unreadable, cached, len(todo))


def prepare(
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    pipeline_factory: Callable[[], CropPipeline],
    workers: int = 1,
    progress: bool = True,
) -> PrepareReport:
    """Crop every image under ``data_dir`` into the cache, skipping those already done
    (:func:`fill_cache` over :func:`siamface.io.find_images`)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    paths = find_images(data_dir)
    if not paths:
        raise DatasetError(
            f"no images under {data_dir} (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    pipeline = pipeline_factory()
    with CropCache(cache_dir, pipeline.params()) as cache:
        counts = {"detected": 0, "fallback": 0, "failed": 0}
        bar = tqdm(desc="prepare", unit="img", disable=not progress)

        def on_result(entry: CacheEntry | None) -> None:
            status = "failed" if entry is None else entry.status
            counts[status] = counts.get(status, 0) + 1
            bar.update(1)
            bar.set_postfix(counts, refresh=False)

        try:
            filled = fill_cache(cache, paths, pipeline, factory=pipeline_factory,
                                workers=workers, on_result=on_result)
        finally:
            bar.close()
        report = _tally(paths, filled, cache)
    report.seconds = time.perf_counter() - started
    return report


def _hash_files(paths: Sequence[str | os.PathLike]) -> tuple[dict[str, str], dict[str, str]]:
    """Content hash of every readable file (path -> key, in the given order) and the reason
    for each file that could not be read."""
    hashed: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for path in map(str, paths):
        try:
            hashed[path] = image_sha256(path)
        except ImageDecodeError as exc:
            unreadable[path] = exc.reason
    return hashed, unreadable


def _plan(hashed: dict[str, str], cache: CropCache
          ) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Path -> key for the files already cached, the paths to crop (one per new content, in
    order), and the files that repeat the content of a file to crop (path -> key)."""
    keys: dict[str, str] = {}
    todo: list[str] = []
    scheduled: set[str] = set()
    duplicates: dict[str, str] = {}
    for path, key in hashed.items():
        entry = cache.lookup(key)
        if entry is not None and cache.is_complete(entry):
            keys[path] = key
        elif key in scheduled:
            duplicates[path] = key
        else:
            scheduled.add(key)
            todo.append(path)
    return keys, todo, duplicates


def _tally(paths: Sequence[Path], filled: FillResult, cache: CropCache) -> PrepareReport:
    report = PrepareReport(namespace=cache.namespace, total=len(paths), cached=filled.cached,
                           processed=filled.processed)
    for path in map(str, paths):
        entry = cache.lookup(filled.keys[path]) if path in filled.keys else None
        if entry is None:
            report.failed += 1
            report.failures.append((path, filled.unreadable.get(path, "unknown error")))
            continue
        status = entry.status
        setattr(report, status, getattr(report, status) + 1)
        if status == "failed":
            report.failures.append((path, entry.error or "unknown error"))
        elif status == "absent":
            report.failures.append((path, entry.no_face or "no face"))
    return report


def _record(cache: CropCache, result: _Result) -> CacheEntry | None:
    if result.key is None or not result.permanent:
        logger.error("%s: %s", result.path, result.error)
        return None
    if result.crop is None:
        return cache.put(result.path, error=result.error, key=result.key)
    return cache.put(result.path, result.crop, key=result.key)


def _run(
    todo: Sequence[str],
    pipeline: CropPipeline,
    factory: Callable[[], CropPipeline] | None,
    workers: int,
    batch_size: int,
) -> Iterable[_Result]:
    if workers <= 1 or len(todo) <= 1 or factory is None:
        for start in range(0, len(todo), batch_size):
            yield from _crop_files(pipeline, todo[start:start + batch_size])
        return
    processes = min(workers, len(todo))
    size = max(1, min(batch_size, -(-len(todo) // (processes * 4))))  # keep workers busy
    chunks = [list(todo[i:i + size]) for i in range(0, len(todo), size)]
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with context.Pool(processes, initializer=_init_worker, initargs=(factory, processes)) as pool:
        for results in pool.imap_unordered(_work, chunks, chunksize=1):
            yield from results


_worker_pipeline: CropPipeline | None = None


def _init_worker(factory: Callable[[], CropPipeline], processes: int) -> None:
    global _worker_pipeline
    _worker_pipeline = factory()
    torch = sys.modules.get("torch")
    if torch is not None:  # share the cores instead of each worker taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))


def _work(paths: list[str]) -> list[_Result]:
    assert _worker_pipeline is not None, "worker not initialised"
    return _crop_files(_worker_pipeline, paths)


def _crop_files(pipeline: CropPipeline, paths: Sequence[str]) -> list[_Result]:
    """Read, hash and decode each file, then crop the decodable ones as one batch (one by one
    if the batch fails, to find the culprit); errors become results, never exceptions."""
    results: dict[int, _Result] = {}
    decoded: list[tuple[int, str, str, np.ndarray]] = []
    max_pixels = getattr(pipeline, "max_pixels", DEFAULT_MAX_PIXELS)
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            results[i] = _Result(path, None, error=f"cannot read file: {exc.strerror or exc}")
            continue
        key = hashlib.sha256(data).hexdigest()
        try:
            image = load_image(data if data else path, max_pixels=max_pixels)
        except ImageTooLargeError as exc:  # a higher --max-pixels may take it: not recorded
            results[i] = _Result(path, key, error=exc.reason, permanent=False)
            continue
        except ImageDecodeError as exc:
            results[i] = _Result(path, key, error=exc.reason)
            continue
        decoded.append((i, path, key, image))
    crops: list[Any] | None = None
    batch = getattr(pipeline, "crop_batch", None)
    if decoded and callable(batch):
        try:
            crops = list(batch([image for *_, image in decoded]))
        except Exception:  # noqa: BLE001 - retried one by one below, to blame one image
            crops = None
    for n, (i, path, key, image) in enumerate(decoded):
        results[i] = _crop_result(pipeline, path, key, image,
                                  None if crops is None else crops[n])
    return [results[i] for i in range(len(paths))]


def _crop_result(pipeline: CropPipeline, path: str, key: str, image: np.ndarray,
                 crop: CropLike | None) -> _Result:
    try:
        crop = _portable_crop(pipeline.crop(image) if crop is None else crop)
        _check_chip(crop.chip, path)  # a bad chip is this image's failure, not the run's
    except SiamfaceError as exc:
        reason = exc.reason if isinstance(exc, ImageDecodeError) else str(exc)
        return _Result(path, key, error=reason)
    except Exception as exc:  # noqa: BLE001 - a bug on one image must not stop the run
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        logger.debug("%s", traceback.format_exc())
        return _Result(path, key, error=f"unexpected error: {detail}", permanent=False)
    return _Result(path, key, crop=crop)


def _portable_crop(crop: CropLike) -> FaceCrop:
    """A picklable copy (the pipeline's own crop type may not pickle)."""
    return FaceCrop(
        chip=np.asarray(crop.chip),
        box=None if crop.box is None else np.asarray(crop.box),
        landmarks=None if crop.landmarks is None else np.asarray(crop.landmarks),
        score=crop.score,
        detected=crop.detected,
        crop=crop.crop,
        select=crop.select,
        fallback=crop.fallback,
        face_score=getattr(crop, "face_score", None),
        no_face=getattr(crop, "no_face", None),
        detected_by=getattr(crop, "detected_by", None),
        restored=getattr(crop, "restored", None),
    )

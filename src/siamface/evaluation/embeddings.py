"""Embeddings of many image files, each face detected once and each embedding computed once.

Faces go through the crop cache (:func:`siamface.cache.fill_cache`, keyed by file content and
every preprocessing setting); embeddings and gender logits are kept in an embedding cache keyed
by the same content hash, the face pipeline's parameters and :attr:`FaceService.embedding_id`
(the checkpoint's tensors and the metadata that shapes them, and the flip setting), so a
changed model or setting never reuses a stale entry and a recalibrated copy (a new threshold,
same weights) reuses them all. Layout::

    <root>/crops/<params hash>/...                  the crop cache
    <root>/embeddings/<model+params hash>/
        params.json                                  what the hash covers
        part-<time>-<pid>.npz                        keys, embeddings, logits (written whole,
                                                     atomically; read together)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from siamface._atomic import atomic_path, atomic_write_bytes
from siamface.cache import (
    CacheEntry,
    CropCache,
    data_cache_dir,
    fill_cache,
    params_hash,
    read_chip,
)

__all__ = ["EmbeddedImages", "EmbeddingStore", "embed_paths"]

MAX_PARTS = 16  # more part files than this are merged into one
# fewer images or faces than these: starting the processes (about 4 s) costs more than it saves
PARALLEL_DETECT_MIN = 256
PARALLEL_EMBED_MIN = 1024


@dataclass
class EmbeddedImages:
    """One row per input path. Rows without a face (unreadable, or no face under the fallback
    policy) have NaN embeddings, NaN ``gender_prob`` and ``has_face`` False; ``skipped`` says
    why, as (path, reason)."""

    paths: list[str]
    embeddings: np.ndarray  # (N, D) float32
    gender_prob: np.ndarray  # (N,) probability of the second gender class; NaN if unknown
    has_face: np.ndarray  # (N,) bool
    detected: np.ndarray  # (N,) bool
    face_score: np.ndarray  # (N,) float (NaN when not scored)
    entries: list[CacheEntry | None] = field(repr=False)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    crop_cache: CropCache | None = field(default=None, repr=False)
    chips: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    computed: int = 0  # embeddings computed in this call (the rest came from the cache)

    def chip(self, i: int) -> np.ndarray | None:
        """The crop of row ``i`` (read from the crop cache), or None when it has none."""
        if i in self.chips:
            return self.chips[i]
        entry = self.entries[i]
        if entry is None or entry.chip is None or self.crop_cache is None:
            return None
        return self.crop_cache.load_chip(entry)


class EmbeddingStore:
    """Embeddings on disk for one model and one set of preprocessing parameters."""

    def __init__(self, directory: str | os.PathLike, model_id: str, params: dict):
        description = {"model": model_id, "pipeline": params}
        self.key = params_hash(description)
        self.folder = Path(directory) / self.key
        self.description = description
        self._rows: dict[str, tuple[np.ndarray, float]] | None = None

    def rows(self) -> dict[str, tuple[np.ndarray, float]]:
        """content key -> (embedding, gender logit)."""
        if self._rows is None:
            self._rows = {}
            for part in sorted(self.folder.glob("part-*.npz")):
                with contextlib.suppress(OSError, ValueError, KeyError), \
                        np.load(part, allow_pickle=False) as data:  # a torn file is skipped
                        for key, emb, logit in zip(data["keys"], data["embeddings"],
                                                   data["logits"]):
                            self._rows[str(key)] = (emb, float(logit))
        return self._rows

    def add(self, keys: Sequence[str], embeddings: np.ndarray, logits: np.ndarray) -> None:
        """Store new rows as one part file (merging the parts when there are many)."""
        if not keys:
            return
        rows = self.rows()
        for key, emb, logit in zip(keys, embeddings, logits):
            rows[key] = (emb, float(logit))
        self.folder.mkdir(parents=True, exist_ok=True)
        params = self.folder / "params.json"
        if not params.exists():
            atomic_write_bytes(params, json.dumps(self.description, indent=1).encode())
        parts = sorted(self.folder.glob("part-*.npz"))
        if len(parts) >= MAX_PARTS:
            self._write(list(rows), np.stack([v[0] for v in rows.values()]),
                        np.array([v[1] for v in rows.values()], np.float32))
            for old in parts:
                with contextlib.suppress(OSError):
                    old.unlink()
        else:
            self._write(list(keys), embeddings, logits)

    def _write(self, keys: list[str], embeddings: np.ndarray, logits: np.ndarray) -> None:
        name = f"part-{time.time_ns()}-{os.getpid()}.npz"
        with atomic_path(self.folder / name) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype=str),
                     embeddings=np.asarray(embeddings, np.float32),
                     logits=np.asarray(logits, np.float32))


def embed_paths(service, paths: Sequence[str | os.PathLike], *,
                cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                workers: int = 1, progress: bool = True, desc: str = "faces") -> EmbeddedImages:
    """Detect, crop, embed and classify every file of ``paths`` with ``service``.

    ``cache_dir`` (default :func:`siamface.cache.data_cache_dir`) holds the crops and the
    embeddings; ``use_cache=False`` keeps nothing (a temporary crop cache, removed after).
    With ``workers > 1`` and at least :data:`PARALLEL_DETECT_MIN` paths, faces are detected
    in that many processes; with the torch runtime and at least :data:`PARALLEL_EMBED_MIN`
    faces to embed, they are embedded in that many processes of one torch thread each (15%
    faster on 2 cores than one process of two threads; the same embeddings up to float
    rounding). Unreadable files and images without a face are rows without a face, never
    errors.
    """
    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    pipeline = service.pipeline
    params = pipeline.params()
    with contextlib.ExitStack() as stack:
        if use_cache:
            root = Path(cache_dir) if cache_dir is not None else data_cache_dir()
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="siamface-")))
        crops = CropCache(root / "crops", params)
        bar = stack.enter_context(tqdm(total=len(paths), desc=f"{desc}: detect", unit="img",
                                       disable=not progress, leave=False))
        parallel = workers > 1 and len(paths) >= PARALLEL_DETECT_MIN
        factory = functools.partial(_same, pipeline) if parallel else None
        filled = fill_cache(crops, paths, pipeline, factory=factory, workers=workers,
                            on_result=lambda _entry: bar.update(1))
        crops.close()
        entries = [crops.lookup(filled.keys[p]) if p in filled.keys else None for p in paths]
        store = EmbeddingStore(root / "embeddings", service.embedding_id, params) if use_cache \
            else None
        out = _assemble(service, paths, entries, filled.unreadable, crops, store,
                        progress, desc, workers)
        if not use_cache:  # the temporary crop cache goes away: keep the chips in memory
            out.chips = {i: crops.load_chip(e) for i, e in enumerate(entries)
                         if e is not None and e.chip is not None}
            out.crop_cache = None
    return out


def _assemble(service, paths: list[str], entries: list[CacheEntry | None],
              unreadable: dict[str, str], crops: CropCache, store: EmbeddingStore | None,
              progress: bool, desc: str, workers: int = 1) -> EmbeddedImages:
    from tqdm.auto import tqdm

    n, dim = len(paths), service.embedding_dim
    embeddings = np.full((n, dim), np.nan, np.float32)
    logits = np.full(n, np.nan, np.float32)
    has_face = np.zeros(n, bool)
    skipped: list[tuple[str, str]] = []
    cached = store.rows() if store is not None else {}
    todo: dict[str, list[int]] = {}
    for i, (path, entry) in enumerate(zip(paths, entries)):
        if entry is None:
            skipped.append((path, unreadable.get(path, "unknown error")))
        elif entry.chip is None:
            skipped.append((path, entry.error or "unreadable"))
        elif entry.no_face is not None:
            skipped.append((path, entry.no_face))
        elif entry.key in cached:
            embeddings[i], logits[i] = cached[entry.key]
            has_face[i] = True
        else:
            todo.setdefault(entry.key, []).append(i)
    keys = list(todo)
    batch = max(1, service.batch_size)
    chunks = [keys[start:start + batch] for start in range(0, len(keys), batch)]
    chip_paths = [[str(crops.chip_path(entries[todo[k][0]])) for k in chunk]
                  for chunk in chunks]
    new_emb, new_logit = [], []
    with tqdm(total=len(keys), desc=f"{desc}: embed", unit="face", disable=not progress,
              leave=False) as bar:
        for chunk, (emb, logit) in zip(chunks, _embed_chunks(service, chip_paths, workers)):
            new_emb.append(emb)
            new_logit.append(logit)
            for key, e, g in zip(chunk, emb, logit):
                for i in todo[key]:
                    embeddings[i], logits[i], has_face[i] = e, g, True
            bar.update(len(chunk))
    if store is not None and keys:
        store.add(keys, np.concatenate(new_emb), np.concatenate(new_logit))
    gender_prob = np.full(n, np.nan)
    if service.gender_available:
        gender_prob = np.where(has_face, 1.0 / (1.0 + np.exp(-logits.astype(np.float64))),
                               np.nan)
    detected = np.array([bool(e is not None and e.detected) for e in entries], bool)
    face_score = np.array([np.nan if e is None or e.face_score is None else e.face_score
                           for e in entries], np.float64)
    return EmbeddedImages(paths, embeddings, gender_prob, has_face, detected, face_score,
                          entries, skipped, crops, computed=len(keys))




def _embed_chunks(service, chip_paths: list[list[str]], workers: int):
    """(embeddings, logits) of each list of cached chips, in order."""
    workers = min(workers, os.cpu_count() or 1)
    faces = sum(map(len, chip_paths))
    if workers < 2 or faces < PARALLEL_EMBED_MIN or service.runtime != "torch":
        for paths in chip_paths:
            yield service._embed_chips(np.stack([read_chip(p) for p in paths]))[1:3]
        return
    import multiprocessing

    # spawn, not fork: a forked copy of torch's OpenMP pool can hang
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_embed_worker, initargs=(service,)) as pool:
        yield from pool.imap(_embed_worker, chip_paths)


_worker_service = None


def _same(pipeline):
    """A picklable factory handing each detection worker a copy of this pipeline."""
    return pipeline


def _init_embed_worker(service) -> None:
    import torch

    global _worker_service
    torch.set_num_threads(1)  # the processes share the cores
    _worker_service = service


def _embed_worker(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    assert _worker_service is not None, "worker not initialised"
    return _worker_service._embed_chips(np.stack([read_chip(p) for p in paths]))[1:3]

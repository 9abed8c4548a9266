"""Chips of every LFW image, computed once and kept on disk for the training benchmarks and
``scripts/train_default.py`` (``.cache/lfw-chips/<pipeline hash>/``; resumable, chunked).

Run directly to fill the cache ahead of time:
    PYTHONPATH=src .venv/bin/python benchmarks/_lfw_cache.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"
DEFAULT_CACHE = REPO / ".cache"
CHUNK = 128


def pipeline_key(pipeline) -> str:
    params = json.dumps(pipeline.params(), sort_keys=True, default=str)
    return hashlib.sha256(params.encode()).hexdigest()[:16]


def _fold0_images(lfw: Path, index: dict[str, int]) -> list[int]:
    from siamface.data import read_view2

    out: list[int] = []
    for pair in read_view2(lfw):
        if pair.fold == 0:
            for name, i in ((pair.name1, pair.index1), (pair.name2, pair.index2)):
                k = index[f"{name}/{name}_{i:04d}.jpg"]
                if k not in out:
                    out.append(k)
    return out


def lfw_pipeline():
    """The pipeline of the cached chips: the default one without chip restorations, which
    never fire on clean LFW chips (noise estimate at most 1.3 against a gate of 8,
    benchmarks/bench_chip_restore.py); the benchmarks restore their distorted chips
    themselves, after distorting them."""
    from siamface.faces import FacePipeline

    return FacePipeline(crop="aligned", chip_restore=())


def available(cache: Path = DEFAULT_CACHE, lfw: Path = DEFAULT_LFW):
    """What a (possibly partial) cache holds now: (paths, chips memmap, done flags) or None."""
    folder = cache / "lfw-chips" / pipeline_key(lfw_pipeline())
    if not list(folder.glob("done*.npy")):
        return None
    paths = json.loads((folder / "paths.json").read_text())
    chips = np.memmap(folder / "chips.u8", dtype=np.uint8, mode="r",
                      shape=(len(paths), 150, 150, 3))
    return paths, chips, _load_done(folder, len(paths))


def _load_done(folder: Path, n: int) -> np.ndarray:
    """Merged progress flags of every shard (0 = not yet, 1 = detected, 2 = centre fallback)."""
    done = np.zeros(n, dtype=np.int8)
    for file in sorted(folder.glob("done*.npy")):
        try:
            done = np.maximum(done, np.load(file))
        except (OSError, ValueError):  # a shard being rewritten right now
            continue
    return done


def lfw_chips(lfw: Path = DEFAULT_LFW, cache: Path = DEFAULT_CACHE, *, verbose: bool = True,
              shard: int = 0, shards: int = 1) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(relative paths, chips (N,150,150,3) uint8 memmap, detected (N,) bool) for all LFW.
    ``shard``/``shards``: this process fills every ``shards``-th missing image (processes
    write disjoint rows and their own progress file)."""
    pipeline = lfw_pipeline()
    folder = cache / "lfw-chips" / pipeline_key(pipeline)
    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted(str(p.relative_to(lfw / "images")) for p in (lfw / "images").glob("*/*.jpg"))
    n = len(paths)
    (folder / "params.json").write_text(json.dumps(pipeline.params(), default=str, indent=1))
    (folder / "paths.json").write_text(json.dumps(paths))
    chips_file = folder / "chips.u8"
    if not chips_file.exists():
        with open(chips_file, "ab") as fh:
            fh.truncate(n * 150 * 150 * 3)
    chips = np.memmap(chips_file, dtype=np.uint8, mode="r+", shape=(n, 150, 150, 3))
    done_file = folder / f"done-{shard}.npy"
    done = _load_done(folder, n)
    # done: 0 = not yet, 1 = detected, 2 = centre fallback
    todo = np.flatnonzero(done == 0)
    # the first View 2 fold's pair images first, then the rest in a fixed random order, so a
    # partly filled cache already serves a one-fold benchmark and a training subset
    first = _fold0_images(lfw, {p: i for i, p in enumerate(paths)})
    rest = np.random.default_rng(0).permutation(todo)
    todo = np.concatenate([[i for i in first if done[i] == 0],
                           [i for i in rest if i not in set(first)]]).astype(np.int64)
    todo = todo[shard::shards]
    start = time.time()
    for k in range(0, len(todo), CHUNK):
        idx = todo[k:k + CHUNK]
        crops = pipeline.crop_batch([lfw / "images" / paths[i] for i in idx])
        for i, c in zip(idx, crops):
            chips[i] = c.chip
            done[i] = 1 if c.detected else 2
        chips.flush()
        tmp = done_file.with_name(f".{done_file.name}")
        np.save(tmp, done)
        tmp.replace(done_file)
        if verbose:
            rate = (k + len(idx)) / (time.time() - start)
            print(f"lfw chips: {int((done > 0).sum())}/{n} ({rate:.1f} img/s)", file=sys.stderr,
                  flush=True)
    chips = np.memmap(chips_file, dtype=np.uint8, mode="r", shape=(n, 150, 150, 3))
    done = _load_done(folder, n)
    return paths, chips, done > 0


def lfw_records(lfw: Path = DEFAULT_LFW, cache: Path = DEFAULT_CACHE, *,
                allow_partial: bool = False):
    """(FaceDataset of LFW, chips memmap in dataset order, available mask). Without
    ``allow_partial`` every chip must be cached (else the cache is filled first)."""
    from siamface.data import load_lfw

    dataset = load_lfw(lfw)
    state = available(cache, lfw)
    if state is None or (not allow_partial and not (state[2] > 0).all()):
        lfw_chips(lfw, cache)
        state = available(cache, lfw)
    paths, chips, done = state
    index = {p: i for i, p in enumerate(paths)}
    order = np.array([index[f"{r.person_id}/{r.path.name}"] for r in dataset], dtype=np.int64)
    if not np.array_equal(order, np.arange(len(order))):
        raise RuntimeError("LFW dataset order differs from the chip cache order")
    return dataset, chips, done > 0


def _save_progress(acts: np.ndarray, done: np.ndarray, done_file: Path, label: str | None,
                   count: int, total: int, start: float) -> None:
    """Flush the activations, then replace the done flags atomically (a stop loses no row)."""
    acts.flush()
    tmp = done_file.with_name(f".{done_file.name}")
    np.save(tmp, done.astype(np.int8))
    tmp.replace(done_file)
    if label:
        rate = count / (time.time() - start)
        print(f"{label}: {count}/{total} ({rate:.1f} img/s)", file=sys.stderr, flush=True)


def _activation_store(model, boundary: int, root: Path, suffix: str, n: int, views: int):
    """(runner, folder, writable float32 memmap (n, views, ...)) for trunk activations after
    ``boundary`` groups, in a folder of ``root`` named by the pipeline, the weights, the
    boundary and ``suffix``."""
    import torch

    from siamface.train.features import GroupRunner

    runner = GroupRunner(model.backbone)
    size = model.backbone.config.input_size
    with torch.inference_mode():
        shape = tuple(runner.run(torch.zeros(1, 3, size, size), 0, boundary).shape[1:])
    sha = (model.backbone.config.sha256 or "none")[:12]
    folder = root / f"{pipeline_key(lfw_pipeline())}-{sha}-b{boundary}{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "acts.f32"
    if not file.exists():
        with open(file, "ab") as fh:
            fh.truncate(n * views * int(np.prod(shape)) * 4)
    return runner, folder, np.memmap(file, dtype=np.float32, mode="r+", shape=(n, views, *shape))


def trunk_cache(model, chips: np.ndarray, mask: np.ndarray, boundary: int,
                cache: Path = DEFAULT_CACHE, batch_size: int = 64, verbose: bool = True,
                shard: int = 0, shards: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Trunk activations after ``boundary`` groups for views (orig, flip) of every chip in
    ``mask``: a float32 memmap (N, 2, ...) on disk, filled incrementally, and its done mask.
    ``shard``/``shards`` split the missing rows between processes."""
    from siamface.train.features import trunk_activations

    runner, folder, acts = _activation_store(model, boundary, cache / "lfw-trunk", "", len(chips),
                                             2)
    n, file, shape = len(chips), Path(acts.filename), acts.shape[2:]
    done_file = folder / f"done-{shard}.npy"
    done = _load_done(folder, n) > 0
    todo = np.flatnonzero(mask & ~done)[shard::shards]
    start = time.time()
    for k in range(0, len(todo), 512):
        idx = todo[k:k + 512]
        out = trunk_activations(model.backbone, runner, np.asarray(chips[idx]), boundary,
                                views=("orig", "flip"), batch_size=batch_size)
        acts[idx] = out.numpy()
        done[idx] = True
        _save_progress(acts, done, done_file, "trunk cache" if verbose else None,
                       k + len(idx), len(todo), start)
    return (np.memmap(file, dtype=np.float32, mode="r", shape=(n, 2, *shape)),
            _load_done(folder, n) > 0)


def view_cache(model, chips: np.ndarray, mask: np.ndarray, boundary: int, view, n_views: int,
               tag: str, cache: Path = DEFAULT_CACHE, seed: int = 0, batch_size: int = 64,
               verbose: bool = True) -> np.ndarray:
    """Trunk activations after ``boundary`` groups of ``n_views`` calls of ``view(chip, seed)``
    per chip in ``mask`` (the trainer's ``augment_views``, seeded per image index as
    ``siamface.train.features.make_views`` seeds them): a float32 memmap (N, n_views, ...)
    under a folder named by ``tag`` (which must name the view function), filled
    incrementally."""
    import torch

    from siamface.train.features import view_seed

    runner, folder, acts = _activation_store(model, boundary, cache / "lfw-views",
                                             f"-{tag}-v{n_views}-s{seed}", len(chips), n_views)
    n, file, shape = len(chips), Path(acts.filename), acts.shape[2:]
    done_file = folder / "done-0.npy"
    done = _load_done(folder, n) > 0
    todo = np.flatnonzero(mask & ~done)
    start = time.time()
    with torch.inference_mode():
        for k in range(0, len(todo), batch_size):
            idx = todo[k:k + batch_size]
            for v in range(n_views):
                batch = np.stack([view(np.asarray(chips[i]), view_seed(seed, i, v))
                                  for i in idx])
                acts[idx, v] = runner.run(model.backbone.preprocess(batch), 0,
                                          boundary).numpy()
            done[idx] = True
            if (k // batch_size) % 8 == 7 or k + batch_size >= len(todo):
                _save_progress(acts, done, done_file, f"view cache {tag}" if verbose else None,
                               k + len(idx), len(todo), start)
    return np.memmap(file, dtype=np.float32, mode="r", shape=(n, n_views, *shape))


@dataclass
class LfwTraining:
    """What both the trained benchmark and the default-model script start from: LFW in
    dataset order, its chips, a fresh model for ``config``, the stages' boundaries and the
    trunk cache at the lowest one (``available``: images with a chip and activations)."""

    dataset: object
    chips: np.ndarray
    model: object
    runner: object
    boundaries: list[int]
    low: int
    store: np.ndarray
    available: np.ndarray
    extra: np.ndarray | None = None  # the config's augment_views, for training rows only


def restore_tag(config) -> str:
    """What names the config's chip restorations in a cache of distorted views ("" for none:
    the names of the caches made before they existed)."""
    from siamface.chip_restore import VERSION

    names = tuple(config.data.chip_restore)
    return f"-restore{VERSION}-{'+'.join(names)}" if names else ""


def lfw_training(config, lfw: Path = DEFAULT_LFW, cache: Path = DEFAULT_CACHE, *,
                 allow_partial: bool = False) -> LfwTraining:
    from siamface.train.features import GroupRunner
    from siamface.train.run import build_model

    dataset, chips, avail = lfw_records(lfw, cache, allow_partial=allow_partial)
    model = build_model(config)
    runner = GroupRunner(model.backbone)
    boundaries = [runner.boundary(s.unlocked_groups) for _, s in config.stages()]
    low = min(boundaries)
    store, done = trunk_cache(model, chips, avail, low, cache)
    extra = None
    if config.data.augment_views:
        from siamface.train.run import augment_function

        tag = config.data.augment
        if tag == "distortions":
            tag += "-" + "".join(map(str, config.data.distortion_severities))
        tag += restore_tag(config)
        extra = view_cache(model, chips, avail & done, low,
                           augment_function(config, model.backbone.config.input_size),
                           config.data.augment_views, tag, cache, seed=config.run.seed)
    return LfwTraining(dataset, chips, model, runner, boundaries, low, store, avail & done,
                       extra)


def stage_activations(runner, store: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                      low: int, boundaries: list[int], val_views: int,
                      extra: np.ndarray | None = None, config=None, chips=None
                      ) -> dict[int, tuple[object, object]]:
    """The trainer's ``activations`` argument from the trunk cache: training rows with every
    cached view (and the ``extra`` views of :func:`view_cache` after them) and validation
    rows with their first ``val_views`` views, moved up from ``low`` to each stage's
    boundary. With ``config.data.val_distorted`` the validation rows are followed by those of
    the images' distorted copies (computed here from ``chips``), as the trainer expects."""
    import torch

    from siamface.train.features import advance

    rows = np.asarray(store[train_idx])
    if extra is not None:
        rows = np.concatenate([rows, np.asarray(extra[train_idx])], axis=1)
    train_low = torch.from_numpy(rows)
    val_low = torch.from_numpy(np.asarray(store[val_idx][:, :val_views]))
    if config is not None and config.data.val_distorted:
        from siamface.train.features import trunk_activations
        from siamface.train.run import distorted_validation_chips

        copies = distorted_validation_chips(config, np.asarray(chips[val_idx]))
        views = ("orig", "flip")[:val_views]
        val_low = torch.cat([val_low, trunk_activations(runner.backbone, runner, copies, low,
                                                        views=views)])
    return {b: (advance(runner, train_low, low, b), advance(runner, val_low, low, b))
            for b in sorted(set(boundaries))}


def _fill_trunk(shard: int, shards: int, lfw: Path, cache: Path) -> None:
    from siamface.train import load_config
    from siamface.train.features import GroupRunner
    from siamface.train.run import build_model

    _, chips, avail = lfw_records(lfw, cache, allow_partial=True)
    model = build_model(load_config(None))
    boundary = GroupRunner(model.backbone).boundary(2)
    trunk_cache(model, chips, avail, boundary, cache, shard=shard, shards=shards)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--shard", default="0/1", help="i/n: fill every n-th missing image")
    parser.add_argument("--trunk", action="store_true",
                        help="fill the stage-2 trunk activation cache of the cached chips")
    args = parser.parse_args()
    shard, shards = (int(v) for v in args.shard.split("/"))
    if args.trunk:
        _fill_trunk(shard, shards, args.lfw, args.cache)
        sys.exit(0)
    paths, chips, detected = lfw_chips(args.lfw, args.cache, shard=shard, shards=shards)
    print(f"{int(detected.sum())}/{len(paths)} chips cached")

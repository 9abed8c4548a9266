"""siamface.cache: crops keyed by content and params, crash-safe index, resumable prepare.

The face pipeline is replaced by ``CenterCropPipeline``, a stand-in with the same interface as
``siamface.faces.FacePipeline`` (``crop(image) -> FaceCrop``, ``params() -> dict``), so these
tests do not depend on the detector. ``test_cli_prepare.py`` imports it too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamface.cache import (
    CacheBusyError,
    CacheEntry,
    CropCache,
    params_hash,
    prepare,
)
from siamface.errors import ConfigError, DatasetError, ImageDecodeError
from siamface.faces import FaceCrop as StandInCrop
from siamface.io import find_images, load_image


class CenterCropPipeline:
    """Stand-in face pipeline: the centre square resized to ``chip_size``. Images whose mean
    brightness is below 60 count as 'no face found' and take the fallback path."""

    def __init__(self, crop: str = "center", select: str = "largest", chip_size: int = 32,
                 delay: float = 0.0):
        self.crop_mode, self.select, self.chip_size, self.delay = crop, select, chip_size, delay

    def params(self) -> dict:
        return {"crop": self.crop_mode, "select": self.select, "chip_size": self.chip_size}

    def crop(self, image: np.ndarray) -> StandInCrop:
        if self.delay:
            time.sleep(self.delay)
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        chip = Image.fromarray(image[top : top + side, left : left + side]).resize(
            (self.chip_size, self.chip_size), Image.Resampling.BILINEAR
        )
        detected = image.mean() >= 60
        box = np.array([left, top, left + side, top + side], np.float32)
        landmarks = box[:2] + np.array(
            [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32
        ) * side
        return StandInCrop(
            chip=np.asarray(chip), box=box if detected else None,
            landmarks=landmarks if detected else None, score=0.987654321 if detected else None,
            detected=detected, crop=self.crop_mode, select=self.select,
            fallback=None if detected else "center",
        )


def slow_center_crop(crop: str = "center", select: str = "largest") -> CenterCropPipeline:
    """Factory for the SIGKILL test: 0.1 s per image."""
    return CenterCropPipeline(crop=crop, select=select, delay=0.1)


def make_images(folder: Path, count: int, *, seed: int = 0) -> list[Path]:
    """``count`` small distinct images in nested folders; every fifth one is dark (fallback)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        h, w = int(rng.integers(40, 80)), int(rng.integers(40, 80))
        low, high = (0, 80) if i % 5 == 4 else (60, 256)
        pixels = rng.integers(low, high, (h, w, 3), dtype=np.uint8)
        path = folder / f"person_{i % 4}" / f"img_{i:03d}.{('png', 'jpg', 'bmp')[i % 3]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def add_bad_images(folder: Path) -> dict[str, str]:
    """Unreadable files, with a fragment of the reason each should be reported with."""
    bad = folder / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("not a photo")
    good = folder / "person_0" / "img_000.png"
    (bad / "cut.png").write_bytes(good.read_bytes()[:200])
    return {
        str(bad / "empty.jpg"): "empty",
        str(bad / "notes.jpg"): "not an image",
        str(bad / "cut.png"): "truncated",
    }


def cache_files_ok(namespace: Path) -> None:
    """No temp files, every chip decodes, every index line is whole JSON."""
    assert not [p for p in namespace.rglob("*") if p.name.endswith(".tmp")]
    for chip in namespace.glob("chips/*/*.png"):
        with Image.open(chip) as img:
            img.load()
    data = (namespace / "index.jsonl").read_bytes()
    assert data.endswith(b"\n")
    for line in data.splitlines():
        json.loads(line)


# --- CropCache ---------------------------------------------------------------------------------


def test_put_get_roundtrip(tmp_path):
    images = make_images(tmp_path / "data", 2)
    pipeline = CenterCropPipeline()
    with CropCache(tmp_path / "cache", pipeline.params()) as cache:
        crop = pipeline.crop(load_image(images[0]))
        entry = cache.put(images[0], crop)
        assert entry.detected and entry.status == "detected"
        assert cache.get(images[0]) == entry
        assert cache.get(images[1]) is None
        assert cache.get(images[0].read_bytes()) == entry
        np.testing.assert_array_equal(cache.load_chip(entry), crop.chip)

    reopened = CropCache(tmp_path / "cache", pipeline.params())
    (same,) = reopened.entries()
    assert same == entry
    assert same.box == tuple(float(v) for v in crop.box)
    assert same.landmarks[4] == tuple(float(v) for v in crop.landmarks[4])
    assert same.score == 0.987654321
    assert same.path == os.path.abspath(images[0])


def test_key_is_content_not_path(tmp_path):
    (image,) = make_images(tmp_path / "data", 1)
    pipeline = CenterCropPipeline()
    with CropCache(tmp_path / "cache", pipeline.params()) as cache:
        entry = cache.put(image, pipeline.crop(load_image(image)))
        moved = tmp_path / "elsewhere.png"
        moved.write_bytes(image.read_bytes())
        assert cache.get(moved) == entry
        Image.fromarray(load_image(image)[::-1]).save(image)
        assert cache.get(image) is None  # same path, new content: a miss


def test_params_change_namespace(tmp_path):
    (image,) = make_images(tmp_path / "data", 1)
    a, b = CenterCropPipeline(chip_size=32), CenterCropPipeline(chip_size=48)
    assert params_hash(a.params()) != params_hash(b.params())
    assert params_hash({"x": 1, "y": [1, 2]}) == params_hash({"y": (1, 2), "x": 1})
    with CropCache(tmp_path / "cache", a.params()) as cache:
        cache.put(image, a.crop(load_image(image)))
    other = CropCache(tmp_path / "cache", b.params())
    assert other.get(image) is None and len(other) == 0
    assert other.namespace != CropCache(tmp_path / "cache", a.params()).namespace
    saved = json.loads((tmp_path / "cache" / params_hash(a.params()) / "params.json").read_text())
    assert saved["params"] == a.params()


def test_params_must_be_json(tmp_path):
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        CropCache(tmp_path, {"template": np.zeros(3)})


def test_error_entries(tmp_path):
    (image,) = make_images(tmp_path / "data", 1)
    with CropCache(tmp_path / "cache", {}) as cache:
        entry = cache.put(image, error="cannot decode: broken")
        assert entry.status == "failed" and entry.chip is None
        assert cache.get(image) == entry
        with pytest.raises(ValueError, match="exactly one"):
            cache.put(image)


def test_torn_last_line_is_tolerated_and_repaired(tmp_path):
    images = make_images(tmp_path / "data", 3)
    pipeline = CenterCropPipeline()
    with CropCache(tmp_path / "cache", pipeline.params()) as cache:
        first = cache.put(images[0], pipeline.crop(load_image(images[0])))
        second = cache.put(images[1], pipeline.crop(load_image(images[1])))
    index = cache.index_path
    whole = index.read_bytes()
    index.write_bytes(whole[: len(whole) - 25])  # crash in the middle of the second line
    reader = CropCache(tmp_path / "cache", pipeline.params())
    assert reader.entries() == [first]
    with reader:  # the next writer cuts the torn tail before appending
        third = reader.put(images[2], pipeline.crop(load_image(images[2])))
    assert CropCache(tmp_path / "cache", pipeline.params()).entries() == [first, third]
    assert second.key not in reader
    cache_files_ok(reader.namespace)


def test_leftover_temp_files_are_swept(tmp_path):
    images = make_images(tmp_path / "data", 1)
    with CropCache(tmp_path / "cache", {}) as cache:
        cache.put(images[0], error="x")
        leftover = cache.namespace / "chips" / "ab" / ".abcd.png.999999.tmp"
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"half a png")
    with CropCache(tmp_path / "cache", {}) as cache:
        cache.put(images[0], error="y")
    assert not leftover.exists()


def test_missing_chip_is_a_miss(tmp_path):
    (image,) = make_images(tmp_path / "data", 1)
    pipeline = CenterCropPipeline()
    with CropCache(tmp_path / "cache", pipeline.params()) as cache:
        entry = cache.put(image, pipeline.crop(load_image(image)))
        cache.chip_path(entry).unlink()
        assert cache.get(image) is None


@pytest.mark.parametrize("planted", ["garbage", "jpeg", "huge", "grey"])
def test_tampered_chip_is_refused_with_its_path(tmp_path, planted):
    (image,) = make_images(tmp_path / "data", 1)
    pipeline = CenterCropPipeline()
    with CropCache(tmp_path / "cache", pipeline.params()) as cache:
        entry = cache.put(image, pipeline.crop(load_image(image)))
        chip = cache.chip_path(entry)
        if planted == "garbage":
            chip.write_bytes(b"\x89PNG not really")
        elif planted == "jpeg":
            Image.new("RGB", (150, 150)).save(chip, format="JPEG")
        elif planted == "huge":
            Image.new("RGB", (4000, 4000)).save(chip, format="PNG")
        else:
            Image.new("L", (150, 150)).save(chip, format="PNG")
        with pytest.raises(ImageDecodeError, match="cannot read image .*png"):
            cache.load_chip(entry)


def test_one_writer_at_a_time(tmp_path):
    (image,) = make_images(tmp_path / "data", 1)
    with CropCache(tmp_path / "cache", {}) as first:
        first.put(image, error="x")
        second = CropCache(tmp_path / "cache", {})
        assert second.get(image) is not None  # reading needs no lock
        with pytest.raises(CacheBusyError, match="another process"):
            second.put(image, error="y")
    with CropCache(tmp_path / "cache", {}) as third:  # released on close
        third.put(image, error="z")


def test_entry_json_roundtrip():
    entry = CacheEntry(key="ab" * 32, path="/x.jpg", chip="chips/ab/x.png", detected=True,
                       crop="aligned", select="largest", box=(1.0, 2.0, 3.0, 4.5),
                       landmarks=((1.0, 2.0),) * 5, score=0.5)
    assert CacheEntry.from_record(json.loads(entry.to_json())) == entry


# --- prepare -----------------------------------------------------------------------------------


def test_find_images(tmp_path):
    make_images(tmp_path, 6)
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "UPPER.JPG").write_bytes(b"")
    found = find_images(tmp_path)
    assert len(found) == 7 and found == sorted(found)
    with pytest.raises(DatasetError, match="does not exist"):
        find_images(tmp_path / "nope")


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_good_and_bad(tmp_path, workers):
    data = tmp_path / "data"
    make_images(data, 10)
    bad = add_bad_images(data)
    report = prepare(data, tmp_path / "cache", CenterCropPipeline, workers=workers,
                     progress=False)
    assert (report.total, report.processed, report.cached) == (13, 13, 0)
    assert (report.detected, report.fallback, report.failed) == (8, 2, 3)
    assert [path for path, _ in report.failures] == sorted(bad)
    for path, reason in report.failures:
        assert bad[path] in reason
    cache_files_ok(report.namespace)

    again = prepare(data, tmp_path / "cache", CenterCropPipeline, workers=workers,
                    progress=False)
    assert (again.processed, again.cached) == (0, 13)
    assert (again.detected, again.fallback, again.failures) == (8, 2, report.failures)


def test_prepare_resumes_and_handles_duplicates(tmp_path):
    data = tmp_path / "data"
    images = make_images(data, 6)
    (data / "copy.png").write_bytes(images[0].read_bytes())
    cache = CropCache(tmp_path / "cache", CenterCropPipeline().params())
    with cache:
        cache.put(images[1], CenterCropPipeline().crop(load_image(images[1])))
    report = prepare(data, tmp_path / "cache", CenterCropPipeline, progress=False)
    assert (report.total, report.cached, report.processed) == (7, 1, 5)
    assert report.detected + report.fallback == 7
    assert len(CropCache(tmp_path / "cache", CenterCropPipeline().params())) == 6


def test_prepare_unexpected_error_is_reported_not_recorded(tmp_path):
    data = tmp_path / "data"
    make_images(data, 3)

    class Broken(CenterCropPipeline):
        def crop(self, image):
            raise RuntimeError("bug in the pipeline")

    report = prepare(data, tmp_path / "cache", Broken, progress=False)
    assert report.failed == 3
    assert all("bug in the pipeline" in reason for _, reason in report.failures)
    assert len(CropCache(tmp_path / "cache", Broken().params())) == 0  # retried next time


def test_prepare_bad_chip_fails_that_image_only(tmp_path):
    data = tmp_path / "data"
    make_images(data, 3)

    class BadChip(CenterCropPipeline):
        def crop(self, image):
            good = super().crop(image)
            return dataclasses.replace(good, chip=good.chip[:, :, 0])  # grey, not RGB

    report = prepare(data, tmp_path / "cache", BadChip, progress=False)
    assert report.failed == 3
    assert all("expected (S, S, 3) uint8" in reason for _, reason in report.failures)


def test_prepare_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        prepare(tmp_path, tmp_path / "cache", CenterCropPipeline, progress=False)


def test_prepare_progress_bar(tmp_path, capsys):
    data = tmp_path / "data"
    make_images(data, 5)
    prepare(data, tmp_path / "cache", functools.partial(CenterCropPipeline, chip_size=16),
            progress=True)
    err = capsys.readouterr().err
    assert "prepare" in err and "detected=4" in err and "fallback=1" in err and "failed=0" in err

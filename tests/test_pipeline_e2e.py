"""The path users run, end to end on real LFW images: ``siamface prepare`` with the real MTCNN
(aligned chips), ``siamface train`` with the default ``crop: aligned`` reading that cache
without detecting again (both stages), then ``siamface verify`` with the new checkpoint; and a
``prepare --backbone facenet`` cache that a FaceNet training run's pipeline finds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from siamface.cli.main import main

PEOPLE_PER_GENDER = 20
IMAGES_PER_PERSON = 4


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, then the previous count: on a 2-core machine shared with
    other test runs, MTCNN and the trunk run about twice as fast on one thread as on two
    contended ones (the results do not depend on it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _genders(lfw: Path) -> dict[str, str]:
    """Person -> "male"/"female" from LFW's per-image gender lists."""
    out: dict[str, str] = {}
    for gender in ("male", "female"):
        for line in (lfw / f"{gender}_names.txt").read_text().split():
            out.setdefault(Path(line).stem.rsplit("_", 1)[0], gender)
    return out


def _lfw_subset(lfw: Path, root: Path, per_gender: int = PEOPLE_PER_GENDER,
                per_person: int = IMAGES_PER_PERSON) -> dict[str, str]:
    """``root/<person>/<image>.jpg`` (the ``folders`` layout) for the first ``per_gender``
    women and men (sorted names) with ``per_person``+ LFW images, and ``root/genders.csv``."""
    genders = _genders(lfw)
    chosen: dict[str, str] = {}
    counts = {"male": 0, "female": 0}
    for person_dir in sorted((lfw / "images").iterdir()):
        gender = genders.get(person_dir.name)
        if gender is None or counts[gender] >= per_gender:
            continue
        images = sorted(person_dir.glob("*.jpg"))
        if len(images) < per_person:
            continue
        (root / person_dir.name).mkdir(parents=True)
        for image in images[:per_person]:
            shutil.copyfile(image, root / person_dir.name / image.name)
        chosen[person_dir.name] = gender
        counts[gender] += 1
        if min(counts.values()) >= per_gender:
            break
    assert counts == {"male": per_gender, "female": per_gender}
    lines = ["person,gender"] + [f"{p},{g}" for p, g in sorted(chosen.items())]
    (root / "genders.csv").write_text("\n".join(lines) + "\n")
    return chosen


def _namespaces(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir())


def _index_lines(namespace: Path) -> int:
    return (namespace / "index.jsonl").read_bytes().count(b"\n")


class _DetectionCounter:
    """Counts (and lets through) calls of the face pipeline's cropping methods."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        from siamface.faces import FacePipeline

        self.calls: list[str] = []
        for name in ("crop", "crop_batch", "crop_all"):
            original = getattr(FacePipeline, name)
            monkeypatch.setattr(FacePipeline, name, self._counted(name, original))

    def _counted(self, name, original):
        def wrapper(pipeline, *args, **kwargs):
            self.calls.append(name)
            return original(pipeline, *args, **kwargs)
        return wrapper


def _verify(a: Path, b: Path, model: Path, capsys) -> tuple[int, dict]:
    rc = main(["verify", str(a), str(b), "--model", str(model), "--json"])
    captured = capsys.readouterr()
    assert rc in (0, 1), captured.err
    return rc, json.loads(captured.out)


@pytest.mark.slow
@pytest.mark.lfw
@pytest.mark.usefixtures("one_torch_thread")
def test_prepare_train_verify_with_the_real_detector(lfw_dir, tmp_path, capsys, monkeypatch):
    from siamface.checkpoint import read_checkpoint_info

    data, cache, run = tmp_path / "people", tmp_path / "crops", tmp_path / "run"
    people = _lfw_subset(lfw_dir, data)
    n_images = len(people) * IMAGES_PER_PERSON

    # (a) plain prepare: the shipped model's pipeline, real MTCNN, aligned chips
    rc = main(["prepare", str(data), "--cache", str(cache), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"prepared {n_images} images" in out
    assert f"{n_images} cropped now, 0 already cached" in out
    assert f"{n_images} detected, 0 fallback, 0 failed" in out
    (namespace,) = _namespaces(cache)
    params = json.loads((namespace / "params.json").read_text())["params"]
    assert params["crop"] == "aligned" and params["chip_size"] == 150
    assert params["detector"]["name"] == "MTCNN"
    prepared_lines = _index_lines(namespace)
    assert prepared_lines == n_images

    # (b) train with the default crop (aligned), both stages, on the prepared cache
    config = tmp_path / "e2e.yaml"
    config.write_text(
        "data:\n"
        f"  root: {data}\n"
        "  layout: folders\n"
        f"  cache_dir: {cache}\n"
        "stage1: {epochs: 1, patience: 1}\n"
        "stage2: {epochs: 1, patience: 1}\n"
        "run:\n"
        f"  out_dir: {run}\n"
        "  batch_size: 16\n"
        "  pairs_per_epoch: 32\n"
        "  max_steps_per_epoch: 2\n"
        "  val_pairs: 64\n"
        "  feature_batch_size: 32\n"
        "  progress: false\n"
    )
    with monkeypatch.context() as patch:
        counter = _DetectionCounter(patch)
        rc = main(["train", "--config", str(config)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert counter.calls == [], "train cropped again instead of reading the prepared cache"
    assert _namespaces(cache) == [namespace]  # prepare and train agree on the namespace
    assert _index_lines(namespace) == prepared_lines
    model = run / "model.safetensors"
    assert model.is_file()
    assert "validation: verification accuracy" in captured.out
    info = read_checkpoint_info(model)
    assert info.preprocessing["crop"] == "aligned"
    assert info.gender_trained and info.threshold_source.startswith("youden")
    history = json.loads((run / "metrics.json").read_text())
    assert sorted({row["stage"] for row in history}) == ["stage1", "stage2"]
    assert info.stored_groups == ["level256b", "fc"]  # stage 2 unlocked and trained them

    # (c) verify with the new checkpoint: a genuine pair and an impostor pair
    women = sorted(p for p, g in people.items() if g == "female")
    men = sorted(p for p, g in people.items() if g == "male")
    same = sorted((data / men[0]).glob("*.jpg"))[:2]
    other = [min((data / women[0]).glob("*.jpg")), same[0]]
    rc_same, genuine = _verify(*same, model, capsys)
    rc_other, impostor = _verify(*other, model, capsys)
    for rc, result in ((rc_same, genuine), (rc_other, impostor)):
        assert rc == (0 if result["is_match"] else 1)
        assert result["threshold"] == pytest.approx(info.threshold)
        assert result["threshold_source"] == info.threshold_source
        assert result["a"]["detected"] and result["b"]["detected"]
        assert result["a"]["crop"] == "aligned"
        assert result["a"]["gender"] is not None
        assert result["is_match"] == (result["distance"] <= result["threshold"])
    assert genuine["distance"] < impostor["distance"]
    assert (rc_same, rc_other) == (0, 1), (genuine["distance"], impostor["distance"],
                                           info.threshold)


@pytest.mark.lfw
@pytest.mark.usefixtures("one_torch_thread")
def test_facenet_sized_prepare_is_found_by_a_facenet_run(lfw_dir, tmp_path, capsys):
    from siamface.backbones import get_pretrained_config
    from siamface.cache import CropCache, params_hash
    from siamface.data import open_dataset
    from siamface.detect import MTCNN
    from siamface.faces import FacePipeline
    from siamface.service import pipeline_for
    from siamface.train.data import load_chips

    data, cache = tmp_path / "people", tmp_path / "crops"
    _lfw_subset(lfw_dir, data, per_gender=1, per_person=3)
    n_images = 6
    rc = main(["prepare", str(data), "--backbone", "facenet", "--cache", str(cache),
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"{n_images} detected, 0 fallback, 0 failed" in out
    (namespace,) = _namespaces(cache)
    chips = sorted(namespace.glob("chips/*/*.png"))
    assert len(chips) == n_images
    from PIL import Image

    for chip in chips:
        with Image.open(chip) as img:
            assert img.size == (160, 160)  # FaceNet's input, not dlib's 150

    # a FaceNet run's pipeline (as train() builds it), with a detector that must not be used
    detector = MTCNN()

    def no_detection(*_args, **_kwargs):
        raise AssertionError("the FaceNet-sized cache was not found: detecting again")

    detector.detect = no_detection
    detector.detect_batch = no_detection
    pipeline = FacePipeline.for_backbone(get_pretrained_config("facenet"), crop="aligned",
                                         select="central", detector=detector)
    assert CropCache(cache, pipeline.params()).namespace == namespace
    dataset = open_dataset(data, "folders")
    assert len(dataset) == n_images
    stacked, kept, skipped = load_chips(dataset, pipeline, cache_dir=str(cache))
    assert skipped == []
    assert stacked.shape == (n_images, 160, 160, 3) and stacked.dtype == np.uint8
    assert kept.tolist() == list(range(n_images))
    assert _namespaces(cache) == [namespace]
    assert _index_lines(namespace) == n_images

    # the default prepare (dlib, 150 px) keys a different namespace
    dlib = pipeline_for().params()
    assert dlib["chip_size"] == 150
    assert params_hash(dlib) != namespace.name

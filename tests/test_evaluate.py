"""``siamface evaluate`` / ``calibrate`` / ``cache`` and the evaluation library, on real faces:
the shipped example photos (no LFW needed) and small LFW subsets (skipped without LFW)."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from siamface import examples
from siamface.cli._common import EXIT_BAD_INPUT, EXIT_OK, EXIT_PARTIAL
from siamface.cli.main import main
from siamface.data import read_pairs


@pytest.fixture(scope="module")
def service():
    from siamface.service import load

    return load()


def _examples_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in examples.names():
        shutil.copyfile(examples.path(name), root / Path(examples.path(name)).name)
    return root


def _evaluate(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(["evaluate", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


# --- a flat folder of real photos ---------------------------------------------------------


def test_evaluate_flat_folder_writes_every_file_and_reuses_the_cache(tmp_path, capsys):
    data = _examples_folder(tmp_path / "faces")
    cache = tmp_path / "cache"
    argv = ["--data", str(data), "--layout", "flat", "--pairs", "6", "--out",
            str(tmp_path / "out"), "--cache", str(cache)]
    code, out, err = _evaluate(argv, capsys)
    assert code == EXIT_OK, err
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["dashboard.png", "metrics.json", "report.html", "samples.png"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["genuine"] == 1  # only kofi_annan_1/2 are one person
    assert metrics["data"]["embeddings_computed"] == 4
    assert metrics["verification"]["accuracy"] == 1.0  # Kofi Annan twice, three strangers
    assert "accuracy 100.00%" in out
    # the second run finds every face and embedding in the cache
    code, out, err = _evaluate(argv, capsys)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert code == EXIT_OK and metrics["data"]["embeddings_computed"] == 0


def test_no_cache_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIAMFACE_DATA_CACHE", str(tmp_path / "default-cache"))
    data = _examples_folder(tmp_path / "faces")
    code, _, err = _evaluate(["--data", str(data), "--layout", "flat", "--pairs", "4",
                              "--out", str(tmp_path / "out"), "--no-cache", "--samples", "0"],
                             capsys)
    assert code == EXIT_OK, err
    assert not (tmp_path / "default-cache").exists()
    assert not (tmp_path / "out" / "samples.png").exists()


def test_evaluate_reads_a_zip(tmp_path, capsys):
    data = _examples_folder(tmp_path / "faces")
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for image in sorted(data.iterdir()):
            zf.write(image, f"faces/{image.name}")
    code, _, err = _evaluate(["--data", str(archive), "--layout", "flat", "--pairs", "4",
                                "--out", str(tmp_path / "out"), "--cache",
                                str(tmp_path / "cache")], capsys)
    assert code == EXIT_OK, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["images"] == 4 and metrics["data"]["path"] == str(archive)


def test_hostile_zip_is_refused_before_extraction(tmp_path, capsys):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.jpg", b"x")
    code, _, err = _evaluate(["--data", str(archive), "--out", str(tmp_path / "out")], capsys)
    assert code == EXIT_BAD_INPUT and ".." in err
    assert not (tmp_path / "escape.jpg").exists() and not (tmp_path / "out").exists()


def test_folder_where_nobody_has_two_images(tmp_path, capsys):
    data = tmp_path / "strangers"
    data.mkdir()
    for name in ("serena_williams_1", "astronaut"):
        shutil.copyfile(examples.path(name), data / f"{name}.jpg")
    code, _, err = _evaluate(["--data", str(data), "--layout", "flat", "--out",
                              str(tmp_path / "out")], capsys)
    assert code == EXIT_BAD_INPUT
    assert "pairs cannot be built" in err and "no person has two images" in err


def test_dataset_test_library_call(tmp_path, service):
    from siamface.evaluation.dataset_test import dataset_test

    data = _examples_folder(tmp_path / "faces")
    evaluation, written = dataset_test(service, data, n_pairs=4, samples=4,
                                       out_dir=tmp_path / "out", cache_dir=tmp_path / "c")
    assert evaluation.metrics["data"]["layout"] == "flat"
    assert {p.name for p in written.values()} >= {"report.html", "metrics.json"}
    assert len(evaluation.samples) == evaluation.metrics["data"]["pairs"]
    assert all(s.correct for s in evaluation.samples)


# --- the cache command and the keys --------------------------------------------------------


def test_cache_info_and_clear(tmp_path, capsys, service):
    from siamface.evaluation.embeddings import embed_paths

    cache = tmp_path / "cache"
    paths = [examples.path(n) for n in examples.names()]
    embed_paths(service, paths, cache_dir=cache, progress=False)
    assert main(["cache", "info", "--cache", str(cache)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "crops: 1 namespace(s)" in out and "embeddings: 1 namespace(s)" in out
    assert main(["cache", "clear", "--cache", str(cache)]) == EXIT_OK
    assert "removed 2 namespace(s)" in capsys.readouterr().out
    assert not list((cache / "crops").iterdir()) and not list((cache / "embeddings").iterdir())


def test_a_changed_setting_never_reuses_cached_entries(tmp_path):
    from siamface.evaluation.embeddings import embed_paths
    from siamface.service import load

    cache = tmp_path / "cache"
    paths = [examples.path(n) for n in examples.names()]
    first = embed_paths(load(), paths, cache_dir=cache, progress=False)
    assert first.computed == 4
    for service in (load(fallback_policy="never"), load(flip=False), load(crop="padded")):
        again = embed_paths(service, paths, cache_dir=cache, progress=False)
        assert again.computed == 4, service.pipeline.params()
    assert len(list((cache / "embeddings").iterdir())) == 4
    # flip only changes the embeddings, not the crops
    assert len(list((cache / "crops").iterdir())) == 3
    unflipped = embed_paths(load(flip=False), paths, cache_dir=cache, progress=False)
    assert unflipped.computed == 0
    assert not np.allclose(unflipped.embeddings, first.embeddings)



def test_a_recalibrated_copy_reuses_the_embeddings_and_other_weights_do_not(tmp_path):
    """A new threshold (``siamface calibrate``'s output) changes the file but not one
    embedding: the cache serves it. A changed tensor, or a changed head setting, does not."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from siamface.checkpoint import with_threshold
    from siamface.evaluation.embeddings import embed_paths
    from siamface.service import default_model_path, load

    cache = tmp_path / "cache"
    paths = [examples.path(n) for n in examples.names()]
    shipped = load()
    first = embed_paths(shipped, paths, cache_dir=cache, progress=False)
    copy = tmp_path / "calibrated.safetensors"
    with_threshold(default_model_path(), copy, threshold=0.5, threshold_source="test",
                   calibration={"method": "youden"})
    calibrated = load(copy)
    assert calibrated.model_id != shipped.model_id
    assert calibrated.embedding_id == shipped.embedding_id
    again = embed_paths(calibrated, paths, cache_dir=cache, progress=False)
    assert again.computed == 0 and np.array_equal(again.embeddings, first.embeddings)

    tensors = load_file(str(copy))
    with safe_open(str(copy), framework="numpy") as handle:
        metadata = handle.metadata()
    tensors["gender_head.1.bias"] = tensors["gender_head.1.bias"] + np.float32(1.0)
    changed = tmp_path / "changed.safetensors"
    save_file(tensors, str(changed), metadata=metadata)
    retrained = load(changed)
    assert retrained.embedding_id != shipped.embedding_id
    other = embed_paths(retrained, paths, cache_dir=cache, progress=False)
    assert other.computed == 4
    assert np.array_equal(other.embeddings, first.embeddings)
    assert not np.allclose(other.gender_prob, first.gender_prob)

def test_worker_processes_detect_and_embed_the_same(tmp_path, monkeypatch, service):
    """Two spawned processes (detection in each, then embedding with one torch thread each)
    give the rows one process gives, in the same order, up to float rounding."""
    from siamface.evaluation import embeddings
    from siamface.service import load

    monkeypatch.setattr(embeddings, "PARALLEL_DETECT_MIN", 0)
    monkeypatch.setattr(embeddings, "PARALLEL_EMBED_MIN", 0)
    calls = []
    import multiprocessing.context as mp_context

    spawn = mp_context.SpawnContext.Pool

    def counting_pool(self, *args, **kwargs):
        calls.append(kwargs.get("initializer") or args[1])
        return spawn(self, *args, **kwargs)

    monkeypatch.setattr(mp_context.SpawnContext, "Pool", counting_pool)
    paths = [examples.path(n) for n in examples.names()] * 2 + [tmp_path / "missing.jpg"]
    serial = embeddings.embed_paths(service, paths, cache_dir=tmp_path / "one", progress=False)
    lazy = load(lazy=True)  # as the CLI loads it: each worker builds its own network
    parallel = embeddings.embed_paths(lazy, paths, cache_dir=tmp_path / "two", workers=2,
                                      progress=False)
    assert [c.__name__ for c in calls] == ["_init_worker", "_init_embed_worker"]
    assert parallel.computed == serial.computed == 4
    np.testing.assert_array_equal(parallel.has_face, serial.has_face)
    # one torch thread instead of two sums in another order: float rounding, no more (a
    # landmark moved by rounding turns a few chip pixels by one grey level)
    for i in range(len(paths) - 1):
        difference = np.abs(parallel.chip(i).astype(int) - serial.chip(i))
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    np.testing.assert_allclose(parallel.embeddings, serial.embeddings, atol=2e-4, equal_nan=True)
    np.testing.assert_allclose(parallel.gender_prob, serial.gender_prob, atol=1e-4,
                               equal_nan=True)
    assert [p for p, _ in parallel.skipped] == [str(tmp_path / "missing.jpg")]


# --- LFW: protocol pairs, bad pairs files, distorted copies, groups -------------------------


def _lfw_subset_pairs(lfw: Path, path: Path, per_fold: int = 10, folds: int = 2) -> Path:
    """The first ``per_fold`` matched and mismatched pairs of the first ``folds`` folds of
    pairs.txt, as a pairs file in the same format."""
    lines = (lfw / "pairs.txt").read_text().splitlines()
    n = int(lines[0].split()[1])
    out = [f"{folds}\t{per_fold}"]
    for fold in range(folds):
        start = 1 + fold * 2 * n
        out += lines[start:start + per_fold] + lines[start + n:start + n + per_fold]
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.lfw
def test_lfw_protocol_figures(lfw_dir, tmp_path, capsys):
    pairs = _lfw_subset_pairs(lfw_dir, tmp_path / "pairs.txt")
    code, out, err = _evaluate(["--data", str(lfw_dir), "--lfw-pairs", str(pairs), "--out",
                                str(tmp_path / "out"), "--cache", str(tmp_path / "cache")],
                               capsys)
    assert code == EXIT_OK, err
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    v = m["verification"]
    assert m["data"]["pairs"] == 40 and m["data"]["protocol"] == "protocol pairs"
    assert v["kfold"]["folds"] == 2 and len(v["kfold"]["accuracies"]) == 2
    assert v["accuracy"] >= 0.95 and v["auc"] >= 0.98
    assert v["tar_at_far"]["1e-03"]["few_false_accepts"] is True
    assert "rests on" in out and "2-fold accuracy" in out and "TAR at FAR 1e-03" in out
    assert m["gender"]["per_class"]["female"]["support"] > 0
    assert set(m["groups"]) == {"gender"}  # gender is always reported where known
    by_gender = m["groups"]["gender"]
    assert set(by_gender["groups"]) == {"male", "female"}
    assert set(by_gender["ratios"]) == {"fmr", "fnmr"}
    for row in by_gender["groups"].values():
        assert row["pairs"] > 0 and 0.0 <= row["fmr"] <= 1.0


@pytest.mark.lfw
def test_pairs_file_errors_name_the_line(lfw_dir, tmp_path, capsys):
    pairs = _lfw_subset_pairs(lfw_dir, tmp_path / "pairs.txt", per_fold=3, folds=1)
    lines = pairs.read_text().splitlines()
    lines[2] = "Nobody_Here\t1\t2"  # a matched pair of a person LFW does not have
    missing = tmp_path / "missing.txt"
    missing.write_text("\n".join(lines) + "\n")
    out = ["--data", str(lfw_dir), "--out", str(tmp_path / "out"), "--cache",
           str(tmp_path / "cache")]
    code, _, err = _evaluate(["--lfw-pairs", str(missing), *out], capsys)
    assert code == EXIT_BAD_INPUT and f"{missing}:3" in err and "Nobody_Here_0001" in err
    code, _, err = _evaluate(["--lfw-pairs", str(missing), "--skip-missing", *out], capsys)
    assert code == EXIT_PARTIAL and f"{missing}:3" in err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["data"]["pairs"] == 5
    lines[4] = "George_W_Bush\tone\t2"
    malformed = tmp_path / "malformed.txt"
    malformed.write_text("\n".join(lines) + "\n")
    code, _, err = _evaluate(["--lfw-pairs", str(malformed), *out], capsys)
    assert code == EXIT_BAD_INPUT and f"{malformed}:5" in err


@pytest.mark.lfw
def test_distorted_copy_adds_a_row_per_kind(lfw_dir, tmp_path, capsys):
    from siamface.cli.distort import distort_tree

    pairs = _lfw_subset_pairs(lfw_dir, tmp_path / "pairs.txt", per_fold=8, folds=1)
    subset = tmp_path / "subset"
    for pair in read_pairs(pairs):
        second = pair.paths(lfw_dir)[1]
        target = subset / second.relative_to(lfw_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(second, target)
    distort_tree(subset, tmp_path / "distorted", ["fog", "motion_blur"], progress=False)
    code, out, err = _evaluate(["--data", str(lfw_dir), "--lfw-pairs", str(pairs),
                                "--distorted", str(tmp_path / "distorted"), "--out",
                                str(tmp_path / "out"), "--cache", str(tmp_path / "cache")],
                               capsys)
    assert code == EXIT_OK, err
    table = json.loads((tmp_path / "out" / "metrics.json").read_text())["distortions"]
    assert list(table) == ["none", "fog", "motion_blur", "all distorted"]
    assert all(row["pairs"] == 16 for k, row in table.items() if k != "all distorted")
    assert table["all distorted"]["pairs"] == 32
    assert "motion_blur" in out


@pytest.mark.lfw
def test_groups_from_a_manifest_column(lfw_dir, tmp_path, capsys):
    from siamface.data import load_lfw

    dataset = load_lfw(lfw_dir)
    persons = [p for p, rows in dataset.person_indices().items() if len(rows) >= 2][:40]
    manifest = tmp_path / "faces.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "person_id", "gender", "camera"])
        for n, person in enumerate(persons):
            for row in dataset.person_indices()[person][:3]:
                record = dataset[row]
                writer.writerow([record.path, person, record.gender or "",
                                 "studio" if n % 2 else "street"])
    code, out, err = _evaluate(["--data", str(manifest), "--groups", "camera", "--pairs",
                                "120", "--group-pairs", "60", "--out", str(tmp_path / "out"),
                                "--cache", str(tmp_path / "cache")], capsys)
    assert code == EXIT_OK, err
    groups = json.loads((tmp_path / "out" / "metrics.json").read_text())["groups"]
    assert set(groups) == {"gender", "camera"}
    camera = groups["camera"]
    assert set(camera["groups"]) == {"studio", "street"}
    for row in camera["groups"].values():
        assert row["pairs"] > 0 and row["fmr"] is not None and row["images"] > 0
    assert "ratios" in camera and "by camera" in out
    code, _, err = _evaluate(["--data", str(manifest), "--groups", "lens", "--out",
                              str(tmp_path / "out2")], capsys)
    assert code == EXIT_BAD_INPUT and "no column 'lens'" in err

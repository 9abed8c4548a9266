"""Region thresholds: the fit against a slow reference loop, the pair lookup, and a checkpoint
that carries them (saves, loads, verifies; a user threshold replaces them)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import siamface
from conftest import TEST_CACHE
from siamface import examples
from siamface.checkpoint import read_checkpoint_info, with_threshold
from siamface.regions import RegionThresholds, fit_region_thresholds
from siamface.service import default_model_path


def _clusters(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    spreads = (0.3, 1.0, 2.0)  # one tight region, two looser ones
    return np.concatenate([c + s * rng.standard_normal((60, 2)) for c, s in zip(centres, spreads)]
                          ).astype(np.float32)


def test_fit_matches_a_slow_reference_loop():
    e = _clusters()
    fitted = fit_region_thresholds(e, fmr=0.05, n_regions=3, min_members=10)
    labels = fitted.regions(e)
    for a, b in itertools.combinations_with_replacement(range(3), 2):
        distances = [float(np.linalg.norm(e[i] - e[j]))
                     for i in range(len(e)) for j in range(len(e))
                     if (i < j if a == b else True) and labels[i] == a and labels[j] == b]
        assert fitted.thresholds[a, b] == pytest.approx(np.quantile(distances, 0.05), rel=1e-5)
        assert fitted.thresholds[b, a] == fitted.thresholds[a, b]
    # the tight region is held to a tighter threshold than the loose ones
    tight = labels[0]
    assert fitted.thresholds[tight, tight] < 0.5 * np.median(np.diag(fitted.thresholds))
    # the pair lookup equals one nearest-centroid loop per face
    for i, j in [(0, 1), (5, 70), (100, 170)]:
        ka = int(np.argmin([np.linalg.norm(e[i] - c) for c in fitted.centroids]))
        kb = int(np.argmin([np.linalg.norm(e[j] - c) for c in fitted.centroids]))
        assert fitted.pair_threshold(e[i], e[j]) == pytest.approx(fitted.thresholds[ka, kb])


def test_every_region_admits_the_same_share_of_impostors():
    e = _clusters(1)
    fitted = fit_region_thresholds(e, fmr=0.05, n_regions=3, min_members=10)
    labels = fitted.regions(e)
    for k in range(3):
        rows = np.flatnonzero(labels == k)
        i, j = np.triu_indices(rows.size, 1)
        d = np.linalg.norm(e[rows[i]] - e[rows[j]], axis=1)
        t = fitted.pair_thresholds(e[rows[i]], e[rows[j]])
        assert np.mean(d <= t) == pytest.approx(0.05, abs=0.01)


def test_same_person_pairs_are_not_impostors():
    base = _clusters()
    e = np.concatenate([base, base + 1e-3])  # every face twice: row i and row i + n, one person
    persons = np.tile(np.arange(len(base)), 2)
    with_ids = fit_region_thresholds(e, fmr=0.05, n_regions=3, min_members=10, person_ids=persons)
    without = fit_region_thresholds(e, fmr=0.05, n_regions=3, min_members=10)
    labels = with_ids.regions(e)
    k = labels[0]
    rows = np.flatnonzero(labels == k)
    impostors = [float(np.linalg.norm(e[i] - e[j])) for x, i in enumerate(rows)
                 for j in rows[x + 1:] if persons[i] != persons[j]]
    assert with_ids.thresholds[k, k] == pytest.approx(np.quantile(impostors, 0.05), rel=1e-5)
    # counted as impostors, the near-zero same-person distances pull the threshold down
    assert without.thresholds[k, k] < with_ids.thresholds[k, k]


def test_round_trip_and_malformed():
    fitted = fit_region_thresholds(_clusters(), fmr=0.05, n_regions=3, min_members=10,
                                   source="three blobs")
    back = RegionThresholds.from_dict(fitted.to_dict())
    assert np.allclose(back.thresholds, fitted.thresholds, atol=1e-6)
    assert back.source == "three blobs" and back.overall == pytest.approx(fitted.overall)
    with pytest.raises(ValueError, match="malformed region thresholds"):
        RegionThresholds.from_dict({"centroids": [[0, 0]], "fmr": 0.1})


def test_a_checkpoint_with_region_thresholds_saves_loads_and_verifies(tmp_path):
    default = default_model_path()
    old = siamface.load(default)
    assert old.regions is None and read_checkpoint_info(default).regions is None  # old loads
    dim = old.embedding_dim
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((2, dim)).astype(np.float32)
    regions = RegionThresholds(centroids, np.array([[0.2, 0.3], [0.3, 0.9]]), 0.01, 0.5, "test")
    out = tmp_path / "regions.safetensors"
    with_threshold(default, out, threshold=0.5, threshold_source="test regions",
                   calibration={"method": "region"}, regions=regions.to_dict())
    service = siamface.load(out)
    assert service.regions is not None and service.regions.n_regions == 2
    a, b = service.faces([examples.path("kofi_annan_1"), examples.path("kofi_annan_2")])
    expected = regions.pair_threshold(a.embedding, b.embedding)
    result = service.compare(a, b)
    assert result.threshold == pytest.approx(expected)
    assert result.is_match == (result.distance <= expected)
    assert "region thresholds (2 regions" in result.threshold_source
    user = service.compare(a, b, threshold=0.6)
    assert (user.threshold, user.threshold_source) == (0.6, "user")
    # a plain recalibration replaces them with one global threshold
    plain = tmp_path / "plain.safetensors"
    with_threshold(out, plain, threshold=0.6, threshold_source="youden", calibration={})
    assert siamface.load(plain).regions is None


def test_evaluation_distances_are_normalised_to_each_pairs_threshold():
    from types import SimpleNamespace

    from siamface.evaluation.pairs import PairSet
    from siamface.evaluation.run import pair_distances

    e = _clusters()
    fitted = fit_region_thresholds(e, fmr=0.05, n_regions=3, min_members=10)
    has_face = np.ones(len(e), bool)
    has_face[3] = False
    embedded = SimpleNamespace(embeddings=e, has_face=has_face)
    a, b = np.array([0, 1, 70, 3]), np.array([100, 2, 150, 4])
    pairs = PairSet(a, b, np.zeros(4, bool), np.array(["none"] * 4), a)
    raw = pair_distances(embedded, pairs)
    normalised = pair_distances(embedded, pairs, fitted, 0.7)
    t = fitted.pair_thresholds(e[a], e[b])
    assert np.allclose(normalised[:3], raw[:3] * 0.7 / t[:3])
    assert ((normalised[:3] <= 0.7) == (raw[:3] <= t[:3])).all()
    assert np.isinf(normalised[3]) and np.isinf(raw[3])  # an absent face: no verdict


def test_calibrate_method_region_on_lfw_people(tmp_path, lfw_dir, capsys):
    from siamface.cli.main import main

    people = sorted(p for p in (lfw_dir / "images").iterdir()
                    if len(list(p.glob("*.jpg"))) >= 3)[:40]
    data = tmp_path / "data"
    for person in people:
        (data / person.name).mkdir(parents=True)
        for image in sorted(person.glob("*.jpg"))[:4]:
            (data / person.name / image.name).symlink_to(image)
    out = tmp_path / "region.safetensors"
    assert main(["calibrate", "--data", str(data), "--method", "region", "--far", "0.01",
                 "--out", str(out), "--cache", str(TEST_CACHE / "regions"),
                 "--no-progress"]) == 0
    assert "with region" in capsys.readouterr().out
    info = read_checkpoint_info(out)
    assert info.calibration["method"] == "region" and info.regions is not None
    service = siamface.load(out)
    regions = service.regions
    assert sum(regions.members) > 0.9 * sum(1 for _ in data.rglob("*.jpg"))
    assert regions.fmr == 0.01 and info.threshold == pytest.approx(regions.overall)
    assert info.threshold_source.startswith("region (")

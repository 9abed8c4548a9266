"""Tests of siamface.detect.presence: the face-presence score of centre-crop fallbacks is low
on noise, flat colours and gradients, high on real (LFW) faces, and batched scoring agrees
with scoring one image at a time."""

from __future__ import annotations

import numpy as np
import pytest

from siamface.align import center_crop
from siamface.detect.presence import (
    DEFAULT_CUTOFF,
    DEFAULT_WINDOWS,
    FEATURES,
    LINEAR_MODEL,
    MONOTONE,
    FacePresence,
)
from siamface.detect.trees import ARRAYS, TreeEnsemble
from siamface.io import load_image

LFW_FACES = [
    ("Aaron_Eckhart", 1),
    ("Colin_Powell", 1),
    ("Serena_Williams", 1),
    ("George_W_Bush", 1),
    ("Gloria_Macapagal_Arroyo", 1),
    ("Jennifer_Aniston", 1),
]


@pytest.fixture(scope="module")
def presence() -> FacePresence:
    return FacePresence()


def _non_faces() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:250, 0:250].astype(np.float64)
    radial = np.hypot(y - 125, x - 125) / 177
    checker = ((y // 16 + x // 16) % 2).astype(bool)
    return {
        "uniform noise": rng.integers(0, 256, (250, 250, 3), dtype=np.uint8),
        "grey uniform noise": np.repeat(rng.integers(0, 256, (250, 250, 1), np.uint8), 3, 2),
        "gaussian noise": np.clip(rng.normal(128, 40, (250, 250, 3)), 0, 255).astype(np.uint8),
        "black": np.zeros((250, 250, 3), np.uint8),
        "white": np.full((250, 250, 3), 255, np.uint8),
        "grey": np.full((250, 250, 3), 128, np.uint8),
        "red, wide": np.broadcast_to(np.array([200, 30, 30], np.uint8), (240, 400, 3)).copy(),
        "horizontal gradient": np.repeat((x / 249 * 255)[..., None], 3, 2).astype(np.uint8),
        "diagonal colour gradient": np.stack(
            [(x + y) / 498 * 255, 255 - x / 249 * 255, y / 249 * 255], 2).astype(np.uint8),
        "radial gradient": np.repeat((radial * 255)[..., None], 3, 2).astype(np.uint8),
        "checkerboard": np.where(checker[..., None], 230, 20).astype(np.uint8).repeat(3, 2),
        "tiny black": np.zeros((10, 10, 3), np.uint8),
        "single pixel": np.full((1, 1, 3), 77, np.uint8),
    }


@pytest.mark.parametrize("name", list(_non_faces()))
def test_non_faces_score_below_cutoff(presence, name) -> None:
    score = presence.score(_non_faces()[name])
    assert 0.0 <= score < DEFAULT_CUTOFF, f"{name}: {score:.4f}"
    assert not presence.is_face(_non_faces()[name])


@pytest.fixture(scope="module")
def lfw_faces(lfw_dir) -> list[np.ndarray]:
    return [load_image(lfw_dir / "images" / n / f"{n}_{i:04d}.jpg") for n, i in LFW_FACES]


@pytest.mark.lfw
def test_lfw_faces_score_above_cutoff(presence, lfw_faces) -> None:
    whole = presence.score_many(lfw_faces)
    # The pipeline's own fallback chip (centre 80% resized to 150) also reads as a face.
    chips = presence.score_many([center_crop(im, 150, 0.8) for im in lfw_faces])
    assert (whole >= DEFAULT_CUTOFF).all(), whole
    assert (chips >= DEFAULT_CUTOFF).all(), chips
    assert whole.min() > 0.9  # far from the cut-off, not just above it


@pytest.mark.lfw
def test_the_score_is_about_the_centre(presence, lfw_faces) -> None:
    """The same photo pasted in the middle of a wide grey canvas reads as a face, pasted at
    its left edge it does not: that is not where a fallback looks."""
    centred = np.full((250, 600, 3), 128, np.uint8)
    centred[:, 175:425] = lfw_faces[0]
    left = np.full((250, 600, 3), 128, np.uint8)
    left[:, :250] = lfw_faces[0]
    assert presence.score(centred) >= DEFAULT_CUTOFF
    assert presence.score(left) < DEFAULT_CUTOFF


@pytest.mark.lfw
def test_score_many_equals_score(presence, lfw_faces) -> None:
    rng = np.random.default_rng(7)
    images = [lfw_faces[1], rng.integers(0, 256, (37, 91, 3), dtype=np.uint8), lfw_faces[2],
              np.zeros((3, 5, 3), np.uint8), rng.integers(0, 256, (900, 700, 3), np.uint8)]
    batched = presence.score_many(images)
    single = np.array([presence.score(im) for im in images])
    assert batched.shape == (len(images),)
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)
    assert batched[0] > DEFAULT_CUTOFF > batched[1]


def test_shared_network_and_arguments() -> None:
    from siamface.detect.nets import load_networks

    onet = load_networks()[2]
    presence = FacePresence(onet)
    assert presence.onet is onet
    assert len(presence.windows) == len(DEFAULT_WINDOWS)
    assert presence.score_many([]).shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        presence.score(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        presence.score(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match="windows"):
        FacePresence(windows=[])
    with pytest.raises(ValueError, match="aggregate"):
        FacePresence(aggregate="median")


def test_windows_stay_inside_the_fallback_square() -> None:
    """The default windows look only at pixels the 80% centre-crop fallback keeps."""
    presence = FacePresence()
    for h, w in ((250, 250), (480, 640), (640, 360), (31, 17)):
        boxes = presence.window_boxes(h, w)
        side = round(0.8 * min(h, w))
        top, left = (h - side) // 2, (w - side) // 2
        assert (boxes[:, 0] >= left - 1).all() and (boxes[:, 1] >= top - 1).all()
        assert (boxes[:, 2] <= left + side + 1).all() and (boxes[:, 3] <= top + side + 1).all()


def test_the_three_networks_vote_equally_and_key_the_cache() -> None:
    """Each window's logit is the mean of O-Net's, R-Net's and P-Net's; the pipeline's
    parameters (the crop cache's key) say which networks voted."""
    from siamface.faces import FacePipeline

    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
              np.full((90, 90, 3), 60, np.uint8)]
    onet = FacePresence(use_rnet=False, use_pnet=False).window_votes(images)[0]
    rnet = 2 * FacePresence(use_pnet=False).window_votes(images)[0] - onet
    pnet = 2 * FacePresence(use_rnet=False).window_votes(images)[0] - onet
    np.testing.assert_allclose(FacePresence().window_votes(images)[0], (onet + rnet + pnet) / 3,
                               atol=1e-9)
    assert not np.allclose(pnet, onet)
    described = FacePipeline().params()["face_check"]
    assert described["networks"] == ["onet", "rnet", "pnet"]
    assert "face_check" not in FacePipeline(fallback_policy="never").params()


def test_landmark_spread_is_zero_when_every_window_places_the_same_points() -> None:
    presence = FacePresence()
    image = np.zeros((250, 310, 3), np.uint8)
    boxes = presence.window_boxes(250, 310).astype(np.float64)
    side = boxes[:, 2] - boxes[:, 0]
    points = np.array([[130.0, 110.0], [180, 112], [155, 140], [135, 170], [178, 171]])
    xs = (points[None, :, 0] - boxes[:, :1]) / side[:, None]
    ys = (points[None, :, 1] - boxes[:, 1:2]) / side[:, None]
    same = np.concatenate([xs, ys], axis=1).astype(np.float32)  # (K, 10): x0..x4, y0..y4
    assert presence.landmark_spread([image], same)[0] == pytest.approx(0.0, abs=1e-5)

    # One window's nose 0.1 of a side off: that landmark's spread, over the five landmarks.
    moved = same.copy()
    moved[0, 2] += 0.1
    k = len(presence.windows)
    nose_x = np.concatenate([[points[2, 0] + 0.1 * side[0]], np.full(k - 1, points[2, 0])])
    want = nose_x.std() / 5 / side.mean()
    assert presence.landmark_spread([image], moved)[0] == pytest.approx(want, rel=1e-4)


def test_features_of_faces_and_textures(presence, lfw_faces) -> None:
    z, feats = presence.window_votes(lfw_faces)
    assert feats.shape == (len(lfw_faces), len(FEATURES))
    col = {name: feats[:, i] for i, name in enumerate(FEATURES)}
    assert np.allclose(col["logit"], z.mean(axis=1))
    textures = list(_non_faces().values())[:3]  # noise
    tex = dict(zip(FEATURES, presence.features(textures).T, strict=True))
    assert np.median(tex["spread"]) > np.median(col["spread"])
    assert np.median(tex["logit"]) < np.median(col["logit"])
    # O-Net's box around a face: about the window (0.45 of the short side); the mouth sits
    # a third of the window below the eyes.
    assert 0.8 < np.median(col["box_size"]) < 1.3
    assert 0.25 < np.median(col["mouth_drop"]) < 0.55
    flat = presence.features([np.full((250, 250, 3), 90, np.uint8)])[0]
    assert flat[FEATURES.index("log_contrast")] == pytest.approx(np.log(0.001), abs=1e-3)
    assert np.isfinite(feats).all()


def test_linear_model_is_the_weighted_features(presence, lfw_faces) -> None:
    feats = presence.features(lfw_faces)
    logit_alone = FacePresence(model={"logit": 1.0})
    assert np.allclose(logit_alone.score_many(lfw_faces), 1 / (1 + np.exp(-feats[:, 0])))
    linear = FacePresence(model=LINEAR_MODEL)
    z = feats[:, 0] - 15.0 * feats[:, FEATURES.index("spread")]
    assert np.allclose(linear.score_many(lfw_faces), 1 / (1 + np.exp(-z)))
    assert linear.describe()["model"] != presence.describe()["model"]
    with pytest.raises(ValueError, match="model must map"):
        FacePresence(model={"logit": 1.0, "nose_length": 2.0})
    with pytest.raises(ValueError, match="model must map"):
        FacePresence(model={"logit": float("nan")})
    with pytest.raises(ValueError, match="model must be"):
        FacePresence(model="trees")


def test_shipped_trees_are_monotone_where_they_promise(presence, lfw_faces) -> None:
    feats = presence.features(lfw_faces)
    trees = presence.model
    assert isinstance(trees, TreeEnsemble) and trees.features == FEATURES
    base = trees.decision(feats)
    for name, sign in MONOTONE.items():
        i = FEATURES.index(name)
        for step in (0.05, 0.5, 3.0):
            moved = feats.copy()
            moved[:, i] += step
            assert (sign * (trees.decision(moved) - base) >= -1e-12).all(), (name, step)
    assert np.allclose(presence.score_many(lfw_faces), 1 / (1 + np.exp(-base)))
    assert trees.meta["cutoff"] == DEFAULT_CUTOFF  # the code's cut-off is the fitted one


def _stump(threshold: float) -> TreeEnsemble:
    """One tree: logit < threshold goes left (value -2), else right (+3); baseline 0.5."""
    nodes = np.zeros((1, 3))
    return TreeEnsemble(feature=nodes.astype(int), threshold=nodes + [[threshold, 0, 0]],
                        left=np.array([[1, 0, 0]]), right=np.array([[2, 0, 0]]),
                        value=np.array([[0.0, -2.0, 3.0]]),
                        is_leaf=np.array([[False, True, True]]), baseline=0.5,
                        features=FEATURES, meta={"what": "a stump"})


def test_trees_decide_by_hand_and_survive_a_round_trip(tmp_path) -> None:
    stump = _stump(1.0)
    x = np.zeros((3, len(FEATURES)))
    x[:, 0] = [0.0, 1.0, 1.5]  # at the threshold a row goes left
    assert stump.depth == 1
    np.testing.assert_allclose(stump.decision(x), [-1.5, -1.5, 3.5])
    path = tmp_path / "stump.safetensors"
    stump.save(path)
    again = TreeEnsemble.load(path)
    np.testing.assert_allclose(again.decision(x), stump.decision(x))
    assert again.digest() == stump.digest() != _stump(2.0).digest()
    assert again.meta == {"what": "a stump"}
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_tree_files_and_arrays_are_refused(tmp_path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read the tree model"):
        TreeEnsemble.load(junk)
    with pytest.raises(ValueError, match="cannot read the tree model"):
        TreeEnsemble.load(tmp_path / "absent.safetensors")
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": np.zeros(3)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="not a siamface tree model"):
        TreeEnsemble.load(other)
    stump = _stump(1.0)
    with pytest.raises(ValueError, match="points outside"):
        TreeEnsemble(**{**_arrays(stump), "left": np.array([[7, 0, 0]])},
                     baseline=0.0, features=FEATURES)
    with pytest.raises(ValueError, match="a node is its own descendant"):
        TreeEnsemble(**{**_arrays(stump), "left": np.array([[0, 0, 0]])},
                     baseline=0.0, features=FEATURES)
    with pytest.raises(ValueError, match="features"):
        FacePresence(model=TreeEnsemble(**_arrays(stump), baseline=0.0, features=("logit",)))


def _arrays(trees: TreeEnsemble) -> dict[str, np.ndarray]:
    return {name: getattr(trees, name) for name in ARRAYS}


def test_flattened_trees_match_scikit_learn() -> None:
    """scripts/fit_face_presence.py's conversion: the same logits as scikit-learn's own, with
    the monotone constraints the shipped model promises."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "fit_face_presence.py"
    spec = importlib.util.spec_from_file_location("fit_face_presence", path)
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, len(FEATURES)))
    label = (x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + rng.normal(0, 0.5, 600)) > 0
    clf = fit.fit_trees(x, label)
    trees = fit.to_ensemble(clf, {"what": "synthetic"})
    probe = rng.normal(size=(300, len(FEATURES))) * 2
    np.testing.assert_allclose(trees.decision(probe), clf.decision_function(probe), atol=1e-9)
    assert trees.depth <= fit.TREE_PARAMS["max_depth"]
    up = probe.copy()
    up[:, 0] += 1.0
    assert (trees.decision(up) >= trees.decision(probe) - 1e-12).all()

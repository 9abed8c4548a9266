"""``siamface distort``: layouts, determinism, skipping, atomic writes, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamface.cli.main import main
from siamface.data import load_person_folders


def _tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for person in ("ann", "bob"):
        for i in (1, 2):
            path = root / person / f"{person}_{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    (root / "ann" / "distortion").mkdir()
    cv2.imwrite(str(root / "ann" / "distortion" / "ann_0001_foggy.jpg"),
                np.zeros((40, 40, 3), np.uint8))
    return root


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_facecom_layout_round_trips_through_the_loader(tmp_path, capsys):
    src, dst = _tree(tmp_path / "src"), tmp_path / "out"
    rc = main(["distort", str(src), str(dst), "--layout", "facecom", "--kinds", "fog", "rain",
               "--no-progress"])
    assert rc == 0
    files = set(_digests(dst))
    assert files == {f"{p}/{p}_{i:04d}.jpg" for p in ("ann", "bob") for i in (1, 2)} | {
        f"{p}/distortion/{p}_{i:04d}_{k}.jpg" for p in ("ann", "bob") for i in (1, 2)
        for k in ("fog", "rain")}
    assert (dst / "ann/ann_0001.jpg").read_bytes() == (src / "ann/ann_0001.jpg").read_bytes()
    ds = load_person_folders(dst)
    assert sorted({r.distortion for r in ds}, key=str) == [None, "foggy", "rainy"]
    assert "wrote 12" in capsys.readouterr().out
    assert not list(dst.rglob("*.tmp"))


def test_mirror_layout_is_deterministic_and_skips_existing(tmp_path, capsys):
    src = _tree(tmp_path / "src")
    args = ["--kinds", "noise", "motion_blur", "--seed", "3", "--no-progress"]
    assert main(["distort", str(src), str(tmp_path / "a"), *args]) == 0
    assert main(["distort", str(src), str(tmp_path / "b"), *args]) == 0
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert a == b and len(a) == 2 * 5  # the distortion/ source image is mirrored too
    assert "noise/ann/distortion/ann_0001_foggy.jpg" in a
    capsys.readouterr()
    victim = tmp_path / "a" / "noise" / "bob" / "bob_0002.jpg"
    victim.unlink()
    assert main(["distort", str(src), str(tmp_path / "a"), *args]) == 0
    assert "wrote 1, skipped 9" in capsys.readouterr().out
    assert _digests(tmp_path / "a") == a  # resumed output is byte-identical
    assert main(["distort", str(src), str(tmp_path / "c"), "--kinds", "noise", "--seed", "4",
                 "--no-progress"]) == 0
    assert _digests(tmp_path / "c")["noise/ann/ann_0001.jpg"] != a["noise/ann/ann_0001.jpg"]


def test_unreadable_image_fails_softly(tmp_path, capsys):
    src = _tree(tmp_path / "src")
    (src / "bob" / "broken.jpg").write_bytes(b"not a jpeg")
    rc = main(["distort", str(src), str(tmp_path / "o"), "--kinds", "fog", "--no-progress"])
    assert rc == 3  # finished, one input skipped
    err = capsys.readouterr().err
    assert "1 image(s) skipped" in err and "broken.jpg" in err and "not an image" in err
    assert (tmp_path / "o" / "fog" / "bob" / "bob_0001.jpg").is_file()


def test_errors(tmp_path, capsys):
    src = _tree(tmp_path / "src")
    assert main(["distort", str(tmp_path / "nope"), str(tmp_path / "o"), "--no-progress"]) == 2
    assert "source folder" in capsys.readouterr().err
    assert main(["distort", str(src), str(src / "inside"), "--no-progress"]) == 2
    assert "must not be the source" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["distort", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distort", str(src), str(tmp_path / "o"), "--kinds", "snow"])
    assert "invalid choice: 'snow'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distort", str(src), str(tmp_path / "o"), "--quality", "101"])


def test_severity_sweep_writes_one_copy_per_kind_and_severity(tmp_path, capsys):
    src = _tree(tmp_path / "src")
    args = ["--kinds", "fog", "noise", "--no-progress"]
    assert main(["distort", str(src), str(tmp_path / "sweep"), *args,
                 "--severity", "1", "3", "5"]) == 0
    assert main(["distort", str(src), str(tmp_path / "plain"), *args]) == 0
    sweep, plain = _digests(tmp_path / "sweep"), _digests(tmp_path / "plain")
    assert {name.split("/")[0] for name in sweep} == {
        f"{k}-s{s}" for k in ("fog", "noise") for s in (1, 3, 5)}
    # severity 3 is the default distortion, byte for byte; the others differ
    for name, digest in plain.items():
        kind, rest = name.split("/", 1)
        assert sweep[f"{kind}-s3/{rest}"] == digest
        assert sweep[f"{kind}-s1/{rest}"] != digest != sweep[f"{kind}-s5/{rest}"]
    capsys.readouterr()
    assert main(["distort", str(src), str(tmp_path / "fc"), "--layout", "facecom",
                 "--severity", "2", "4", "--no-progress"]) == 2
    assert "one severity per copy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distort", str(src), str(tmp_path / "o"), "--severity", "6"])
    assert "invalid choice: 6" in capsys.readouterr().err

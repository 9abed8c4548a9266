"""``siamface prepare``: exit codes, the bad-image summary, and a SIGKILL in the middle of a run
followed by a resume that ends exactly where a clean run does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from siamface.cache import CropCache, prepare
from siamface.cli.main import main

if __package__:  # tests/ imported as a package
    from .test_cache import CenterCropPipeline, add_bad_images, cache_files_ok, make_images
else:  # tests/ on sys.path (pytest's default rootdir handling)
    from test_cache import CenterCropPipeline, add_bad_images, cache_files_ok, make_images

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
HELPERS = CenterCropPipeline.__module__  # "test_cache" or "tests.test_cache"
STAND_IN = f"{HELPERS}:CenterCropPipeline"
SLOW_STAND_IN = f"{HELPERS}:slow_center_crop"  # 0.1 s per image


def test_missing_data_dir(tmp_path, capsys):
    code = main(["prepare", str(tmp_path / "nope"), "--cache", str(tmp_path / "cache"),
                 "--pipeline-factory", STAND_IN])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err
    assert not (tmp_path / "cache").exists()


def test_bad_factory(tmp_path, capsys):
    make_images(tmp_path / "data", 1)
    code = main(["prepare", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"),
                 "--pipeline-factory", "no_such_module:Thing"])
    assert code == 2
    assert "no_such_module" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--crop", "sideways"],
                                  ["--select", "all"]])
def test_invalid_options(tmp_path, argv):
    with pytest.raises(SystemExit) as info:
        main(["prepare", str(tmp_path), "--cache", str(tmp_path / "c"), *argv])
    assert info.value.code == 2


def test_good_and_bad_images(tmp_path, capsys):
    data = tmp_path / "data"
    make_images(data, 10)
    bad = add_bad_images(data)
    argv = ["prepare", str(data), "--cache", str(tmp_path / "cache"), "--crop", "center",
            "--no-progress", "--pipeline-factory", STAND_IN]
    assert main(argv) == 3  # finished with 3 images skipped
    out = capsys.readouterr().out
    assert "prepared 13 images" in out
    assert "8 detected, 2 fallback, 3 failed" in out
    assert "3 image(s) skipped:" in out
    for path, reason in bad.items():
        (line,) = [line for line in out.splitlines() if line.strip().startswith(path)]
        assert reason in line

    assert main(argv) == 3  # resume: nothing left to do, same summary
    out = capsys.readouterr().out
    assert "0 cropped now, 13 already cached" in out and "3 image(s) skipped:" in out


def _index_lines(namespace: Path) -> int:
    index = namespace / "index.jsonl"
    return index.read_bytes().count(b"\n") if index.exists() else 0


@pytest.mark.slow
def test_sigkill_then_resume_matches_a_clean_run(tmp_path):
    data = tmp_path / "data"
    make_images(data, 40)
    add_bad_images(data)
    cache_dir = tmp_path / "cache"
    namespace = CropCache(cache_dir, CenterCropPipeline().params()).namespace
    paths = [str(SRC), str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    command = [sys.executable, "-m", "siamface.cli.main", "prepare", str(data),
               "--cache", str(cache_dir), "--crop", "center", "--workers", "2",
               "--no-progress", "--pipeline-factory", SLOW_STAND_IN]

    victim = subprocess.Popen(command, env=env, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _index_lines(namespace) < 8:
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline, "no progress within 120 s"
            time.sleep(0.02)
    finally:  # kill -9 the run and its workers, whatever they were doing
        os.killpg(victim.pid, signal.SIGKILL)
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    done_before_kill = _index_lines(namespace)
    assert 8 <= done_before_kill < 43, "the kill should land mid-run"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                             check=False)
    assert resumed.returncode == 3, resumed.stderr  # the 3 bad images are skipped
    assert "prepared 43 images" in resumed.stdout
    assert "3 image(s) skipped:" in resumed.stdout

    clean = prepare(data, tmp_path / "clean", CenterCropPipeline, progress=False)
    assert clean.namespace.name == namespace.name
    expected = {e.key: e for e in _entries(clean.namespace)}
    got = {e.key: e for e in _entries(namespace)}
    assert got == expected
    assert _index_lines(namespace) == len(expected)  # nothing recorded twice
    cache_files_ok(namespace)
    for entry in expected.values():
        if entry.chip is not None:
            assert (namespace / entry.chip).read_bytes() == (
                clean.namespace / entry.chip
            ).read_bytes()
    def chips(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for p in root.glob("chips/*/*"))

    assert chips(namespace) == chips(clean.namespace)


def _entries(namespace: Path):
    params = json.loads((namespace / "params.json").read_text())["params"]
    return CropCache(namespace.parent, params).entries()

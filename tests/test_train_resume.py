"""A training process killed (SIGKILL) during stage 2 resumes with ``--resume`` and ends with
the same loss history as an uninterrupted run of the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _train_helpers import build_facecom

REPO = Path(__file__).resolve().parents[1]
LOSS_KEYS = ("train_total", "train_verification", "train_gender_a", "train_gender_b",
             "val_total", "val_verification", "val_gender_a", "val_gender_b", "val_threshold")


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "siamface.cli.main", "train",
            "--config", str(REPO / "configs" / "tiny.yaml"), "--data", str(data),
            "--out", str(out), "--set", "run.num_threads=1", "--set", "stage1.epochs=2",
            "--set", "stage2.epochs=5", "--set", "stage2.patience=5",
            "--set", "stage2.lr=1e-4", "--set", "run.pairs_per_epoch=64", *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def _stage2_started(out: Path) -> bool:
    metrics = out / "metrics.json"
    try:
        rows = json.loads(metrics.read_text())
    except (OSError, ValueError):
        return False
    return any(r["stage"] == "stage2" for r in rows)


@pytest.mark.lfw
@pytest.mark.slow
def test_sigkill_in_stage2_then_resume_matches(lfw_dir, tmp_path):
    data = build_facecom(lfw_dir, tmp_path / "FACECOM", distort=False)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(data, killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not _stage2_started(killed):
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    state = torch.load(killed / "train_state.pt", weights_only=True)
    assert state["stage_key"] == "stage2" and not state["stage_done"]
    epochs_before = len(state["history"])

    resumed = subprocess.run(_command(data, killed, "--resume"), check=False, env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "reference"
    full = subprocess.run(_command(data, reference), check=False,
                          env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert full.returncode == 0, full.stderr

    got = json.loads((killed / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert len(got) == len(want) > epochs_before
    for g, w in zip(got, want):
        assert (g["stage"], g["epoch"]) == (w["stage"], w["epoch"])
        for key in LOSS_KEYS:
            assert g[key] == pytest.approx(w[key], abs=1e-6), (g["stage"], g["epoch"], key)
    summary_got = json.loads((killed / "summary.json").read_text())
    summary_want = json.loads((reference / "summary.json").read_text())
    assert summary_got["threshold"] == pytest.approx(summary_want["threshold"], abs=1e-6)


@pytest.mark.lfw
def test_resume_refuses_other_config(lfw_dir, tmp_path, capsys):
    from siamface.cli.main import main

    data = build_facecom(lfw_dir, tmp_path / "FACECOM", distort=False, n_train=2, n_val=1)
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--data", str(data),
            "--out", str(out), "--set", "stage2.enabled=false", "--set", "stage1.epochs=1"]
    assert main(args) == 0
    assert main([*args, "--resume", "--set", "stage1.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "configuration differs" in err and "stage1.lr" in err
    # a state written by a siamface that had no model.flip_average: named, not "differs"
    import torch

    state = torch.load(out / "train_state.pt", weights_only=True)
    del state["config"]["model"]["flip_average"]
    torch.save(state, out / "train_state.pt")
    assert main([*args, "--resume"]) == 2
    assert "older siamface" in capsys.readouterr().err
    assert main(["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--data", str(data),
                 "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "no training state" in capsys.readouterr().err

"""The same training code under ``torchrun --nproc_per_node 2`` (gloo on CPU): it trains a
few steps, only rank 0 writes, and the checkpoint loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _train_helpers import build_facecom

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.lfw
@pytest.mark.slow
def test_two_process_gloo_run(lfw_dir, tmp_path):
    import siamface

    data = build_facecom(lfw_dir, tmp_path / "FACECOM", distort=False)
    out = tmp_path / "run"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "siamface.cli.main", "train", "--config",
           str(REPO / "configs" / "tiny.yaml"), "--data", str(data), "--out", str(out),
           "--set", "stage1.epochs=2", "--set", "stage2.epochs=1",
           "--set", "run.max_steps_per_epoch=2", "--set", "run.num_threads=1"]
    result = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # rank 0 reports, rank 1 stays quiet
    history = json.loads((out / "metrics.json").read_text())
    assert [r["stage"] for r in history] == ["stage1", "stage1", "stage2"]
    assert all(r["train_total"] > 0 for r in history)
    assert not list(out.glob(".*.tmp"))
    service = siamface.load(out / "model.safetensors")
    assert service.gender_available and service.info.stored_groups == ["level256b", "fc"]

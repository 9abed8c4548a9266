"""Loading without torch: backbone configs, a lazily loaded service, and an evaluation whose
embeddings are all cached never import torch (it costs 2-3 s of a 6 s evaluation)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _checkpoint_helpers import rewrite_checkpoint
from siamface import examples
from siamface.errors import CheckpointError
from siamface.service import default_model_path, load

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=False)


def test_configs_pipeline_and_lazy_service_need_no_torch():
    result = _python(
        "import sys\n"
        "import siamface.backbones as b, siamface.data, siamface.evaluation.run\n"
        "assert b.get_pretrained_config('facenet').input_size == 160\n"
        "assert 'dlib-resnet' in b.list_backbones()\n"
        "from siamface.service import load\n"
        "s = load(lazy=True)\n"
        "print(s.embedding_dim, s.model_id[:11], s.pipeline.params()['detector']['name'])\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["128 checkpoint: MTCNN", "[]"]


def test_a_lazy_service_embeds_as_an_eager_one():
    eager, lazy = load(), load(lazy=True)
    assert lazy._model is None and lazy.model_id == eager.model_id
    assert lazy.pipeline.params() == eager.pipeline.params()  # the detector unbuilt vs built
    lazy.pipeline.detector  # noqa: B018  (building it changes nothing in the key)
    assert lazy.pipeline.params() == eager.pipeline.params()
    chips = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    for a, b in zip(eager._run_chips(chips), lazy._run_chips(chips), strict=True):
        np.testing.assert_array_equal(a, b)
    model = lazy.model
    assert lazy.model is model  # built once


def test_a_lazy_service_with_broken_tensors_fails_on_first_use(tmp_path):
    path = rewrite_checkpoint(default_model_path(), tmp_path / "m.safetensors",
                              lambda m: m["backbone"].update(stored_groups=["fc"]))
    service = load(path, lazy=True)  # the metadata alone is fine
    with pytest.raises(CheckpointError, match="does not match its own description"):
        service.embed([examples.path("kofi_annan_1")])
    with pytest.raises(CheckpointError, match="does not match its own description"):
        load(path)  # eager loading refuses it at once


def test_cached_evaluation_never_imports_torch(tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    for name in examples.names():
        (data / f"{name}.jpg").write_bytes(Path(examples.path(name)).read_bytes())
    argv = ["evaluate", "--data", str(data), "--layout", "flat", "--pairs", "6", "--out",
            str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-progress"]
    run = ("import runpy, sys\n"
           f"sys.argv = ['siamface', *{argv!r}]\n"
           "try:\n"
           "    runpy.run_module('siamface.cli.main', run_name='__main__')\n"
           "except SystemExit as exit:\n"
           "    assert not exit.code, exit.code\n"
           "print('torch' in sys.modules)\n")
    first = _python(run)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("True")  # embedding needed the network
    second = _python(run)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().endswith("False")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["embeddings_computed"] == 0
    assert metrics["verification"]["accuracy"] == 1.0

"""Hardening of ``siamface train``'s inputs and ending: every bad config file is a
:class:`ConfigError` naming the file, the key and what was expected; ``--device`` is checked
like inference checks it, before any data is read; the process group is destroyed when a run
ends; a run that skipped unreadable images exits 3."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import torch

from siamface.errors import ConfigError, UnknownNameError
from siamface.train.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


def _config(tmp_path: Path, content: str | bytes, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _names(path: Path, *parts: str) -> str:
    """A pattern matching a message that names ``path`` and then each of ``parts``."""
    return "(?s)" + ".*".join(re.escape(str(p)) for p in (path, *parts))


# --- config files -----------------------------------------------------------------------------

def test_missing_config_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=_names(path, "not found", "expected a YAML file")):
        load_config(path)


def test_config_path_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match=_names(tmp_path, "directory", "expected a YAML file")):
        load_config(tmp_path)


def test_config_file_not_utf8(tmp_path):
    path = _config(tmp_path, b"\xff\xfe\x00r\x00u\x00n\x00:")
    with pytest.raises(ConfigError, match=_names(path, "not UTF-8", "expected a UTF-8")):
        load_config(path)


def test_config_file_invalid_yaml(tmp_path):
    path = _config(tmp_path, "run:\n  seed: [1, 2\n")
    with pytest.raises(ConfigError, match=_names(path, "not valid YAML at line 3",
                                                          "expected ',' or ']'",
                                                          "must be a YAML mapping")):
        load_config(path)


@pytest.mark.parametrize("content, got", [("- run\n- stage1\n", "list"),
                                          ("just some text\n", "str"), ("0\n", "int")])
def test_config_top_level_not_a_mapping(tmp_path, content, got):
    path = _config(tmp_path, content)
    with pytest.raises(ConfigError, match=_names(path, "top level", "mapping of sections",
                                                 f"got {got}")):
        load_config(path)


@pytest.mark.parametrize("content, key, got", [("run: 5\n", "run", "int"),
                                               ("stage1: [1, 2]\n", "stage1", "list"),
                                               ("data: []\n", "data", "list")])
def test_config_section_not_a_mapping(tmp_path, content, key, got):
    path = _config(tmp_path, content)
    with pytest.raises(ConfigError, match=_names(path, f"section '{key}'", "must be a mapping",
                                                 f"got {got}")):
        load_config(path)


@pytest.mark.parametrize("content, key, expected", [
    ("run: {seed: abc}\n", "run.seed", "must be an integer, got 'abc'"),
    ("run: {batch_size: [1]}\n", "run.batch_size", "must be an integer, got [1]"),
    ("run: {pairs_per_epoch: many}\n", "run.pairs_per_epoch", "must be an integer or null"),
    ("run: {progress: maybe}\n", "run.progress", "must be true or false"),
    ("run: {device: {type: cuda}}\n", "run.device", "must be a string"),
    ("stage2: {lr: fast}\n", "stage2.lr", "must be a number"),
    ("data: {views: [orig, {x: 1}]}\n", "data.views[1]", "must be a string"),
])
def test_config_wrong_type(tmp_path, content, key, expected):
    path = _config(tmp_path, content)
    with pytest.raises(ConfigError, match=_names(path, key, expected)):
        load_config(path)


def test_config_section_check_names_file_and_section(tmp_path):
    path = _config(tmp_path, "stage2: {lr: -1}\n")
    with pytest.raises(ConfigError, match=_names(path, "stage2: ", "lr > 0")):
        load_config(path)


def test_config_unknown_names_keep_their_type_and_hint(tmp_path):
    path = _config(tmp_path, "stage1: {optimizer: adamm}\n")
    with pytest.raises(UnknownNameError, match=_names(path, "stage1", "did you mean 'adam'")):
        load_config(path)
    path = _config(tmp_path, "stage1:\n  epoch: 3\n", "typo.yaml")
    with pytest.raises(ConfigError, match=_names(path, "did you mean 'stage1.epochs'")):
        load_config(path)


def test_config_empty_file_and_bom_are_fine(tmp_path):
    assert load_config(_config(tmp_path, "", "empty.yaml")) == TrainConfig()
    assert load_config(_config(tmp_path, "\ufeffrun: {seed: 7}\n", "bom.yaml")).run.seed == 7
    assert load_config(_config(tmp_path, "run:\n", "null.yaml")) == TrainConfig()


def test_cli_bad_config_exits_2_naming_the_file(tmp_path, capsys):
    from siamface.cli.main import main

    path = _config(tmp_path, b"\xff\xfe\x00\x00")
    rc = main(["train", "--config", str(path), "--data", str(tmp_path / "no-data"),
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(path) in err and "UTF-8" in err and "Traceback" not in err


# --- --device ---------------------------------------------------------------------------------

@pytest.mark.parametrize("device, words", [
    ("cuda", "CUDA is not available"),
    ("nonsense", "invalid device"),
    ("meta", "not supported"),
])
def test_train_device_checked_before_data(tmp_path, capsys, monkeypatch, device, words):
    from siamface.cli.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # CPU-only, even on a GPU
    missing = tmp_path / "no-such-data"
    out = tmp_path / "run"
    rc = main(["train", "--config", TINY, "--device", device, "--data", str(missing),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"device {device!r}" in err and words in err
    assert str(missing) not in err  # the device error came first: no data was read
    assert not out.exists()


def test_init_distributed_checks_device(monkeypatch):
    from siamface.train.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'cuda' requested but CUDA is not available"):
        init_distributed("cuda")
    with pytest.raises(ConfigError, match="invalid device 'gpu0'"):
        init_distributed("gpu0")
    assert init_distributed("cpu").device == "cpu"


# --- process group and exit codes -------------------------------------------------------------

def _init_single_process_group() -> None:
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    assert dist.is_initialized()


def test_shutdown_if_initialized_destroys_the_group():
    import torch.distributed as dist

    from siamface.train.distributed import shutdown_if_initialized

    shutdown_if_initialized()  # nothing to leave: a no-op
    _init_single_process_group()
    shutdown_if_initialized()
    assert not dist.is_initialized()


def _fake_result(tmp_path: Path, skipped: list[tuple[str, str]]):
    from siamface.train.run import TrainResult

    return TrainResult(out_dir=tmp_path, checkpoint=tmp_path / "model.safetensors", history=[],
                       metrics={"val_accuracy": 0.9}, threshold=0.6, skipped=skipped)


def _train_in_a_process_group(main, tmp_path) -> int:
    """Run ``siamface train`` inside a live single-process group; the command must leave it
    destroyed."""
    import torch.distributed as dist

    _init_single_process_group()
    try:
        rc = main(["train", "--config", TINY, "--out", str(tmp_path / "run")])
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return rc


@pytest.mark.parametrize("skipped, code", [([], 0), ([("a/broken.jpg", "not an image")], 3)])
def test_cli_train_exit_code_and_group_destroyed(tmp_path, capsys, monkeypatch, skipped, code):
    from siamface.cli.main import main

    monkeypatch.setattr("siamface.train.train",
                        lambda config, resume=False: _fake_result(tmp_path, skipped))
    rc = _train_in_a_process_group(main, tmp_path)
    captured = capsys.readouterr()
    assert rc == code, captured.err
    assert "run folder:" in captured.out
    if skipped:
        assert "skipped 1 unreadable image(s)" in captured.err and "broken.jpg" in captured.err


def test_cli_train_destroys_group_when_training_fails(tmp_path, capsys, monkeypatch):

    from siamface.cli.main import main

    def failing(config, resume=False):
        raise ConfigError("every stage is disabled; enable stage1 at least")

    monkeypatch.setattr("siamface.train.train", failing)
    rc = _train_in_a_process_group(main, tmp_path)
    assert rc == 2
    assert "every stage is disabled" in capsys.readouterr().err

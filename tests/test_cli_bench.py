"""``siamface bench`` on the shipped example photos: every stage timed on real faces, the
figures consistent with each other, and a folder without images refused with exit code 2."""

from __future__ import annotations

import json
import re

import pytest

from siamface import examples
from siamface.cli._common import EXIT_BAD_INPUT, EXIT_OK
from siamface.cli.main import main


def test_bench_times_every_stage_on_real_photos(capsys):
    folder = str(examples.path(examples.names()[0]).parent)
    assert main(["bench", folder, "--images", "4", "--batch", "2", "--threads", "1",
                 "--no-cold-start", "--json"]) == EXIT_OK
    figures = json.loads(capsys.readouterr().out)
    stages = {s["stage"]: s for s in figures["stages"]}
    assert list(stages) == ["decode", "detect + align", "embed + gender", "end to end"]
    assert stages["decode"]["items"] == stages["end to end"]["items"] == 4
    assert 1 <= stages["embed + gender"]["items"] <= 4  # faces found among the 4 photos
    for stage in stages.values():
        assert stage["ms_per_item"] > 0 and stage["p95_ms"] >= stage["p50_ms"] > 0
    embed = stages["embed + gender"]
    assert figures["passes_per_face"] == 2 and figures["flip"] is True  # the shipped model
    assert embed["ms_per_pass"] == pytest.approx(embed["ms_per_item"] / 2)
    assert figures["threads"] == 1 and figures["cold_verify_s"] is None
    assert figures["matmul_gflops"] > 0
    # the dlib ResNet on a 150 px chip is about half a GFLOP a pass
    assert 0.3 < figures["backbone_gflop_per_pass"] < 1.0
    assert figures["backbone_share_of_matmul"] == pytest.approx(
        figures["backbone_gflops"] / figures["matmul_gflops"])


def test_bench_text_output_names_each_stage_and_times_a_new_verify(capsys):
    folder = str(examples.path(examples.names()[0]).parent)
    assert main(["bench", folder, "--images", "2", "--no-flip"]) == EXIT_OK
    out = capsys.readouterr().out
    for words in ("decode", "detect + align", "embed + gender", "end to end", "GFLOP/s",
                  "1 pass(es) per face"):
        assert words in out
    assert re.search(r"new `siamface verify` process: \d+\.\d\d s wall", out), out


def test_bench_on_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here")
    assert main(["bench", str(tmp_path), "--no-cold-start"]) == EXIT_BAD_INPUT
    assert "no images under" in capsys.readouterr().err

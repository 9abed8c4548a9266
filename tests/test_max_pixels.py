"""``max_pixels`` reaches the pipeline, the service and every command (``--max-pixels``)."""

from __future__ import annotations

import pytest

from siamface import examples
from siamface.cache import CropCache
from siamface.cli.main import build_parser, main
from siamface.errors import ImageTooLargeError
from siamface.faces import FacePipeline
from siamface.service import load

FACE = str(examples.path("kofi_annan_1"))  # 250 x 250 = 62,500 pixels
FACE2 = str(examples.path("kofi_annan_2"))


def test_pipeline_and_service_refuse_larger_images():
    with pytest.raises(ImageTooLargeError, match="62,?500|250x250|250 x 250"):
        FacePipeline(crop="center", max_pixels=60_000).crop(FACE)
    assert FacePipeline(crop="center", max_pixels=62_500).crop(FACE).chip.shape == (150, 150, 3)
    service = load(max_pixels=60_000)
    assert service.max_pixels == 60_000 and service.pipeline.max_pixels == 60_000
    with pytest.raises(ImageTooLargeError):
        service.verify(FACE, FACE2)
    assert load(max_pixels=62_500).verify(FACE, FACE2).is_match


@pytest.mark.parametrize("command", ["verify", "analyze"])
def test_commands_take_max_pixels(command, capsys):
    argv = [command, FACE, FACE2]
    assert main([*argv, "--max-pixels", "60000"]) == 2
    err = capsys.readouterr().err
    assert "kofi_annan_1.jpg" in err and "60,000" in err
    parser = build_parser(command)._subparsers._group_actions[0].choices[command]
    (flag,) = [a.option_strings[0] for a in parser._actions if a.dest == "max_pixels"]
    assert f"with {flag} N" in err  # the message names the real flag
    assert main([*argv, "--max-pixels", "62500"]) == 0


def test_prepare_skips_a_large_image_without_recording_it(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jpg").write_bytes(examples.path("kofi_annan_1").read_bytes())
    cache = tmp_path / "cache"
    argv = ["prepare", str(data), "--cache", str(cache), "--no-progress"]
    assert main([*argv, "--max-pixels", "60000"]) == 3
    assert "60,000" in capsys.readouterr().err
    (namespace,) = cache.iterdir()
    assert len(CropCache(cache, _params(namespace))) == 0  # not recorded: a rerun retries
    assert main(argv) == 0  # the default limit takes it
    assert "1 cropped now" in capsys.readouterr().out


def _params(namespace):
    import json

    return json.loads((namespace / "params.json").read_text())["params"]

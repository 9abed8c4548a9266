"""Pairs files a user writes (siamface.data.pairs_file) and ``siamface verify --pairs FILE``,
on the shipped example photos with the shipped default model (no LFW, no network)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

import siamface.cli.verify as verify_cli
from siamface import data as data_api
from siamface.cli._common import EXIT_BAD_INPUT, EXIT_OK, EXIT_PARTIAL
from siamface.cli.main import main
from siamface.data.pairs_file import ListedPair, PairList, read_pair_list
from siamface.errors import DatasetError

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "siamface" / "examples"
K1, K2, SW, AS = "kofi_annan_1.jpg", "kofi_annan_2.jpg", "serena_williams_1.jpg", "astronaut.jpg"


@pytest.fixture
def photos(tmp_path) -> Path:
    """The four example photos in ``tmp_path/photos``, beside which pairs files are written."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in (K1, K2, SW, AS):
        shutil.copyfile(EXAMPLES / name, folder / name)
    return folder


def _write(folder: Path, lines: list[str], name: str = "pairs.txt") -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- read_pair_list -----------------------------------------------------------------------


def test_exported_from_siamface_data():
    assert data_api.read_pair_list is read_pair_list and data_api.PairList is PairList
    assert {"read_pair_list", "PairList", "ListedPair", "PAIR_LABELS"} <= set(data_api.__all__)


def test_tab_file_with_comments_blank_lines_and_labels(photos):
    path = _write(photos, ["# my pairs", "", f"{K1}\t{K2}\tsame", "   ",
                           f"{K1}\t{SW}\tDifferent", "  # indented comment",
                           f"{SW}\t{AS}\t0", f"{K2}\t{K1}\tTRUE", f"{AS}\t{SW}\t1",
                           f"{K1}\t{AS}\tfalse\r"])
    listed = read_pair_list(path)
    assert listed.labelled and listed.skipped == [] and len(listed) == 6
    assert listed.pairs[0] == ListedPair(photos / K1, photos / K2, True, 3)
    assert [p.line for p in listed.pairs] == [3, 5, 7, 8, 9, 10]
    assert [p.same for p in listed.pairs] == [True, False, False, True, True, False]
    assert listed.images() == [photos / n for n in (K1, K2, SW, AS)]


def test_unlabelled_file_and_path_resolution(photos, tmp_path):
    elsewhere = tmp_path / "lists"
    elsewhere.mkdir()
    absolute = photos / SW
    path = _write(elsewhere, [f"{K1}\t{K2}", f"{K1}\t{absolute}"])
    with pytest.raises(DatasetError, match=r"pairs.txt:1: image .*kofi_annan_1.jpg not found"):
        read_pair_list(path)  # relative to the pairs file's folder by default
    listed = read_pair_list(path, root=photos)
    assert not listed.labelled
    assert listed.pairs[0] == ListedPair(photos / K1, photos / K2, None, 1)
    assert listed.pairs[1].b == absolute  # an absolute path is kept as it is
    with pytest.raises(DatasetError, match="image root .* is not a folder"):
        read_pair_list(path, root=tmp_path / "nowhere")


def test_csv_file_with_a_header(photos):
    path = _write(photos, ["# exported", "a,b,same", f"{K1},{K2},1", "",
                           f'"{SW}",{AS},different'], name="pairs.csv")
    listed = read_pair_list(path)
    assert listed.labelled and [(p.line, p.same) for p in listed.pairs] == [(3, True), (5, False)]
    assert listed.pairs[1].a == photos / SW
    path = _write(photos, ["A,B", f"{K1},{K2}"], name="unlabelled.csv")
    assert read_pair_list(path).pairs == [ListedPair(photos / K1, photos / K2, None, 2)]


@pytest.mark.parametrize("lines, name, words", [
    ([f"{K1}\t{K2}", f"{K1}\t{SW}", f"{K1}\t{SW}\t{AS}\t1"], "pairs.txt",
     r"pairs.txt:3: expected 2 or 3 TAB-separated fields .*got 4"),
    ([f"{K1}\t{K2}", "", K1], "pairs.txt", r"pairs.txt:3: expected 2 or 3 .*got 1"),
    (["# c", f"{K1}\t{K2}", f"{K1} {SW}"], "pairs.txt", r"pairs.txt:3: .*TABs, not spaces"),
    (["", "", f"{K1}\t\t1"], "pairs.txt", r"pairs.txt:3: .*a field is empty"),
    ([f"{K1}\t{K2}\tsame", "", f"{K1}\t{SW}\tmaybe"], "pairs.txt",
     r"pairs.txt:3: bad label 'maybe'; expected one of 1, true, same, 0, false, different"),
    ([f"{K1}\t{K2}\tsame", f"{K1}\t{SW}"], "pairs.txt",
     r"pairs.txt:2: this line has no label but line 1 has one; label every line or none"),
    ([f"{K1}\t{K2}", "#", f"{K1}\t{SW}\t1"], "pairs.txt",
     r"pairs.txt:3: this line has a label but line 1 has none"),
    (["a,b", f"{K1},{K2}", f"{K1},{SW},1"], "pairs.csv",
     r"pairs.csv:3: expected 2 non-empty comma-separated fields \(a,b, as the header on line 1"),
    (["first,second", f"{K1},{K2}"], "pairs.csv",
     r"pairs.csv:1: a .csv pairs file starts with the header 'a,b' or 'a,b,same'"),
    (["a,b,same", f"{K1},{K2},yes"], "pairs.csv", r"pairs.csv:2: bad label 'yes'"),
])
def test_malformed_lines_name_file_and_line(photos, lines, name, words):
    with pytest.raises(DatasetError, match=words):
        read_pair_list(_write(photos, lines, name=name))


def test_missing_images_error_or_skip(photos):
    lines = [f"{K1}\t{K2}", "", f"{K1}\tghost.jpg", "nobody.jpg\tghost.jpg", f"{SW}\t{AS}"]
    path = _write(photos, lines)
    with pytest.raises(DatasetError, match=r"pairs.txt:3: image .*ghost.jpg not found "
                                           r"\(relative paths start from .*photos\); .*"
                                           r"--skip-missing"):
        read_pair_list(path)
    listed = read_pair_list(path, skip_missing=True)
    assert [p.line for p in listed.pairs] == [1, 5]
    assert [where for where, _ in listed.skipped] == [f"{path}:3", f"{path}:4"]
    assert "nobody.jpg not found and image" in listed.skipped[1][1]
    (photos / "folder.jpg").mkdir()
    with pytest.raises(DatasetError, match="pairs.txt:1: .*folder.jpg is a folder"):
        read_pair_list(_write(photos, [f"{K1}\tfolder.jpg"]))
    # still malformed lines are errors with skip_missing
    with pytest.raises(DatasetError, match="pairs.txt:2: bad label"):
        read_pair_list(_write(photos, [f"{K1}\tghost.jpg\t1", f"{K1}\tghost.jpg\t2"]),
                       skip_missing=True)


def test_empty_missing_and_undecodable_files(photos, tmp_path):
    with pytest.raises(DatasetError, match="holds no pairs"):
        read_pair_list(_write(photos, ["# nothing yet", ""]))
    with pytest.raises(DatasetError, match="pairs file .*nope.txt not found"):
        read_pair_list(tmp_path / "nope.txt")
    latin = photos / "latin.txt"
    latin.write_bytes(b"caf\xe9.jpg\tb.jpg\n")
    with pytest.raises(DatasetError, match="latin.txt: not UTF-8 text"):
        read_pair_list(latin)


# --- siamface verify --pairs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def service():
    """The shipped default model, loaded once for the module."""
    from siamface.service import load

    return load()


@pytest.fixture
def cli(service, monkeypatch):
    """``main(argv)`` with the module's service (load_service is counted, not repeated)."""
    loads = []

    def load_once(args):
        loads.append(args)
        return service

    monkeypatch.setattr(verify_cli, "load_service", load_once)
    return loads


def _bad_jpeg(path: Path) -> Path:
    path.write_bytes(b"\x89 this is not an image at all" * 10)
    return path


def test_cli_text_lines_and_exit_0_even_with_no_match(photos, cli, capsys):
    path = _write(photos, [f"{K1}\t{K2}", f"{K1}\t{SW}", f"{SW}\t{AS}"])
    assert main(["verify", "--pairs", str(path)]) == EXIT_OK  # NO MATCH lines do not give 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3 and len(cli) == 1
    assert lines[0].startswith("MATCH  ") and lines[0].endswith(f"  {photos / K1}  {photos / K2}")
    assert lines[1].startswith("NO MATCH  ") and lines[2].startswith("NO MATCH  ")
    float(lines[0].split("  ")[1])
    assert err == ""


def test_cli_malformed_line_exits_2(photos, cli, capsys):
    path = _write(photos, [f"{K1}\t{K2}", "# fine", f"{K1}\t{SW}\t{AS}\tsame"])
    assert main(["verify", "--pairs", str(path)]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert "pairs.txt:3" in err and "error" in err and out == "" and cli == []


def test_cli_missing_image_exits_2_naming_file_and_line(photos, cli, capsys):
    path = _write(photos, [f"{K1}\t{K2}", f"{K1}\tghost.jpg"])
    assert main(["verify", "--pairs", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{path}:2" in err and "ghost.jpg not found" in err and cli == []


def test_cli_skip_missing_scores_the_rest_and_exits_3(photos, cli, capsys):
    path = _write(photos, [f"{K1}\t{K2}", f"{K1}\tghost.jpg", f"{SW}\t{AS}"])
    assert main(["verify", "--pairs", str(path), "--skip-missing"]) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert [line.split("  ")[0] for line in out.splitlines()] == ["MATCH", "NO MATCH"]
    assert "1 line(s) skipped" in err and f"{path}:2" in err and "ghost.jpg" in err


def test_cli_skip_missing_with_every_line_missing(photos, cli, capsys):
    path = _write(photos, [f"{K1}\tghost.jpg"])
    assert main(["verify", "--pairs", str(path), "--skip-missing"]) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert out == "" and "1 line(s) skipped" in err and cli == []  # no model needed


def test_cli_unreadable_image_prints_an_error_line_and_exits_3(photos, cli, capsys):
    _bad_jpeg(photos / "garbage.jpg")
    path = _write(photos, [f"{K1}\t{K2}", f"{K1}\tgarbage.jpg", f"{SW}\t{AS}"])
    assert main(["verify", "--pairs", str(path)]) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("MATCH  ") and lines[2].startswith("NO MATCH  ")
    assert lines[1].startswith("ERROR  -  ") and "cannot read image" in lines[1]
    assert "garbage.jpg" in lines[1]
    assert "1 of 3 pair(s) not scored" in err and f"{path}:2" in err


def test_cli_json_lines(photos, cli, capsys):
    _bad_jpeg(photos / "garbage.jpg")
    blank = photos / "blank.png"
    Image.new("RGB", (120, 160), (90, 90, 90)).save(blank)  # no face: no verdict
    path = _write(photos, [f"{K1}\t{K2}", "", f"{K1}\tgarbage.jpg", f"{SW}\tblank.png"])
    assert main(["verify", "--pairs", str(path), "--json", "--threshold", "0.5"]) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in rows] == [1, 3, 4] and all("label" not in r for r in rows)
    assert rows[0]["status"] == "match" and rows[0]["threshold"] == 0.5
    assert rows[0]["threshold_source"] == "user"
    assert rows[0]["a"]["source"] == str(photos / K1) and rows[0]["a"]["detected"] is True
    assert rows[1]["status"] == "error" and "cannot read image" in rows[1]["error"]
    assert rows[1]["b"]["source"] == str(photos / "garbage.jpg") and rows[1]["is_match"] is None
    assert rows[2]["status"] == "no_face_b" and rows[2]["distance"] is None
    assert "2 of 3 pair(s) not scored" in err and "no face in" in err


def test_cli_labelled_file_prints_accuracy(photos, cli, capsys):
    path = _write(photos, ["a,b,same", f"{K1},{K2},same", f"{K1},{SW},different",
                           f"{SW},{AS},same"], name="pairs.csv")  # the last label is wrong
    assert main(["verify", "--pairs", str(path), "--json"]) == EXIT_OK
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows] == [True, False, True]
    assert [r["line"] for r in rows] == [2, 3, 4]
    assert "accuracy 66.67%: 2 of 3 scored pair(s) agree with their label" in err
    assert "threshold" in err


def test_each_distinct_image_is_decoded_and_embedded_once(photos, cli, service, capsys,
                                                          monkeypatch):
    """Chunks of 2 new images: images repeated across chunks are not embedded again."""
    _bad_jpeg(photos / "garbage.jpg")
    names = [K1, K2, SW, AS]
    lines = [f"{a}\t{b}" for a in names for b in names if a != b]  # 12 pairs, 4 images
    lines += [f"{K1}\tgarbage.jpg", f"garbage.jpg\t{AS}", f"{K2}\t{K1}"]
    path = _write(photos, lines)
    decoded, embedded, calls = Counter(), Counter(), []
    real_load, real_faces = service.load_image, service.faces
    original_crop_batch = service.pipeline.crop_batch

    def load_image(source):
        decoded[Path(source).name] += 1
        return real_load(source)

    def faces(images):
        calls.append(len(images))
        return real_faces(images)

    def crop_batch(images):
        embedded["images"] += len(images)
        return original_crop_batch(images)

    monkeypatch.setattr(service, "batch_size", 2)
    monkeypatch.setattr(service, "load_image", load_image)
    monkeypatch.setattr(service, "faces", faces)
    monkeypatch.setattr(service.pipeline, "crop_batch", crop_batch)
    assert main(["verify", "--pairs", str(path)]) == EXIT_PARTIAL
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(lines) and len(cli) == 1
    assert decoded == Counter({n: 1 for n in [*names, "garbage.jpg"]})
    assert sum(calls) == 4 == embedded["images"] and len(calls) >= 2  # several chunks


@pytest.mark.parametrize("argv, words", [
    (["verify"], "needs two images A B, or --pairs FILE"),
    (["verify", "a.jpg"], "needs a second image B"),
    (["verify", "a.jpg", "b.jpg", "--pairs", "p.txt"], "not both"),
    (["verify", "a.jpg", "--pairs", "p.txt"], "not both"),
    (["verify", "--pairs", "p.txt", "--save-figure", "f.png"], "--save-figure"),
    (["verify", "a.jpg", "b.jpg", "--skip-missing"], "only apply to --pairs"),
])
def test_cli_a_b_or_pairs_is_a_usage_error(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "usage:" in err and words in err


def test_cli_pairs_file_not_found(tmp_path, capsys):
    assert main(["verify", "--pairs", str(tmp_path / "nope.txt")]) == EXIT_BAD_INPUT
    assert "nope.txt not found" in capsys.readouterr().err

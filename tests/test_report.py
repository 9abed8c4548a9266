"""Report writers (siamface.report) on a real Evaluation: the shipped model on the example
photos, with and without gender, distortions, groups and pairs without a verdict."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _report_helpers import HOSTILE, build_evaluation
from siamface.evaluation.result import Evaluation, SamplePair
from siamface.report import (
    REPORT_FILES,
    SECTION_IDS,
    dashboard_png,
    jsonable,
    order_samples,
    report_html,
    samples_png,
    write_report,
)
from siamface.report.dashboard import _render

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plain() -> Evaluation:
    return build_evaluation()


@pytest.fixture(scope="module")
def full() -> Evaluation:
    """Distortions, groups, the astronaut without a face, a hostile dataset name."""
    return build_evaluation(distortions=True, groups=True, no_verdict=True, description=HOSTILE)


@pytest.fixture(scope="module")
def no_gender() -> Evaluation:
    return build_evaluation(gender=False)


@pytest.fixture(scope="module")
def pngs(plain, full, no_gender) -> dict[str, bytes]:
    """Each variant's dashboard, drawn strictly: a panel that raises fails the test instead
    of becoming a "could not be drawn" panel."""
    return {name: _render(ev, dpi=100, strict=True)
            for name, ev in (("plain", plain), ("full", full), ("no_gender", no_gender))}


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    return image


def _links(page: str) -> list[str]:
    """Every src / href attribute value of the page."""
    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(v or "" for k, v in attrs if k in ("src", "href"))

    Parser().feed(page)
    return found


def _section(page: str, ident: str) -> str:
    match = re.search(rf'<section id="{ident}">(.*?)</section>', page, re.DOTALL)
    assert match, f"no section {ident}"
    return match.group(1)


# the evaluation itself -------------------------------------------------------------------

def test_the_real_evaluation_is_what_the_tests_assume(plain, full):
    v = plain.metrics["verification"]
    assert plain.metrics["data"]["genuine"] == 1 and plain.metrics["data"]["impostor"] == 5
    assert v["accuracy"] == 1.0 and v["auc"] == 1.0  # the shipped model gets these 6 right
    assert plain.metrics["gender"]["accuracy"] == 1.0
    assert np.isinf(full.distances).sum() == 3 == full.metrics["verification"]["no_verdict_pairs"]
    assert sum(s.predicted is None for s in full.samples) == 3


# dashboard -------------------------------------------------------------------------------

def test_dashboard_pngs_decode_and_grow_with_the_panels(pngs):
    sizes = {name: _decode(png).size for name, png in pngs.items()}
    for width, height in sizes.values():
        assert width >= 1200 and height >= 700
    # gender-less: 6 panels (2 rows); plain: 7 (3 rows); full: 10 (4 rows)
    assert sizes["no_gender"][1] < sizes["plain"][1] < sizes["full"][1]
    assert len({w for w, _ in sizes.values()}) == 1  # three columns each


def test_dashboard_png_is_the_lenient_render(full, pngs):
    assert _decode(dashboard_png(full)).size == _decode(pngs["full"]).size


def _minimal(**metrics) -> Evaluation:
    base = {"model": {"description": "m"}, "data": {"description": "d"},
            "threshold": {"value": 0.6, "source": "test"}}
    base.update(metrics)
    return Evaluation(metrics=base, distances=np.array([]), same=np.array([], dtype=bool),
                      kinds=np.array([]))


@pytest.mark.parametrize("evaluation", [
    _minimal(),
    _minimal(verification=None, gender=None, distortions={}, groups={}),
    Evaluation(metrics={"threshold": {"value": 0.5}}, distances=np.array([np.inf, np.inf]),
               same=np.array([True, False]), kinds=np.array(["none", "none"])),
    Evaluation(metrics={"threshold": {"value": 0.5}, "gender": {"per_class": {}},
                        "distortions": {"blur": {"pairs": 0, "accuracy": None,
                                                 "accuracy_ci": [None, None]}},
                        "groups": {"g": {"groups": {"a": {"fmr": None, "fnmr": None}},
                                         "ratios": {}}}},
               distances=np.array([0.1, 0.2, 0.3]), same=np.array([True, True, True]),
               kinds=np.array(["none"] * 3)),
], ids=["empty", "all-none", "no-finite-distance", "one-class-and-empty-parts"])
def test_dashboard_with_missing_parts_never_fails(evaluation):
    _decode(_render(evaluation, dpi=60, strict=True))
    assert "<!DOCTYPE html>" in report_html(evaluation, dashboard=b"x", samples=None)


def test_dashboard_user_text_is_not_mathtext(plain):
    odd = dataclasses.replace(plain, metrics={
        **plain.metrics, "data": {"description": "costs $5 and $x^{_"},
        "groups": {"$bad{": {"groups": {"$a": {"fmr": 0.1, "fnmr": 0.2, "pairs": 3}},
                              "ratios": {"fmr": 1.0}}}})
    _decode(_render(odd, dpi=60, strict=True))


# samples ---------------------------------------------------------------------------------

def test_samples_png_tiles_every_pair(full):
    image = _decode(samples_png(full, columns=4))
    one = _decode(samples_png(full.samples[:1]))
    tile_w, tile_h = one.size
    # 6 tiles, 4 a row: 2 rows; tiles share the outer padding
    assert image.size[0] == pytest.approx(4 * tile_w, rel=0.05)
    assert image.size[1] == pytest.approx(2 * tile_h, rel=0.05)
    assert _decode(samples_png(full, columns=10)).size[0] == pytest.approx(6 * tile_w, rel=0.05)


@pytest.mark.parametrize("chip", [112, 150, 224, 60, 400])
def test_samples_png_any_chip_size(plain, chip):
    def resized(a):
        return np.asarray(Image.fromarray(a).resize((chip, chip)))

    samples = [dataclasses.replace(s, chip_a=resized(s.chip_a), chip_b=resized(s.chip_b))
               for s in plain.samples[:2]]
    width, height = _decode(samples_png(samples, columns=2)).size
    shown = min(max(chip, 112), 224)  # chips are shown at 112..224 pixels
    assert 4 * shown < width < 4 * shown + 120
    assert height > shown


def _grey_sample(**kw) -> SamplePair:
    chip = np.full((120, 120, 3), 128, np.uint8)
    return SamplePair(chip_a=chip, chip_b=chip, **{"name_a": "a", "name_b": "b", **kw})


def _has(image: Image.Image, rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(np.asarray(image.convert("RGB")) == rgb, axis=-1).any())


@pytest.mark.parametrize("kw, colour", [
    ({"same": True, "predicted": True, "distance": 0.2}, "green"),
    ({"same": False, "predicted": False, "distance": 0.9}, "green"),
    ({"same": True, "predicted": False, "distance": 0.8}, "red"),
    ({"same": False, "predicted": True, "distance": 0.3}, "red"),
    ({"same": True, "predicted": None, "distance": None}, "grey"),
])
def test_samples_verdict_colour(kw, colour):
    image = _decode(samples_png([_grey_sample(**kw)]))
    assert _has(image, (20, 140, 60)) == (colour == "green")
    assert _has(image, (190, 30, 30)) == (colour == "red")


def test_samples_png_refuses_nothing_to_draw():
    with pytest.raises(ValueError, match="no samples"):
        samples_png([])
    with pytest.raises(ValueError, match="columns"):
        samples_png([_grey_sample()], columns=0)


def test_order_samples_puts_wrong_ones_first_stably():
    right = [_grey_sample(same=True, predicted=True, name_a=f"r{i}") for i in range(3)]
    wrong = [_grey_sample(same=False, predicted=True, name_a="w0"),
             _grey_sample(same=True, predicted=None, name_a="w1")]
    mixed = [right[0], wrong[0], right[1], wrong[1], right[2]]
    assert order_samples(mixed, errors_first=False) == mixed
    assert [s.name_a for s in order_samples(mixed, errors_first=True)] == [
        "w0", "w1", "r0", "r1", "r2"]
    assert order_samples(iter(mixed), errors_first=True)[0] is wrong[0]


# HTML ------------------------------------------------------------------------------------

def test_report_html_sections_and_content(full, pngs):
    tiles = samples_png(full)
    page = report_html(full, dashboard=pngs["full"], samples=tiles)
    for ident in SECTION_IDS:
        assert f'<section id="{ident}">' in page
    assert page.count('src="data:image/png;base64,') == 2
    model = _section(page, "model")
    assert full.metrics["model"]["sha256"][:12] in model
    assert full.metrics["model"]["sha256"] not in model  # the short form only
    assert "dlib-resnet" in model and "aligned" in model and "auto" in model
    data = _section(page, "data")
    for text in ("flat", "generated", "1 same person, 5 different people"):
        assert text in data
    assert "0.6776" in _section(page, "threshold")
    verification = _section(page, "verification")
    for text in ("100.00%", "95% CI", "2-fold accuracy", "ROC AUC", "EER", "TAR at FAR 0.01",
                 "TAR at FAR 0.001", "rests on 0 false accepts", "pairs without a verdict"):
        assert text in verification, text
    gender = _section(page, "gender")
    for text in ("male", "female", "precision", "balanced accuracy", "macro F1"):
        assert text in gender
    assert "jpeg &amp; &lt;q&gt;" in _section(page, "distortions")
    groups = _section(page, "groups")
    assert "By gender" in groups and "worst / best group" in groups


def test_report_html_is_self_contained_and_escaped(full, pngs):
    page = report_html(full, dashboard=pngs["full"], samples=None)
    assert "http://" not in page and "https://" not in page
    links = _links(page)
    assert len(links) == 1 and all(link.startswith("data:image/png;base64,") for link in links)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "no samples in this evaluation" in _section(page, "samples")


def test_report_html_without_gender_says_so(no_gender, pngs):
    page = report_html(no_gender, dashboard=pngs["no_gender"], samples=None)
    assert "Not available" in _section(page, "gender")
    assert 'id="distortions"' not in page and 'id="groups"' not in page


# writing ---------------------------------------------------------------------------------

def test_write_report_writes_every_file_atomically(full, tmp_path):
    out = tmp_path / "new" / "report"
    paths = write_report(full, out)
    assert set(paths) == {"metrics", "dashboard", "samples", "report"}
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES.values())  # no temp
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["data"]["description"] == HOSTILE
    # the helper leaves an inf worst/best ratio in the metrics: written as null
    assert metrics["groups"]["gender"]["ratios"]["fmr"] is None
    assert metrics["gender"]["confusion_matrix"] == [[2, 0], [0, 1]]  # numpy array -> list
    _decode(paths["dashboard"].read_bytes())
    _decode(paths["samples"].read_bytes())
    page = paths["report"].read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2

    again = write_report(full, out, samples=False)  # an old samples.png does not linger
    assert "samples" not in again and not (out / "samples.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["dashboard.png", "metrics.json",
                                                      "report.html"]


def test_write_report_without_samples(no_gender, tmp_path):
    empty = dataclasses.replace(no_gender, samples=[])
    paths = write_report(empty, tmp_path)
    assert "samples" not in paths
    assert json.loads(paths["metrics"].read_text())["gender"] is None


def test_jsonable_nulls_nan_and_inf():
    replaced: list[str] = []
    out = jsonable({"a": float("nan"), "b": [np.float32(1.5), np.inf], "c": (np.int64(2),),
                    "d": {"e": np.array([[1, 2]]), "f": np.bool_(True)}, 3: None},
                   replaced=replaced)
    assert out == {"a": None, "b": [1.5, None], "c": [2], "d": {"e": [[1, 2]], "f": True},
                   "3": None}
    assert replaced == ["metrics.a", "metrics.b[1]"]
    json.dumps(out, allow_nan=False)


def test_report_package_stays_in_the_core_library():
    """No training, CLI or web code, and no pyplot, behind the report writers."""
    code = (
        "import sys, numpy as np\n"
        "from siamface.evaluation.result import Evaluation\n"
        "from siamface.report import dashboard_png\n"
        "ev = Evaluation(metrics={'threshold': {'value': 0.5}}, distances=np.array([0.1, 0.9]),"
        " same=np.array([True, False]), kinds=np.array(['none', 'none']))\n"
        "dashboard_png(ev, dpi=40)\n"
        "bad = [m for m in sys.modules if m.startswith(('siamface.train', 'siamface.cli',"
        " 'siamface.web')) or m == 'matplotlib.pyplot']\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"

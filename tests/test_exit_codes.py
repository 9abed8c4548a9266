"""The exit-code rule of every command, on real inputs (siamface.cli._common):

0 success (verify: MATCH), 1 verify: NO MATCH, 2 usage error / unreadable input or config,
3 finished with some inputs skipped (count and first reasons on stderr).

One table, ``CASES``: per command at least one good and one bad input, each with the exact
exit code and the words stderr must use to name the problem. ``weights fetch`` downloads from
a loopback HTTP server; FaceNet runs on a generated (random) weights file. The user's weights
cache is never touched (``SIAMFACE_CACHE`` points into ``tmp_path``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import lfw_image
from siamface.cli._common import EXIT_BAD_INPUT, EXIT_NO_MATCH, EXIT_OK, EXIT_PARTIAL
from siamface.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
USAGE = "usage"  # expected outcome: argparse's SystemExit(2)
LOOPBACK = "loopback-test"  # backbone registered (per test) with a loopback URL
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's real weights cache."""
    monkeypatch.setenv("SIAMFACE_CACHE", str(tmp_path / "weights"))


# --- inputs -------------------------------------------------------------------------------


def _broken(path: Path) -> Path:
    """A text file named like an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is a text file, not a JPEG\n")
    return path


def _folder(root: Path, images: list[Path], broken: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copyfile(image, root / image.name)
    for i in range(broken):
        _broken(root / f"broken_{i}.jpg")
    return root


@pytest.fixture(scope="module")
def facenet_weights(tmp_path_factory) -> Path:
    """A safetensors file with FaceNet's tensor names and shapes and random values (the
    published weights cannot be downloaded here)."""
    import torch
    from safetensors.torch import save_file

    from siamface.backbones import create_backbone

    torch.manual_seed(0)
    net = create_backbone("facenet", pretrained=False)
    path = tmp_path_factory.mktemp("facenet") / "random-facenet.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


class _Server:
    """A loopback HTTP server serving ``files`` (URL path -> bytes); 404 for anything else."""

    def __init__(self, files: dict[str, bytes]):
        served = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                body = served.get(self.path)
                if body is None:
                    self.send_error(404, "no such file")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


PAYLOAD = np.random.default_rng(7).bytes(300_000)  # the "weights" the server publishes


@pytest.fixture(scope="module")
def weights_server() -> Iterator[_Server]:
    server = _Server({"/weights/loopback.pt": PAYLOAD})
    yield server
    server.close()


def _serve_weights(env: Env, path: str, sha256: str) -> Path:
    """Register backbone ``loopback-test`` whose weights are ``path`` on the loopback server
    with ``sha256`` (undone after the test); the cache file it would be fetched to."""
    from siamface.backbones import registry

    server = env.fixture("weights_server")
    for var in PROXY_VARS:  # loopback: straight to the server
        env.monkeypatch.delenv(var, raising=False)
    facenet = registry.get_pretrained_config("facenet")
    config = dataclasses.replace(facenet, name=LOOPBACK, weights_name=LOOPBACK,
                                 filename="loopback.pt", url=server.url + path, sha256=sha256)
    env.monkeypatch.setitem(registry._CONFIGS, LOOPBACK, config)
    return env.tmp / "weights" / "loopback.pt"


# --- the table ----------------------------------------------------------------------------


@dataclasses.dataclass
class Env:
    """What a case builds its command line from."""

    tmp: Path
    lfw: Path | None
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def face(self, name: str = "Aaron_Peirsol", index: int = 1) -> Path:
        if self.lfw is None:
            self.lfw = self.fixture("lfw_dir")  # skips without the local LFW copy
        return lfw_image(self.lfw, name, index)

    @property
    def a1(self) -> str:
        return str(self.face("Aaron_Peirsol", 1))

    @property
    def a2(self) -> str:  # the same person as a1: MATCH with the default model
        return str(self.face("Aaron_Peirsol", 2))

    @property
    def other(self) -> str:  # another person (distance ~0.9, threshold ~0.68): NO MATCH
        return str(self.face("Ann_Veneman", 1))

    @property
    def broken(self) -> str:
        return str(_broken(self.tmp / "broken.jpg"))

    def images(self, name: str, broken: int = 0, n: int = 2) -> Path:
        faces = [self.face("Aaron_Peirsol", i) for i in range(1, n + 1)]
        return _folder(self.tmp / name, faces, broken)


@dataclasses.dataclass
class Expect:
    argv: list[str]
    code: int | tuple[int, ...] | str  # an exit code, the codes allowed, or USAGE
    err: tuple[str, ...] = ()  # stderr must contain each of these
    out: tuple[str, ...] = ()  # stdout must contain each of these
    check: Callable[[str, str], None] | None = None  # (stdout, stderr) -> asserts


def _npz_rows(path: Path, rows: int, dim: int | None = None) -> Callable[[str, str], None]:
    def check(out: str, err: str) -> None:
        with np.load(path) as data:
            assert data["embeddings"].shape[0] == rows and len(data["paths"]) == rows
            if dim is not None:
                assert data["embeddings"].shape[1] == dim
    return check


# verify ---------------------------------------------------------------------------------------

def _verdict(out: str, verdict: str) -> None:
    assert out.startswith(verdict + " "), out


def verify_match(env: Env) -> Expect:
    return Expect(["verify", env.a1, env.a2], EXIT_OK,
                  check=lambda out, err: _verdict(out, "MATCH"))


def verify_no_match(env: Env) -> Expect:
    return Expect(["verify", env.a1, env.other], EXIT_NO_MATCH,
                  check=lambda out, err: _verdict(out, "NO MATCH"))


def verify_unreadable(env: Env) -> Expect:
    return Expect(["verify", env.a1, env.broken], EXIT_BAD_INPUT,
                  err=("error", "cannot read image", "broken.jpg"))


def verify_missing_image(env: Env) -> Expect:
    return Expect(["verify", env.a1, str(env.tmp / "missing.jpg")], EXIT_BAD_INPUT,
                  err=("error", "missing.jpg"))


def verify_bad_flag(env: Env) -> Expect:
    return Expect(["verify", env.a1, env.a2, "--crop", "diagonal"], USAGE,
                  err=("--crop", "invalid choice", "diagonal"))


def _pairs_file(env: Env, *lines: str) -> str:
    path = env.tmp / "pairs.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def verify_pairs_good(env: Env) -> Expect:
    """A list run is not one verdict: its NO MATCH line does not make the exit code 1."""
    def check(out: str, err: str) -> None:
        assert [line.split("  ")[0] for line in out.splitlines()] == ["MATCH", "NO MATCH"]

    return Expect(["verify", "--pairs", _pairs_file(env, f"{env.a1}\t{env.a2}\tsame",
                                                     f"{env.a1}\t{env.other}\tdifferent")],
                  EXIT_OK, err=("accuracy 100.00%",), check=check)


def verify_pairs_one_unreadable(env: Env) -> Expect:
    return Expect(["verify", "--pairs", _pairs_file(env, f"{env.a1}\t{env.a2}",
                                                     f"{env.a1}\t{env.broken}")],
                  EXIT_PARTIAL, err=("1 of 2 pair(s) not scored", "pairs.txt:2", "broken.jpg"),
                  out=("MATCH  ", "ERROR  -  ", "cannot read image"))


def verify_pairs_malformed(env: Env) -> Expect:
    return Expect(["verify", "--pairs", _pairs_file(env, f"{env.a1}\t{env.a2}", env.a1)],
                  EXIT_BAD_INPUT, err=("error", "pairs.txt:2", "TAB-separated"))


def verify_pairs_and_images(env: Env) -> Expect:
    return Expect(["verify", env.a1, "--pairs", str(env.tmp / "pairs.txt")], USAGE,
                  err=("usage", "--pairs FILE, not both"))


# analyze --------------------------------------------------------------------------------------

def analyze_good(env: Env) -> Expect:
    return Expect(["analyze", env.a1], EXIT_OK, out=(env.a1,))


def analyze_one_unreadable(env: Env) -> Expect:
    return Expect(["analyze", env.a1, env.broken], EXIT_PARTIAL,
                  err=("1 image(s) skipped", "broken.jpg"), out=(env.a1,))


def analyze_only_unreadable(env: Env) -> Expect:
    return Expect(["analyze", env.broken], EXIT_BAD_INPUT,
                  err=("error", "cannot read image", "broken.jpg"))


def analyze_bad_flag(env: Env) -> Expect:
    return Expect(["analyze", env.a1, "--max-pixels", "0"], USAGE,
                  err=("--max-pixels", "expected a whole number >= 1"))


# embed ----------------------------------------------------------------------------------------

def embed_good(env: Env) -> Expect:
    out = env.tmp / "emb.npz"
    return Expect(["embed", str(env.images("faces")), "--out", str(out), "--no-progress"],
                  EXIT_OK, out=("wrote 2 embeddings",), check=_npz_rows(out, 2))


def embed_one_broken(env: Env) -> Expect:
    out = env.tmp / "emb.npz"
    return Expect(["embed", str(env.images("faces", broken=1)), "--out", str(out),
                   "--no-progress"], EXIT_PARTIAL,
                  err=("1 image(s) skipped", "broken_0.jpg"), check=_npz_rows(out, 2))


def embed_missing_folder(env: Env) -> Expect:
    return Expect(["embed", str(env.tmp / "no-such-folder"), "--out", str(env.tmp / "e.npz")],
                  EXIT_BAD_INPUT, err=("error", "no-such-folder"))


def embed_bad_flag(env: Env) -> Expect:
    return Expect(["embed", str(env.tmp), "--out", "e.npz", "--batch-size", "0"], USAGE,
                  err=("--batch-size", "expected a whole number >= 1"))


# prepare --------------------------------------------------------------------------------------

def _prepare(env: Env, data: Path) -> list[str]:
    """The real detector on two LFW faces (both found): the default model's aligned crops."""
    return ["prepare", str(data), "--cache", str(env.tmp / "crops"), "--no-progress"]


def prepare_good(env: Env) -> Expect:
    return Expect(_prepare(env, env.images("data")), EXIT_OK,
                  out=("prepared 2 images", "2 detected", "0 failed"))


def prepare_one_broken(env: Env) -> Expect:
    return Expect(_prepare(env, env.images("data", broken=1)), EXIT_PARTIAL,
                  err=("1 image(s) skipped", "broken_0.jpg"), out=("2 detected", "1 failed"))


def prepare_missing_folder(env: Env) -> Expect:
    return Expect(_prepare(env, env.tmp / "no-such-folder"), EXIT_BAD_INPUT,
                  err=("error", "no-such-folder"))


def prepare_bad_flag(env: Env) -> Expect:
    return Expect(["prepare", str(env.tmp), "--cache", "c", "--workers", "0"], USAGE,
                  err=("--workers", "expected a whole number >= 1"))


# distort --------------------------------------------------------------------------------------

def _distort(env: Env, src: Path) -> list[str]:
    return ["distort", str(src), str(env.tmp / "out"), "--kinds", "fog", "--no-progress"]


def _fog_outputs(env: Env, n: int) -> Callable[[str, str], None]:
    def check(out: str, err: str) -> None:
        assert len(list((env.tmp / "out" / "fog").glob("*.jpg"))) == n
    return check


def distort_good(env: Env) -> Expect:
    return Expect(_distort(env, env.images("src")), EXIT_OK, out=("wrote 2", "failed 0"),
                  check=_fog_outputs(env, 2))


def distort_one_broken(env: Env) -> Expect:
    return Expect(_distort(env, env.images("src", broken=1)), EXIT_PARTIAL,
                  err=("1 image(s) skipped", "broken_0.jpg"), out=("failed 1",),
                  check=_fog_outputs(env, 2))


def distort_missing_source(env: Env) -> Expect:
    return Expect(_distort(env, env.tmp / "no-such-folder"), EXIT_BAD_INPUT,
                  err=("error", "no-such-folder", "not found"))


def distort_bad_flag(env: Env) -> Expect:
    return Expect(["distort", str(env.tmp), str(env.tmp / "o"), "--quality", "101"], USAGE,
                  err=("--quality", "expected an integer 1-100"))


# train ----------------------------------------------------------------------------------------

def train_tiny(env: Env) -> Expect:
    """Four persons, two images each, centre crops, one short head-only epoch (tiny.yaml)."""
    root = env.tmp / "people"
    for name in ("Aaron_Peirsol", "Adrien_Brody", "Abdullah_Gul", "Al_Sharpton"):
        _folder(root / name, [env.face(name, 1), env.face(name, 2)])
    out = env.tmp / "run"

    def check(stdout: str, stderr: str) -> None:
        assert (out / "model.safetensors").is_file()

    return Expect(["train", "--config", TINY, "--data", str(root), "--layout", "folders",
                   "--out", str(out), "--no-progress", "--set", "stage2.enabled=false",
                   "--set", "stage1.epochs=1", "--set", "run.max_steps_per_epoch=1",
                   "--set", "data.val_fraction=0.5"],
                  EXIT_OK, out=("checkpoint:",), check=check)


def train_missing_config(env: Env) -> Expect:
    return Expect(["train", "--config", str(env.tmp / "no-such-config.yaml"),
                   "--data", str(env.tmp), "--out", str(env.tmp / "run")],
                  EXIT_BAD_INPUT, err=("error", "no-such-config.yaml"))


def train_bad_flag(env: Env) -> Expect:
    return Expect(["train", "--layout", "sideways"], USAGE, err=("--layout", "sideways"))


# weights --------------------------------------------------------------------------------------

def weights_list(env: Env) -> Expect:
    return Expect(["weights", "list"], EXIT_OK, out=("facenet-vggface2", "dlib-resnet"))


def weights_path(env: Env) -> Expect:
    return Expect(["weights", "path", "facenet-vggface2"], EXIT_OK,
                  out=(str(env.tmp / "weights" / "20180402-114759-vggface2.pt"),))


def weights_path_unknown(env: Env) -> Expect:
    return Expect(["weights", "path", "no-such-weights"], EXIT_BAD_INPUT,
                  err=("error", "unknown", "no-such-weights"))


def weights_bad_action(env: Env) -> Expect:
    return Expect(["weights", "download", "facenet"], USAGE, err=("invalid choice", "download"))


def weights_fetch_good(env: Env) -> Expect:
    target = _serve_weights(env, "/weights/loopback.pt", hashlib.sha256(PAYLOAD).hexdigest())

    def check(out: str, err: str) -> None:
        assert target.read_bytes() == PAYLOAD
        assert sorted(p.name for p in target.parent.iterdir()) == [target.name]

    return Expect(["weights", "fetch", LOOPBACK], EXIT_OK, out=(str(target),), check=check)


def _nothing_cached(target: Path) -> Callable[[str, str], None]:
    def check(out: str, err: str) -> None:
        assert not target.parent.exists() or not any(target.parent.iterdir())
    return check


def weights_fetch_wrong_sha256(env: Env) -> Expect:
    wrong = hashlib.sha256(b"something else").hexdigest()
    target = _serve_weights(env, "/weights/loopback.pt", wrong)
    return Expect(["weights", "fetch", LOOPBACK], EXIT_BAD_INPUT,
                  err=("error", "sha256", hashlib.sha256(PAYLOAD).hexdigest(),
                       f"expected {wrong}", "nothing was saved"),
                  check=_nothing_cached(target))


def weights_fetch_404(env: Env) -> Expect:
    target = _serve_weights(env, "/weights/gone.pt", hashlib.sha256(PAYLOAD).hexdigest())
    return Expect(["weights", "fetch", LOOPBACK], EXIT_BAD_INPUT,
                  err=("error", "404", "/weights/gone.pt"), check=_nothing_cached(target))


def weights_fetch_unknown(env: Env) -> Expect:
    return Expect(["weights", "fetch", "no-such-weights"], EXIT_BAD_INPUT,
                  err=("error", "unknown", "no-such-weights"))


# FaceNet with a weights file ------------------------------------------------------------------

def facenet_verify(env: Env) -> Expect:
    """Random weights: either verdict, but 0 or 1 and FaceNet's own threshold."""
    from siamface.backbones import get_pretrained_config

    weights = env.fixture("facenet_weights")
    threshold = get_pretrained_config("facenet").default_threshold

    def check(out: str, err: str) -> None:
        result = json.loads(out)
        assert result["threshold_source"] == "facenet default"
        assert result["threshold"] == pytest.approx(threshold)
        assert isinstance(result["is_match"], bool)
        assert result["is_match"] is (result["distance"] <= threshold)

    return Expect(["verify", env.a1, env.other, "--json", "--backbone", "facenet",
                   "--backbone-weights", str(weights)], (EXIT_OK, EXIT_NO_MATCH), check=check)


def facenet_embed(env: Env) -> Expect:
    out = env.tmp / "emb.npz"
    return Expect(["embed", str(env.images("faces")), "--out", str(out), "--no-progress",
                   "--backbone", "facenet", "--backbone-weights",
                   str(env.fixture("facenet_weights"))],
                  EXIT_OK, check=_npz_rows(out, 2, dim=512))


def facenet_missing_weights_file(env: Env) -> Expect:
    return Expect(["verify", env.a1, env.a2, "--backbone", "facenet", "--backbone-weights",
                   str(env.tmp / "no-such-weights.safetensors")], EXIT_BAD_INPUT,
                  err=("error", "no-such-weights.safetensors", "does not exist"))


def facenet_not_fetched(env: Env) -> Expect:
    return Expect(["verify", env.a1, env.a2, "--backbone", "facenet"], EXIT_BAD_INPUT,
                  err=("error", "not found", "siamface weights fetch facenet-vggface2",
                       "--backbone-weights PATH"))


# evaluate / calibrate / cache (the shipped example photos: no LFW needed) -------------------

def _examples(env: Env, name: str = "examples") -> Path:
    from siamface import examples

    return _folder(env.tmp / name, [Path(examples.path(n)) for n in examples.names()])


def evaluate_flat(env: Env) -> Expect:
    out = env.tmp / "report"

    def check(stdout: str, err: str) -> None:
        assert (out / "report.html").is_file() and (out / "metrics.json").is_file()

    return Expect(["evaluate", "--data", str(_examples(env)), "--layout", "flat", "--pairs", "4",
                   "--out", str(out), "--cache", str(env.tmp / "c"), "--no-progress"], EXIT_OK,
                  out=("accuracy",), check=check)


def evaluate_one_unreadable(env: Env) -> Expect:
    folder = _examples(env)
    _broken(folder / "kofi_annan_3.jpg")
    return Expect(["evaluate", "--data", str(folder), "--layout", "flat", "--pairs", "6",
                   "--out", str(env.tmp / "r"), "--cache", str(env.tmp / "c"), "--no-progress"],
                  EXIT_PARTIAL, err=("skipped", "unreadable"))


def evaluate_missing_data(env: Env) -> Expect:
    return Expect(["evaluate", "--data", str(env.tmp / "nowhere"), "--out", str(env.tmp / "r")],
                  EXIT_BAD_INPUT, err=("error", "nowhere", "not found"))


def evaluate_bad_flag(env: Env) -> Expect:
    return Expect(["evaluate", "--data", ".", "--out", "r", "--pairs", "zero"], USAGE)


def calibrate_flat(env: Env) -> Expect:
    out = env.tmp / "calibrated.safetensors"

    def check(stdout: str, err: str) -> None:
        from siamface.checkpoint import read_checkpoint_info

        info = read_checkpoint_info(out)
        assert info.calibration["method"] == "accuracy" and info.calibration["pairs"] == 3

    return Expect(["calibrate", "--data", str(_examples(env)), "--layout", "flat", "--pairs",
                   "4", "--method", "accuracy", "--out", str(out), "--cache",
                   str(env.tmp / "c"), "--no-progress"], EXIT_OK, out=("threshold",),
                  check=check)


def calibrate_wrong_suffix(env: Env) -> Expect:
    return Expect(["calibrate", "--data", str(_examples(env)), "--out",
                   str(env.tmp / "model.pt")], EXIT_BAD_INPUT, err=("error", ".safetensors"))


def calibrate_bad_flag(env: Env) -> Expect:
    return Expect(["calibrate", "--data", ".", "--out", "m.safetensors", "--method", "magic"],
                  USAGE)


def cache_info(env: Env) -> Expect:
    return Expect(["cache", "info", "--cache", str(env.tmp / "empty")], EXIT_OK,
                  out=("not created yet",))


def cache_bad_action(env: Env) -> Expect:
    return Expect(["cache", "purge"], USAGE)


# identify -------------------------------------------------------------------------------------

def _identify_folders(env: Env, broken: bool = False) -> tuple[Path, Path]:
    gallery, probes = env.tmp / "gallery", env.tmp / "probes"
    _folder(gallery / "Aaron_Peirsol", [env.face("Aaron_Peirsol", 1)])
    _folder(gallery / "Ann_Veneman", [env.face("Ann_Veneman", 1)])
    _folder(probes / "Aaron_Peirsol", [env.face("Aaron_Peirsol", 2)], broken=int(broken))
    return gallery, probes


def identify_good(env: Env) -> Expect:
    gallery, probes = _identify_folders(env)
    return Expect(["identify", "--gallery", str(gallery), "--probes", str(probes),
                   "--cache", str(env.tmp / "cache"), "--no-progress"], EXIT_OK,
                  out=("Top-1:", "100.00% (1/1)"))


def identify_one_broken(env: Env) -> Expect:
    gallery, probes = _identify_folders(env, broken=True)
    return Expect(["identify", "--gallery", str(gallery), "--probes", str(probes),
                   "--cache", str(env.tmp / "cache"), "--no-progress"], EXIT_PARTIAL,
                  err=("1 image(s) skipped", "broken_0.jpg"), out=("Top-1:",))


def identify_empty_gallery(env: Env) -> Expect:
    (env.tmp / "empty").mkdir()
    _, probes = _identify_folders(env)
    return Expect(["identify", "--gallery", str(env.tmp / "empty"), "--probes", str(probes)],
                  EXIT_BAD_INPUT, err=("error", "gallery folder", "has no images"))


def identify_bad_flag(env: Env) -> Expect:
    return Expect(["identify", "--gallery", str(env.tmp), "--probes", str(env.tmp),
                   "--mode", "median"], USAGE, err=("--mode", "invalid choice", "median"))


# serve (each fails before binding a port or loading a model) ---------------------------------

def serve_missing_model(env: Env) -> Expect:
    return Expect(["serve", "--no-ui", "--port", "0", "--model",
                   str(env.tmp / "no-such-model.safetensors")], EXIT_BAD_INPUT,
                  err=("error", "no-such-model.safetensors", "does not exist"))


def serve_missing_allow_path(env: Env) -> Expect:
    return Expect(["serve", "--no-ui", "--port", "0", "--allow-path", str(env.tmp / "nowhere")],
                  EXIT_BAD_INPUT, err=("error", "--allow-path", "nowhere", "not a folder"))


def serve_without_web_extra(env: Env) -> Expect:
    env.monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    return Expect(["serve", "--no-ui", "--port", "0"], EXIT_BAD_INPUT,
                  err=("error", "uvicorn", "pip install 'siamface[web]'"))


def serve_bad_flag(env: Env) -> Expect:
    return Expect(["serve", "--port", "0", "--queue-size", "0"], USAGE,
                  err=("--queue-size", "expected a whole number >= 1"))


# export / --runtime onnx -----------------------------------------------------------------------

def export_good(env: Env) -> Expect:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = env.tmp / "onnx"
    return Expect(["export", "--format", "onnx", "--out", str(out)], EXIT_OK, out=(str(out),),
                  check=lambda o, e: (out / "model.onnx").is_file())


def export_no_onnx_path(env: Env) -> Expect:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from _checkpoint_helpers import rewrite_checkpoint
    from siamface.service import default_model_path

    ckpt = rewrite_checkpoint(default_model_path(), env.tmp / "facenet.safetensors",
                              lambda m: m["backbone"].update(name="facenet"))
    return Expect(["export", "--format", "onnx", "--model", str(ckpt)], EXIT_BAD_INPUT,
                  err=("error", "backbone 'facenet' has no ONNX export path"))


def export_int8_without_calibration(env: Env) -> Expect:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    return Expect(["export", "--format", "onnx", "--int8", "--out", str(env.tmp)],
                  EXIT_BAD_INPUT, err=("error", "--int8", "--calibration DIR"))


def export_bad_format(env: Env) -> Expect:
    return Expect(["export", "--format", "tflite"], USAGE, err=("invalid choice", "tflite"))


def verify_onnx_not_exported(env: Env) -> Expect:
    return Expect(["verify", "--runtime", "onnx", env.a1, env.a2], EXIT_BAD_INPUT,
                  err=("error", "no ONNX export", "siamface export --format onnx --with-detector"))


def bench_good(env: Env) -> Expect:
    return Expect(["bench", str(Path(env.a1).parent), "--images", "2", "--no-cold-start"],
                  EXIT_OK, out=("embed + gender", "GFLOP/s"))


def bench_empty_folder(env: Env) -> Expect:
    return Expect(["bench", str(env.tmp), "--no-cold-start"], EXIT_BAD_INPUT,
                  err=("error", "no images under"))


def bench_bad_flag(env: Env) -> Expect:
    return Expect(["bench", str(env.tmp), "--images", "0"], USAGE, err=("--images",))


SLOW = {"train_tiny", "facenet_verify", "facenet_embed", "export_good"}
CASES = [verify_match, verify_no_match, verify_unreadable, verify_missing_image,
         verify_bad_flag,
         verify_pairs_good, verify_pairs_one_unreadable, verify_pairs_malformed,
         verify_pairs_and_images,
         analyze_good, analyze_one_unreadable, analyze_only_unreadable, analyze_bad_flag,
         embed_good, embed_one_broken, embed_missing_folder, embed_bad_flag,
         prepare_good, prepare_one_broken, prepare_missing_folder, prepare_bad_flag,
         distort_good, distort_one_broken, distort_missing_source, distort_bad_flag,
         train_tiny, train_missing_config, train_bad_flag,
         weights_list, weights_path, weights_path_unknown, weights_bad_action,
         weights_fetch_good, weights_fetch_wrong_sha256, weights_fetch_404,
         weights_fetch_unknown,
         facenet_verify, facenet_embed, facenet_missing_weights_file, facenet_not_fetched,
         evaluate_flat, evaluate_one_unreadable, evaluate_missing_data, evaluate_bad_flag,
         calibrate_flat, calibrate_wrong_suffix, calibrate_bad_flag,
         cache_info, cache_bad_action,
         identify_good, identify_one_broken, identify_empty_gallery, identify_bad_flag,
         serve_missing_model, serve_missing_allow_path, serve_without_web_extra, serve_bad_flag,
         export_good, export_no_onnx_path, export_int8_without_calibration, export_bad_format,
         verify_onnx_not_exported,
         bench_good, bench_empty_folder, bench_bad_flag]


def test_every_command_is_covered():
    from siamface.cli.main import COMMANDS

    covered = {case.__name__.split("_")[0] for case in CASES}
    assert set(COMMANDS) <= covered


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.__name__,
                 marks=[pytest.mark.slow] if case.__name__ in SLOW else [])
    for case in CASES
])
def test_exit_code(case, tmp_path, request, monkeypatch, capsys):
    env = Env(tmp=tmp_path, lfw=None, request=request, monkeypatch=monkeypatch)
    expect = case(env)
    capsys.readouterr()  # only what the command prints
    if expect.code == USAGE:
        with pytest.raises(SystemExit) as info:
            main(expect.argv)
        code, wanted = info.value.code, EXIT_BAD_INPUT
    else:
        code, wanted = main(expect.argv), expect.code
    out, err = capsys.readouterr()
    if isinstance(wanted, tuple):
        assert code in wanted, err
    else:
        assert code == wanted, err
    for fragment in expect.err:
        assert fragment in err, f"stderr lacks {fragment!r}:\n{err}"
    for fragment in expect.out:
        assert fragment in out, f"stdout lacks {fragment!r}:\n{out}"
    if code in (EXIT_OK, EXIT_NO_MATCH):
        assert "error" not in err.lower(), err
    if expect.argv[0] == "verify" and "--json" in expect.argv:  # the code is the verdict's
        assert code == (EXIT_OK if json.loads(out)["is_match"] else EXIT_NO_MATCH)
    if expect.check is not None:
        expect.check(out, err)


# --- the weights flag named in messages is the parser's ------------------------------------


def _weights_option(command: str) -> str:
    """The long option string of ``command``'s ``backbone_weights`` argument, from its parser."""
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command")
    action = next(a for a in sub.choices[command]._actions if a.dest == "backbone_weights")
    return max(action.option_strings, key=len)


def test_missing_weights_message_names_the_real_flag(tmp_path, capsys):
    """The "weights not found" messages name the flag exactly as the parsers define it."""
    import siamface.backbones.weights as weights_module
    from siamface.backbones import create_backbone, get_pretrained_config
    from siamface.errors import WeightsNotFoundError

    flag = _weights_option("verify")
    assert flag.startswith("--") and {_weights_option(c) for c in ("analyze", "embed")} == {flag}
    # the CLI: published FaceNet weights not fetched (the cache is an empty tmp folder)
    images = []
    for i in range(2):
        images.append(tmp_path / f"face{i}.png")
        Image.fromarray(np.full((64, 64, 3), 100 + i, np.uint8)).save(images[-1])
    assert main(["verify", *map(str, images), "--backbone", "facenet"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{flag} PATH" in err and " --weights" not in err, err
    # the library messages behind it: cache miss, and a package-sourced backbone without it
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("facenet")
    assert f"{flag} PATH" in str(info.value)
    packaged = dataclasses.replace(get_pretrained_config("dlib-resnet"),
                                   package="siamface_no_such_package")
    with pytest.raises(WeightsNotFoundError) as info:
        weights_module.expected_weights_path(packaged)
    assert "siamface_no_such_package" in str(info.value) and f"{flag} PATH" in str(info.value)

"""The web app's defences: hostile zips, model files that are not siamface checkpoints,
request size, the API key, the Host check, and no uploaded photo left on disk."""

from __future__ import annotations

import base64
import io
import os
import pickle
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from _web_helpers import (
    GENUINE,
    client_for,
    jpeg,
    lfw_bytes,
    make_state,
    shared_service,
    zip_bytes,
)

API = "/api/v1"


@pytest.fixture(scope="module")
def web_service():
    return shared_service()


@pytest.fixture(scope="module")
def state(web_service):
    s = make_state(web_service)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(state):
    return client_for(state)


@pytest.fixture(scope="module")
def face(lfw_dir) -> bytes:
    return lfw_bytes(lfw_dir, *GENUINE[0])


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Every temporary file of this process (and Gradio's) goes to one empty folder."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder / "gradio"))
    return folder


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- hostile zips -----------------------------------------------------------------------------


def _zip_with(info: zipfile.ZipInfo, data: bytes, others: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in others.items():
            zf.writestr(name, content)
        zf.writestr(info, data)
    return out.getvalue()


def traversal_zip(face: bytes) -> bytes:
    return zip_bytes({"faces/ok_1.jpg": face, "../evil_1.jpg": face})


def absolute_zip(face: bytes) -> bytes:
    info = zipfile.ZipInfo("faces/abs_1.jpg")
    info.filename = info.orig_filename = "/tmp/evil_abs_1.jpg"  # as a hostile tool writes it
    return _zip_with(info, face, {"faces/ok_1.jpg": face})


def symlink_zip(face: bytes) -> bytes:
    info = zipfile.ZipInfo("faces/link_1.jpg")
    info.create_system = 3  # Unix: external_attr holds the mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip_with(info, b"/etc/passwd", {"faces/ok_1.jpg": face})


def many_members_zip(n: int = 10_000) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"f/p{i}_1.jpg", b"x")
    return out.getvalue()


def bomb_zip(expanded: int = 1 << 30) -> bytes:
    """One member of ``expanded`` zero bytes (1 GiB) in about 1 MB. The deflate stream is one
    1 MiB block compressed once and repeated (a full flush makes each block independent), and
    the zip is written by hand: streaming 1 GiB through zipfile would take many seconds."""
    chunk = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    data = block * (expanded // len(chunk)) + comp.flush()
    crc = 0
    for _ in range(expanded // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    name = b"faces/bomb_1.jpg"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data),
                        expanded, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, 0, 8, 0, 0x21,
                          crc, len(data), expanded, len(name), 0, 0, 0, 0,
                          (stat.S_IFREG | 0o644) << 16, 0) + name
    offset = len(local) + len(data)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    return local + data + central + end


def test_the_bomb_is_what_it_claims():
    blob = bomb_zip()
    assert len(blob) < 1.2e6
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        (info,) = zf.infolist()
        assert info.file_size == 1 << 30 and info.compress_type == zipfile.ZIP_DEFLATED
        with zf.open(info) as fh:
            assert fh.read(1 << 20) == bytes(1 << 20)


HOSTILE = {
    "traversal": (traversal_zip, ("'..' component",)),
    "absolute": (absolute_zip, ("absolute path",)),
    "symlink": (symlink_zip, ("symbolic link",)),
    "members": (lambda face: many_members_zip(), ("10,000 members", "limit 5,000")),
    "bomb": (lambda face: bomb_zip(), ("expands",)),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_zip_is_refused_and_nothing_is_written(kind, client, face, private_tmp,
                                                      tmp_path):
    build, words = HOSTILE[kind]
    archive = build(face)
    r = client.post(f"{API}/identify", files=[("gallery", ("g.zip", archive, "application/zip")),
                                              ("probes", jpeg("p.jpg", face))])
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "bad_archive"
    assert "refusing zip" in body["message"] and "nothing was kept" in body["message"]
    for word in words:
        assert word in body["message"], body["message"]
    assert everything_under(private_tmp) == []  # the private upload folder is gone too
    # nothing escaped either: "../evil_1.jpg" would land beside the extraction folder or above
    # it, "/tmp/evil_abs_1.jpg" where it names (other tests' own evil.zip files are not ours)
    assert not list(tmp_path.rglob("evil_*")) and not list(tmp_path.parent.glob("evil_*"))
    assert not Path("/tmp/evil_abs_1.jpg").exists()
    d = client.post(f"{API}/dataset-test", files={"dataset": ("d.zip", archive, "application/zip")})
    assert d.status_code == 400 and d.json()["code"] == "bad_archive"
    assert everything_under(private_tmp) == []


def test_a_gallery_that_is_not_a_zip(client, face):
    r = client.post(f"{API}/identify", files=[("gallery", ("g.zip", b"plain text", "application/zip")),
                                              ("probes", jpeg("p.jpg", face))])
    assert r.status_code == 415 and "not a zip" in r.json()["message"]
    r = client.post(f"{API}/identify", files=[("gallery", ("g.txt", b"PK", "text/plain")),
                                              ("probes", jpeg("p.jpg", face))])
    assert r.status_code == 415 and r.json()["code"] == "unsupported_type"


# -- model uploads ----------------------------------------------------------------------------


def _upload(client, name: str, data: bytes):
    return client.post(f"{API}/models", files={"file": (name, data, "application/octet-stream")})


def torch_pth() -> bytes:
    import torch

    out = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, out)
    return out.getvalue()


def test_foreign_model_files_are_refused_with_the_reason(web_service, tmp_path):
    state = make_state(web_service, models_dir=tmp_path / "models")
    client = client_for(state)
    try:
        pickled = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)
        pth = torch_pth()
        h5 = b"\x89HDF\r\n\x1a\n" + bytes(512)
        cases = [
            ("model.pkl", pickled, "pickle"),
            ("model.pth", pth, "torch pickle"),
            ("model.h5", h5, "Keras"),
            # renamed: judged from the bytes, not the name
            ("pickled.safetensors", pickled, "pickle"),
            ("torch.safetensors", pth, "torch.save"),
            ("keras.safetensors", h5, "HDF5"),
            ("text.safetensors", b"hello, world", "safetensors header"),
        ]
        for name, data, why in cases:
            r = _upload(client, name, data)
            assert r.status_code == 415, (name, r.text)
            body = r.json()
            assert body["code"] == "unsupported_type", body
            assert why in body["message"] and "only siamface checkpoints" in body["message"]
        import torch
        from safetensors.torch import save as save_safetensors

        plain = save_safetensors({"w": torch.zeros(2)})  # safetensors, not siamface's
        r = _upload(client, "plain.safetensors", plain)
        assert r.status_code == 400 and r.json()["code"] == "bad_checkpoint", r.text
        assert "not a siamface checkpoint" in r.json()["message"]
        assert sorted(p.name for p in (tmp_path / "models").iterdir()) == []  # nothing kept
        assert [m["name"] for m in client.get(f"{API}/models").json()["models"]] == ["default"]
    finally:
        state.close()


def test_a_siamface_checkpoint_is_accepted_and_usable(web_service, tmp_path, face, lfw_dir):
    from siamface.service import default_model_path

    state = make_state(web_service, models_dir=tmp_path / "models")
    client = client_for(state)
    try:
        data = default_model_path().read_bytes()
        r = _upload(client, "mine.safetensors", data)
        assert r.status_code == 201, r.text
        added = r.json()
        assert added["name"] == "mine" and added["backbone"] == "dlib-resnet"
        assert added["threshold"] == pytest.approx(web_service.threshold)
        assert (tmp_path / "models" / "mine.safetensors").read_bytes() == data
        names = [m["name"] for m in client.get(f"{API}/models").json()["models"]]
        assert names == ["default", "mine"]
        again = _upload(client, "mine.safetensors", data)  # the same file again: fine
        assert again.status_code == 201
        other = lfw_bytes(lfw_dir, *GENUINE[1])
        b64 = base64.b64encode
        v = client.post(f"{API}/verify", json={"a": b64(face).decode(), "b": b64(other).decode(),
                                               "model": "mine"})
        assert v.status_code == 200 and v.json()["model"] == "mine" and v.json()["is_match"]
        assert _upload(client, "default.safetensors", data).json()["code"] == "model_exists"
    finally:
        state.close()


# -- size, key, host --------------------------------------------------------------------------


def test_a_request_over_the_size_limit_gets_413(client, state):
    limit = state.config.max_request_bytes
    r = client.post(f"{API}/verify", files={"a": jpeg("big.jpg", bytes(limit + 1)),
                                            "b": jpeg("b.jpg", b"x")})
    assert r.status_code == 413 and r.json()["code"] == "too_large"


def test_api_key(web_service, face, monkeypatch):
    monkeypatch.setenv("SIAMFACE_API_KEY", "s3cret-key")
    state = make_state(web_service)
    assert state.config.api_key == "s3cret-key"
    client = client_for(state)
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"},
                        {"Authorization": "Basic czNjcmV0LWtleQ=="}):
            r = client.get(f"{API}/models", headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "unauthorized", headers
            assert r.headers["www-authenticate"] == "Bearer"
        r = client.post(f"{API}/verify", files={"a": jpeg("a", face), "b": jpeg("b", face)})
        assert r.status_code == 401  # refused before the body is read
        good = {"Authorization": "Bearer s3cret-key"}
        assert client.get(f"{API}/models", headers=good).status_code == 200
        r = client.post(f"{API}/verify", files={"a": jpeg("a", face), "b": jpeg("b", face)},
                        headers=good)
        assert r.status_code == 200 and r.json()["is_match"] is True
        assert client.get(f"{API}/health").status_code == 200  # open: liveness only
    finally:
        state.close()


def test_loopback_server_refuses_other_host_names(web_service):
    state = make_state(web_service, allowed_hosts=["127.0.0.1", "localhost"])
    try:
        client = client_for(state)
        assert client.get(f"{API}/health", headers={"Host": "127.0.0.1:7860"}).status_code == 200
        r = client.get(f"{API}/health", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and r.json()["code"] == "bad_host"
    finally:
        state.close()


# -- nothing kept -----------------------------------------------------------------------------


def test_no_uploaded_image_remains_on_disk(client, lfw_dir, private_tmp, monkeypatch):
    """A 2+ MB upload (over Starlette's 1 MB spooling threshold) is verified without any
    temporary file being created, and the temporary folders stay empty."""
    with Image.open(lfw_dir / "images" / GENUINE[0][0] / f"{GENUINE[0][0]}_0001.jpg") as im:
        big = im.convert("RGB").resize((1100, 1100), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, "PNG", compress_level=0)  # 3.6 MB
    photo = out.getvalue()
    assert len(photo) > 2 << 20
    created = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        real = getattr(tempfile, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            created.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, spy)
    r = client.post(f"{API}/verify", files={"a": ("big.png", photo, "image/png"),
                                            "b": jpeg("b.jpg", lfw_bytes(lfw_dir, *GENUINE[1]))})
    assert r.status_code == 200 and r.json()["is_match"] is True, r.text
    assert created == []
    assert everything_under(private_tmp) == []
    assert not (Path(os.environ["GRADIO_TEMP_DIR"])).exists()


def test_api_key_also_guards_the_ui(web_service):
    """The UI calls the actions directly, so with a key it asks for the key as its password."""
    pytest.importorskip("gradio")
    pytest.importorskip("siamface.web.ui")
    from siamface.web.app import create_app

    state = make_state(web_service, api_key="k3y")
    try:
        from fastapi.testclient import TestClient

        client = TestClient(create_app(state=state, ui=True))
        assert client.get("/config").status_code == 401
        assert client.post("/login", data={"username": "me", "password": "wrong"}
                           ).status_code == 400
        assert client.post("/login", data={"username": "me", "password": "k3y"}
                           ).status_code == 200
        assert client.get("/config").status_code == 200  # the session cookie
        assert client.get(f"{API}/models").status_code == 401  # the API still wants the header
    finally:
        state.close()

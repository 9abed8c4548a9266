"""The REST API in-process (TestClient, no UI) on real LFW photos: every endpoint, multipart
and base64 JSON, and every documented error code."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from _web_helpers import (
    GENUINE,
    GROUP,
    IMPOSTOR,
    client_for,
    group_photo,
    jpeg,
    lfw_bytes,
    make_state,
    noise_png,
    shared_service,
    zip_bytes,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "docs" / "result.schema.json").read_text())
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
def photos(lfw_dir):
    (p1, i1), (p2, i2) = GENUINE
    return {"a1": lfw_bytes(lfw_dir, p1, i1), "a2": lfw_bytes(lfw_dir, p2, i2),
            "other": lfw_bytes(lfw_dir, *IMPOSTOR)}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_verify_schema(body: dict) -> None:
    """The API's verify answer is the CLI's `verify --json` document plus the model name."""
    doc = {k: v for k, v in body.items() if k != "model"}
    schema = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"],
              "$ref": "#/$defs/verify"}
    jsonschema.validate(doc, schema)


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# -- verify -----------------------------------------------------------------------------------


def test_verify_genuine_pair_matches_multipart(client, photos, web_service):
    r = client.post(f"{API}/verify", files={"a": jpeg("a1.jpg", photos["a1"]),
                                            "b": jpeg("a2.jpg", photos["a2"])})
    assert r.status_code == 200, r.text
    body = r.json()
    check_verify_schema(body)
    assert body["status"] == "match" and body["is_match"] is True
    assert body["distance"] < body["threshold"] == pytest.approx(web_service.threshold)
    assert body["threshold_source"] == web_service.info.threshold_source
    assert body["model"] == "default"
    for side, name in (("a", "a1.jpg"), ("b", "a2.jpg")):
        face = body[side]
        assert face["source"] == name and face["detected"] and face["no_face"] is None
        assert face["gender"]["label"] == "male" and len(face["box"]) == 4
        assert len(face["landmarks"]) == 5


def test_verify_impostor_pair_does_not_match_json(client, photos):
    r = client.post(f"{API}/verify", json={"a": b64(photos["a1"]),
                                           "b": "data:image/jpeg;base64," + b64(photos["other"])})
    assert r.status_code == 200, r.text
    body = r.json()
    check_verify_schema(body)
    assert body["status"] == "no_match" and body["is_match"] is False
    assert body["distance"] > body["threshold"]
    assert body["b"]["gender"]["label"] == "female"


def test_verify_same_answer_from_both_encodings_and_a_user_threshold(client, photos):
    multipart = client.post(f"{API}/verify", files={"a": jpeg("a", photos["a1"]),
                                                    "b": jpeg("b", photos["other"])},
                            data={"threshold": "2.0", "crop": "aligned"}).json()
    js = client.post(f"{API}/verify", json={"a": b64(photos["a1"]), "b": b64(photos["other"]),
                                            "threshold": 2.0, "crop": "aligned"}).json()
    assert multipart["distance"] == pytest.approx(js["distance"], abs=1e-6)
    assert multipart["status"] == js["status"] == "match"  # 2.0 accepts anyone
    assert js["threshold"] == 2.0 and js["threshold_source"] == "user"


def test_verify_crop_modes_are_used(client, photos):
    r = client.post(f"{API}/verify", json={"a": b64(photos["a1"]), "b": b64(photos["a2"]),
                                           "crop": "center"})
    assert r.status_code == 200, r.text
    assert r.json()["a"]["crop"] == "center" and r.json()["b"]["crop"] == "center"


def test_verify_noise_fallback_policy_and_require_face(client, photos):
    noise = noise_png()
    never = client.post(f"{API}/verify", json={"a": b64(noise), "b": b64(photos["a1"]),
                                               "fallback_policy": "never"})
    assert never.status_code == 200, never.text
    body = never.json()
    check_verify_schema(body)
    assert body["status"] == "no_face_a" and body["is_match"] is None
    assert body["a"]["no_face"] and body["a"]["gender"] is None
    always = client.post(f"{API}/verify", files={"a": ("noise.png", noise, "image/png"),
                                                 "b": jpeg("a1.jpg", photos["a1"])},
                         data={"fallback_policy": "always"}).json()
    assert always["status"] in ("match", "no_match")
    assert always["a"]["fallback"] == "center-crop" and always["a"]["no_face"] is None
    for policy in ("never", "auto"):
        r = client.post(f"{API}/verify", json={"a": b64(noise), "b": b64(photos["a1"]),
                                               "fallback_policy": policy,
                                               "require_face": True})
        assert "a" in error(r, 422, "no_face")["message"]


# -- analyze, embed ---------------------------------------------------------------------------


def test_analyze_single_face_photo(client, photos):
    r = client.post(f"{API}/analyze", files={"image": jpeg("a1.jpg", photos["a1"])})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 1 and len(body["faces"]) == 1
    face = body["faces"][0]
    assert face["detected"] and face["gender"]["label"] == "male"
    assert 0.5 <= face["gender"]["probability"] <= 1
    jsonschema.validate(face, {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/face"})


def test_analyze_group_photo_returns_every_face(client, lfw_dir):
    photo = group_photo(lfw_dir)
    body = client.post(f"{API}/analyze", json={"image": b64(photo)}).json()
    assert body["count"] == len(GROUP) == len(body["faces"])
    panels = {}
    for face in body["faces"]:
        assert face["detected"] and face["gender"] is not None
        centre = (face["box"][0] + face["box"][2]) / 2
        panels[int(centre // 250)] = face["gender"]["label"]
    assert panels == {k: gender for k, (_, _, gender) in enumerate(GROUP)}
    one = client.post(f"{API}/analyze", files={"image": jpeg("group.jpg", photo)},
                      data={"all_faces": "false"}).json()
    assert one["count"] == 1 and one["faces"][0]["select"] == "central"


def test_analyze_noise(client):
    body = client.post(f"{API}/analyze", json={"image": b64(noise_png()),
                                               "fallback_policy": "never"}).json()
    assert body["count"] == 0 and body["faces"][0]["no_face"]
    r = client.post(f"{API}/analyze", json={"image": b64(noise_png()), "require_face": True,
                                            "fallback_policy": "never"})
    error(r, 422, "no_face")


def test_embed_multipart_and_json(client, photos, web_service):
    r = client.post(f"{API}/embed", files=[("images", jpeg("a1.jpg", photos["a1"])),
                                           ("images", jpeg("a2.jpg", photos["a2"]))])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dim"] == web_service.model.embedding_dim
    assert [x["source"] for x in body["results"]] == ["a1.jpg", "a2.jpg"]
    assert all(len(x["embedding"]) == body["dim"] for x in body["results"])
    js = client.post(f"{API}/embed", json={"images": [b64(photos["a1"]), b64(noise_png())],
                                           "fallback_policy": "never"}).json()
    assert js["results"][0]["embedding"] == pytest.approx(body["results"][0]["embedding"],
                                                          abs=1e-3)  # batch noise
    assert js["results"][1]["embedding"] is None and js["results"][1]["no_face"]
    r = client.post(f"{API}/embed", json={"images": [b64(noise_png())],
                                          "fallback_policy": "never", "require_face": True})
    error(r, 422, "no_face")


# -- identify, dataset test -------------------------------------------------------------------

PERSONS = ("Aaron_Peirsol", "Ann_Veneman", "Abdullah_Gul")


def test_identify_ranks_the_right_person(client, lfw_dir):
    gallery = zip_bytes({f"gallery/{p}/{i}.jpg": lfw_bytes(lfw_dir, p, i)
                         for p in PERSONS for i in (1, 2)})
    probes = [("probes", jpeg(f"{p}_3.jpg", lfw_bytes(lfw_dir, p, 3))) for p in PERSONS]
    r = client.post(f"{API}/identify", files=[("gallery", ("g.zip", gallery, "application/zip")),
                                              *probes], data={"k": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["gallery"] == {"persons": 3, "images": 6, "mode": "mean", "skipped": []}
    for person, row in zip(PERSONS, body["probes"]):
        assert row["probe"] == f"{person}_3.jpg"
        assert row["matches"][0]["person"] == person
        assert len(row["matches"]) == 2 and row["accepted"] is None
        assert row["matches"][0]["distance"] <= row["matches"][1]["distance"]
    flat = zip_bytes({f"{p.replace('_', '')}_{i}.jpg": lfw_bytes(lfw_dir, p, i)
                      for p in PERSONS for i in (1, 2)})
    js = client.post(f"{API}/identify", json={
        "gallery": b64(flat), "probes": [b64(lfw_bytes(lfw_dir, PERSONS[1], 4))],
        "open_set_threshold": 0.6, "mode": "nearest"}).json()
    assert js["probes"][0]["matches"][0]["person"] == "AnnVeneman"
    assert js["probes"][0]["accepted"] is True and js["gallery"]["mode"] == "nearest"


def test_dataset_test_zip_gives_metrics_and_report(client, lfw_dir):
    data = zip_bytes({f"faces/{p.replace('_', '')}_{i}.jpg": lfw_bytes(lfw_dir, p, i)
                      for p in PERSONS for i in (1, 2, 3)})
    r = client.post(f"{API}/dataset-test", files={"dataset": ("d.zip", data, "application/zip")},
                    data={"n_pairs": "12", "samples": "4"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metrics"]["data"]["pairs"] == 12
    assert body["metrics"]["data"]["persons"] == 3
    assert 0 <= body["metrics"]["verification"]["accuracy"] <= 1
    files = {k: base64.b64decode(v) for k, v in body["files"].items()}
    assert set(files) == {"report.html", "dashboard.png", "samples.png"}
    assert files["dashboard.png"].startswith(b"\x89PNG") and b"<html" in files["report.html"]


def test_dataset_test_server_path_only_under_allow_path(web_service, lfw_dir, tmp_path):
    folder = tmp_path / "allowed" / "faces"
    folder.mkdir(parents=True)
    for p in PERSONS[:2]:
        for i in (1, 2):
            (folder / f"{p.replace('_', '')}_{i}.jpg").write_bytes(lfw_bytes(lfw_dir, p, i))
    (tmp_path / "secret").mkdir()
    state = make_state(web_service, allow_paths=[tmp_path / "allowed"])
    try:
        client = client_for(state)
        ok = client.post(f"{API}/dataset-test", json={"path": str(folder), "n_pairs": 4,
                                                      "samples": 0, "files": False})
        assert ok.status_code == 200, ok.text
        assert "files" not in ok.json() and ok.json()["metrics"]["data"]["pairs"] == 4
        for bad in (tmp_path / "secret", folder / ".." / ".." / "secret"):
            r = client.post(f"{API}/dataset-test", json={"path": str(bad)})
            assert "allowed folder" in error(r, 403, "forbidden_path")["message"]
        (tmp_path / "allowed" / "link").symlink_to(tmp_path / "secret")
        r = client.post(f"{API}/dataset-test", json={"path": str(tmp_path / "allowed" / "link")})
        error(r, 403, "forbidden_path")
    finally:
        state.close()


def test_no_allow_path_means_no_server_paths(client, tmp_path):
    r = client.post(f"{API}/identify", json={"gallery_path": str(tmp_path),
                                             "probes": [b64(noise_png())]})
    assert "--allow-path" in error(r, 403, "forbidden_path")["message"]


# -- models, version, health, schema ----------------------------------------------------------


def test_models_lists_the_default_with_its_threshold(client, web_service):
    body = client.get(f"{API}/models").json()
    assert body["default"] == "default"
    (model,) = [m for m in body["models"] if m["default"]]
    assert model["name"] == "default" and model["backbone"] == web_service.info.backbone
    assert model["threshold"] == pytest.approx(web_service.threshold)
    assert model["threshold_source"] == web_service.info.threshold_source
    assert model["gender_trained"] is True and "val_accuracy" in model["metrics"]
    assert model["training"]["data"]["layout"] == "lfw"
    assert "FairFace train" in model["training"]["data"]["gender data"]  # the gender head's


def test_version_and_health(client):
    import siamface

    version = client.get(f"{API}/version").json()
    assert version["siamface"] == siamface.__version__ and version["api"] == "v1"
    assert version["default_model"]["name"] == "default"
    assert client.get(f"{API}/health").json() == {"status": "ok"}


def test_openapi_schema_is_served_and_docs_pull_nothing(client):
    schema = client.get("/openapi.json").json()
    assert {f"{API}/{p}" for p in ("verify", "analyze", "embed", "identify", "models",
                                   "health", "version")} <= set(schema["paths"])
    body = schema["paths"][f"{API}/verify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert body["application/json"]["schema"]["required"][:2] == ["a", "b"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load a CDN
    assert client.get("/redoc").status_code == 404


# -- errors -----------------------------------------------------------------------------------


def test_bad_image_400(client, photos):
    truncated = photos["a1"][: len(photos["a1"]) // 3]
    r = client.post(f"{API}/verify", files={"a": jpeg("cut.jpg", truncated),
                                            "b": jpeg("a2.jpg", photos["a2"])})
    assert "cut.jpg" in error(r, 400, "bad_image")["message"]
    error(client.post(f"{API}/verify", json={"a": "not base64!", "b": b64(photos["a2"])}),
          400, "bad_image")
    error(client.post(f"{API}/verify", json={"a": "", "b": b64(photos["a2"])}), 400, "bad_image")


def test_unsupported_type_415(client, photos):
    error(client.post(f"{API}/verify", content=b"a=1", headers={"content-type": "text/plain"}),
          415, "unsupported_type")
    r = client.post(f"{API}/verify", files={"a": ("notes.txt", b"hello", "text/plain"),
                                            "b": jpeg("a2.jpg", photos["a2"])})
    assert "text/plain" in error(r, 415, "unsupported_type")["message"]
    r = client.post(f"{API}/verify", files={"a": ("x.jpg", b"just some text", "image/jpeg"),
                                            "b": jpeg("a2.jpg", photos["a2"])})
    assert "not an image" in error(r, 415, "unsupported_type")["message"]
    pdf = io.BytesIO()
    Image.new("RGB", (40, 40)).save(pdf, "PDF")
    r = client.post(f"{API}/analyze", json={"image": b64(pdf.getvalue())})
    error(r, 415, "unsupported_type")


def test_image_too_large_413(web_service, photos):
    state = make_state(web_service, max_pixels=200 * 200)  # LFW photos are 250 x 250
    try:
        r = client_for(state).post(f"{API}/verify", json={"a": b64(photos["a1"]),
                                                          "b": b64(photos["a2"])})
        assert "62,500 pixels" in error(r, 413, "image_too_large")["message"]
    finally:
        state.close()


def test_too_large_and_too_many_files_413(web_service, photos):
    state = make_state(web_service, max_request_bytes=50_000, max_files=2)
    try:
        client = client_for(state)
        big = b"x" * 60_000
        r = client.post(f"{API}/verify", files={"a": jpeg("a", big), "b": jpeg("b", big)})
        assert "50,000 bytes" in error(r, 413, "too_large")["message"]

        def chunks():  # no Content-Length: counted while it streams in
            for _ in range(10):
                yield b"y" * 10_000

        r = client.post(f"{API}/verify", content=chunks(),
                        headers={"content-type": "application/json"})
        error(r, 413, "too_large")
        three = [("images", jpeg(f"{i}.jpg", photos["a1"][:100])) for i in range(3)]
        error(client.post(f"{API}/embed", files=three), 413, "too_many_files")
        error(client.post(f"{API}/embed", json={"images": [b64(b"x")] * 3}), 413,
              "too_many_files")
    finally:
        state.close()


def test_invalid_request_422(client, photos):
    a = b64(photos["a1"])
    cases = [
        {"a": a},  # b missing
        {"a": a, "b": a, "threshold": -1},
        {"a": a, "b": a, "threshold": "low"},
        {"a": a, "b": a, "crop": "diagonal"},
        {"a": a, "b": a, "fallback_policy": "sometimes"},
        {"a": a, "b": a, "surprise": 1},
        {"a": 5, "b": a},
    ]
    for body in cases:
        error(client.post(f"{API}/verify", json=body), 422, "invalid_request")
    error(client.post(f"{API}/verify", json=[1, 2]), 422, "invalid_request")
    error(client.post(f"{API}/verify", files={"a": jpeg("a", photos["a1"])},
                      data={"b": "text instead of a file"}), 422, "invalid_request")
    error(client.post(f"{API}/identify", json={"gallery": a, "probes": [a], "k": 0}), 422,
          "invalid_request")
    error(client.post(f"{API}/verify", content=b"{not json",
                      headers={"content-type": "application/json"}), 400, "bad_request")


def test_unknown_model_and_endpoint_404(client, photos):
    r = client.post(f"{API}/verify", json={"a": b64(photos["a1"]), "b": b64(photos["a2"]),
                                           "model": "defualt"})
    assert "did you mean 'default'" in error(r, 404, "unknown_model")["message"]
    error(client.get(f"{API}/nothing-here"), 404, "not_found")
    error(client.get(f"{API}/verify"), 405, "method_not_allowed")


def test_busy_503_with_retry_after(web_service, photos):
    state = make_state(web_service, queue_size=1, retry_after_s=3)
    release, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(30)

    holder = threading.Thread(target=state.run, args=(hold,))
    holder.start()
    try:
        assert started.wait(10)
        client = client_for(state)
        r = client.post(f"{API}/verify", json={"a": b64(photos["a1"]), "b": b64(photos["a2"])})
        error(r, 503, "busy")
        assert r.headers["retry-after"] == "3"
        assert client.get(f"{API}/health").status_code == 200  # not queued
    finally:
        release.set()
        holder.join(10)
    ok = client.post(f"{API}/verify", json={"a": b64(photos["a1"]), "b": b64(photos["a2"])})
    assert ok.status_code == 200 and state.admitted == 0
    state.close()

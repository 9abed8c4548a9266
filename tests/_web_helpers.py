"""Shared by the web tests: one loaded model per session, apps around it, LFW bytes, zips."""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import lfw_image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from siamface.web.app import create_app
from siamface.web.state import AppState, ServeConfig

GENUINE = (("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2))
IMPOSTOR = ("Ann_Veneman", 1)  # another person: no match with Aaron_Peirsol
GROUP = (("Aaron_Peirsol", 1, "male"), ("Ann_Veneman", 1, "female"),
         ("Abdullah_Gul", 1, "male"))  # pasted side by side: one face per 250 px panel


@functools.cache
def shared_service():
    """The shipped model, loaded once for every web test of the session."""
    from siamface.service import load

    return load()


def make_state(service, **config) -> AppState:
    return AppState(ServeConfig(**config), service=service)


def client_for(state: AppState) -> TestClient:
    return TestClient(create_app(state=state, ui=False))


def lfw_bytes(lfw: Path, name: str, index: int) -> bytes:
    return lfw_image(lfw, name, index).read_bytes()


def group_photo(lfw: Path) -> bytes:
    """Three LFW photos of three persons pasted side by side, as a JPEG (750 x 250)."""
    canvas = Image.new("RGB", (250 * len(GROUP), 250), "white")
    for k, (name, index, _) in enumerate(GROUP):
        with Image.open(lfw_image(lfw, name, index)) as im:
            canvas.paste(im.convert("RGB"), (250 * k, 0))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=95)
    return out.getvalue()


def noise_png(size: int = 160, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def jpeg(name: str, data: bytes) -> tuple[str, bytes, str]:
    return (name, data, "image/jpeg")

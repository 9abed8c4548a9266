"""What the web app does, as plain functions: the REST API and the Gradio UI call these and
nothing else, and these call only :mod:`siamface.service`, :mod:`siamface.evaluation`,
:mod:`siamface.archive` and :mod:`siamface.report`.

An image argument is any of

* ``bytes`` (an uploaded file: decoded in memory, never written to disk),
* a numpy array or a PIL image (what a UI component hands over),
* a ``str`` / ``Path``: a *server* path, accepted only under an ``--allow-path`` root
  (:meth:`AppState.check_path`),
* or a ``(name, image)`` tuple of one of those, ``name`` being what results call the source.

Every function runs its work (decoding included) through :meth:`AppState.run`, so the bounded
inference queue covers the UI and the API alike: a full queue raises
:class:`~siamface.web.state.Busy`. Zips (a gallery, a dataset) are written to a private
temporary folder only to be checked and extracted by :func:`siamface.archive.extract_images_zip`;
the folder is removed when the call ends. Report files come back as bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siamface.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageDecodeError,
    NoFaceError,
    SiamfaceError,
)
from siamface.io import load_image

__all__ = [
    "CheckpointRefusedError",
    "ModelExistsError",
    "NoFace",
    "TooManyFilesError",
    "UnsupportedTypeError",
    "add_model",
    "analyze",
    "dataset_test",
    "embed",
    "identify",
    "verify",
]

REPORT_FILES = ("report.html", "dashboard.png", "samples.png", "metrics.json")


class NoFace(NoFaceError):
    """``require_face=True`` and an image holds no face (the API answers 422 no_face)."""


class UnsupportedTypeError(ImageDecodeError):
    """An upload that is not an image at all, or an image format siamface does not decode
    (the API answers 415 unsupported_type)."""


class CheckpointRefusedError(CheckpointError):
    """An uploaded model file that is not a siamface safetensors checkpoint (a pickle, a
    torch ``.pt``/``.pth``, a Keras ``.h5``...): refused without being read as one."""


class TooManyFilesError(ConfigError):
    """More files in one call than ``max_files`` (the API answers 413 too_many_files)."""


class ModelExistsError(CheckpointError):
    """An uploaded checkpoint's name is already taken by a different file."""


ImageArg = Any  # bytes | np.ndarray | PIL.Image.Image | str | Path | tuple[str, <one of them>]


# -- images -----------------------------------------------------------------------------------


def _split(item: ImageArg, default_name: str) -> tuple[str, Any]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (str, type(None))):
        name, data = item
        return (name or default_name), data
    return default_name, item


def decode(state, item: ImageArg, default_name: str = "image") -> tuple[str, np.ndarray]:
    """``(name, RGB array)`` of one image argument, under the app's pixel limit. Errors name
    the upload: :class:`UnsupportedTypeError` (not an image / a format not decoded),
    :class:`~siamface.errors.ImageTooLargeError`, or :class:`ImageDecodeError`."""
    name, data = _split(item, default_name)
    if isinstance(data, (str, os.PathLike)):
        data = state.check_path(data)
        if name == default_name:
            name = str(data)
    elif data is None:
        raise ImageDecodeError(name, "no image given")
    try:
        return name, load_image(data, max_pixels=state.config.max_pixels)
    except ImageDecodeError as exc:
        reason = exc.reason
        if reason.startswith(("not an image", "unsupported format", "unsupported source type")):
            raise UnsupportedTypeError(name, reason) from None
        raise type(exc)(name, reason) from None


def _named(face, name: str):
    return dataclasses.replace(face, source=name)


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"threshold must be a finite distance >= 0, got {threshold!r}")
    return value


def _require_faces(faces: Sequence) -> None:
    absent = [f for f in faces if not f.has_face]
    if absent:
        raise NoFace(absent[0].source, absent[0].no_face or "no face", len(absent))


# -- one pair, one image, many images ------------------------------------------------------


def verify(state, a: ImageArg, b: ImageArg, *, model: str | None = None,
           threshold: float | None = None, crop: str | None = None,
           fallback_policy: str | None = None, require_face: bool = False):
    """Are the faces in ``a`` and ``b`` the same person? A
    :class:`~siamface.service.VerifyResult` (``status`` ``no_face_*`` and no verdict when a
    face is absent; :class:`NoFace` instead with ``require_face``)."""
    threshold = _check_threshold(threshold)

    def work():
        service = state.service(model, crop=crop, fallback_policy=fallback_policy)
        name_a, image_a = decode(state, a, "a")
        name_b, image_b = decode(state, b, "b")
        result = service.verify(image_a, image_b, threshold=threshold)
        return dataclasses.replace(result, a=_named(result.a, name_a), b=_named(result.b, name_b))

    result = state.run(work)
    if require_face:
        _require_faces([result.a, result.b])
    return result


def analyze(state, image: ImageArg, *, model: str | None = None, all_faces: bool = True,
            crop: str | None = None, fallback_policy: str | None = None,
            require_face: bool = False) -> list:
    """Every face of ``image`` (best first; only the selected one with ``all_faces=False``)
    as :class:`~siamface.service.FaceResult` objects. With no face detected, one entry: the
    fallback crop, or an absent face (``no_face`` set; :class:`NoFace` with
    ``require_face``)."""

    def work():
        service = state.service(model, crop=crop, fallback_policy=fallback_policy)
        name, pixels = decode(state, image, "image")
        return [_named(f, name) for f in service.analyze(pixels, all_faces=all_faces)]

    faces = state.run(work)
    if require_face and not any(f.has_face for f in faces):
        _require_faces(faces[:1])
    return faces


def embed(state, images: Sequence[ImageArg], *, model: str | None = None,
          crop: str | None = None, fallback_policy: str | None = None,
          require_face: bool = False) -> list:
    """The selected face of each image with its embedding (``FaceResult.embedding``; None
    for an absent face, or :class:`NoFace` with ``require_face``)."""
    images = list(images)
    if len(images) > state.config.max_files:
        raise TooManyFilesError(f"{len(images)} images is more than the limit of "
                          f"{state.config.max_files} per request")

    def work():
        service = state.service(model, crop=crop, fallback_policy=fallback_policy)
        decoded = [decode(state, item, f"image{i}") for i, item in enumerate(images)]
        faces = service.faces([pixels for _, pixels in decoded])
        return [_named(f, name) for f, (name, _) in zip(faces, decoded)]

    faces = state.run(work)
    if require_face:
        _require_faces(faces)
    return faces


# -- zips -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _private_dir(prefix: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(folder, 0o700)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _images_folder(state, source: bytes | str | os.PathLike, what: str) -> Iterator[Path]:
    """A folder of images from uploaded zip bytes (checked, then extracted into a private
    temporary folder, removed afterwards) or a server path (a folder or a .zip) under an
    ``--allow-path`` root. A zip holding one top folder is read from inside it."""
    from siamface.archive import extract_images_zip

    limits = {"max_members": state.config.max_zip_members,
              "max_total_bytes": state.config.max_zip_bytes}
    with contextlib.ExitStack() as stack:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if not bytes(source[:4]).startswith(b"PK"):
                raise UnsupportedTypeError(what, "not a zip file (it does not start with 'PK')")
            tmp = stack.enter_context(_private_dir("siamface-upload-"))
            archive = tmp / f"{what}.zip"
            fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(source)
            root = stack.enter_context(extract_images_zip(archive, dir=tmp, **limits))
        else:
            path = state.check_path(source)
            if path.is_file() and path.suffix.lower() == ".zip":
                root = stack.enter_context(extract_images_zip(path, **limits))
            elif path.is_dir():
                root = path
            else:
                raise DatasetError(f"{what} {path} is neither a folder nor a .zip file")
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        yield root


def identify(state, gallery_zip: bytes | str | os.PathLike, probes: Sequence[ImageArg], *,
             k: int = 5, model: str | None = None, open_set_threshold: float | None = None,
             mode: str = "mean", crop: str | None = None,
             fallback_policy: str | None = None) -> dict:
    """Enrol the persons of ``gallery_zip`` (person folders, or flat files named
    ``<person>_<n>.jpg``; a zip's bytes or an allowed server path) and rank them for each probe.

    Returns ``{"gallery": {persons, images, mode, skipped: [{path, reason}]}, "probes": [{probe,
    face, matches: [{person, distance}], accepted}]}`` where ``accepted`` says whether the best
    distance is within ``open_set_threshold`` (None without one)."""
    from siamface.evaluation.embeddings import embed_paths
    from siamface.evaluation.identify import MODES, Gallery, open_identify_folder

    probes = list(probes)
    if not probes:
        raise ConfigError("no probe images given; send at least one")
    if len(probes) > state.config.max_files:
        raise TooManyFilesError(f"{len(probes)} probe images is more than the limit of "
                          f"{state.config.max_files} per request")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a whole number >= 1, got {k!r}")
    if mode not in MODES:
        raise ConfigError(f"gallery mode {mode!r} is not one of {', '.join(MODES)}")
    open_set_threshold = _check_threshold(open_set_threshold)

    def work():
        service = state.service(model, crop=crop, fallback_policy=fallback_policy)
        decoded = [decode(state, item, f"probe{i}") for i, item in enumerate(probes)]
        with _images_folder(state, gallery_zip, "gallery") as root:
            data = open_identify_folder(root, "gallery")
            paths = [r.path for r in data.records]
            emb = embed_paths(service, paths, use_cache=False, progress=False)
            skipped = [{"path": os.path.relpath(p, root), "reason": r} for p, r in emb.skipped]
            ids = [r.person_id for r in data.records]
        keep = np.flatnonzero(emb.has_face)
        if len(keep) == 0:
            first = skipped[0]["reason"] if skipped else "no images"
            raise DatasetError(f"no face found in any of the {len(ids)} gallery image(s); "
                               f"first reason: {first}")
        gallery = Gallery().enroll(emb.embeddings[keep], [ids[i] for i in keep], mode=mode)
        faces = [_named(f, name) for f, (name, _) in
                 zip(service.faces([pixels for _, pixels in decoded]), decoded)]
        with_face = [i for i, f in enumerate(faces) if f.has_face]
        ranked = dist = None
        if with_face:
            ranked, dist = gallery.search(np.stack([faces[i].embedding for i in with_face]), k=k)
        rows = []
        for i, face in enumerate(faces):
            row: dict[str, Any] = {"probe": face.source, "face": face.to_dict(),
                                   "matches": [], "accepted": None}
            if face.has_face:
                n = with_face.index(i)
                row["matches"] = [{"person": str(p), "distance": float(d)}
                                  for p, d in zip(ranked[n], dist[n]) if p is not None]
                if open_set_threshold is not None:
                    row["accepted"] = bool(row["matches"]) and \
                        row["matches"][0]["distance"] <= open_set_threshold
            rows.append(row)
        return {"gallery": {"persons": len(gallery), "images": len(keep), "mode": mode,
                            "skipped": skipped},
                "k": k, "open_set_threshold": open_set_threshold, "threshold":
                float(service.threshold), "probes": rows}

    return state.run(work)


def dataset_test(state, source: bytes | str | os.PathLike, *, n_pairs: int = 100,
                 samples: int = 8, model: str | None = None, threshold: float | None = None,
                 seed: int = 0, errors_first: bool = False,
                 progress: Callable[[float, str], Any] | None = None):
    """The reference system's dataset test: ``n_pairs`` pairs generated from the images of a
    zip (bytes) or an allowed server folder / zip (person id = file name up to the first ``_``
    or ``-``), scored with ``model``. Returns ``(evaluation, files)`` where ``files`` maps
    report.html, dashboard.png, samples.png (when there are samples) and metrics.json to their
    bytes; nothing is kept on disk (no crop or embedding cache). ``progress(fraction, text)``
    is called at each stage."""
    from siamface.evaluation.dataset_test import dataset_test as run_test
    from siamface.report import dashboard_png, jsonable, report_html, samples_png

    if not isinstance(n_pairs, int) or n_pairs < 1:
        raise ConfigError(f"n_pairs must be a whole number >= 1, got {n_pairs!r}")
    if not isinstance(samples, int) or samples < 0:
        raise ConfigError(f"samples must be a whole number >= 0, got {samples!r}")
    threshold = _check_threshold(threshold)

    def tell(fraction: float, text: str) -> None:
        if progress is not None:
            progress(fraction, text)

    def work():
        tell(0.0, "checking the data")
        service = state.service(model)
        with _images_folder(state, source, "dataset") as root:
            tell(0.1, f"scoring {n_pairs} pairs")
            evaluation, _ = run_test(service, root, n_pairs=n_pairs, samples=samples, seed=seed,
                                     errors_first=errors_first, threshold=threshold,
                                     use_cache=False, progress=False)
        tell(0.8, "drawing the report")
        metrics = jsonable(evaluation.metrics)
        clean = dataclasses.replace(evaluation, metrics=metrics)
        dashboard = dashboard_png(clean)
        tiles = samples_png(clean) if samples > 0 and clean.samples else None
        files = {"metrics.json": (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode(),
                 "dashboard.png": dashboard}
        if tiles is not None:
            files["samples.png"] = tiles
        files["report.html"] = report_html(clean, dashboard=dashboard, samples=tiles).encode()
        tell(1.0, "done")
        return clean, files

    return state.run(work)


# -- models -----------------------------------------------------------------------------------

_PICKLE_PROTOCOLS = {bytes([0x80, n]) for n in range(2, 6)}
_HDF5 = b"\x89HDF\r\n\x1a\n"
_SAFETENSORS_MAX_HEADER = 100 << 20


def sniff_model_file(data: bytes) -> str | None:
    """Why ``data`` is not a safetensors file, judged from its bytes (None: its header is a
    safetensors header). Nothing in it is ever unpickled or executed."""
    head = bytes(data[:16])
    if len(data) >= 10:
        header_len = int.from_bytes(head[:8], "little")
        if 1 < header_len <= min(_SAFETENSORS_MAX_HEADER, len(data) - 8) and \
                data[8:9] == b"{":
            try:
                if isinstance(json.loads(bytes(data[8:8 + header_len])), dict):
                    return None
            except (UnicodeDecodeError, ValueError):
                pass
    if head.startswith(_HDF5):
        return ("it is an HDF5 file (a Keras .h5 model), not a siamface checkpoint; HDF5 "
                "models may hold pickled Python objects")
    if head[:2] in _PICKLE_PROTOCOLS:
        return ("it is a Python pickle: loading a pickle can run arbitrary code, so pickles "
                "are never loaded")
    if head.startswith(b"PK\x03\x04"):
        return ("it is a zip archive (torch.save's .pt/.pth format, with a pickle inside): "
                "loading it can run arbitrary code")
    return "it does not start with a safetensors header"


def add_model(state, filename: str, data: bytes) -> dict:
    """Validate an uploaded checkpoint and add it to the models (in ``--models-dir``, else a
    private folder kept while the server runs). Only siamface safetensors checkpoints are
    accepted: pickles, torch ``.pt``/``.pth`` and Keras ``.h5`` files are refused from their
    bytes (:class:`CheckpointRefusedError`, saying why) and a safetensors file must describe a
    siamface model whose tensors load (:class:`~siamface.errors.CheckpointError`). Returns the
    model's description (as ``/models`` lists it)."""
    from siamface.checkpoint import load_checkpoint, read_checkpoint_info
    from siamface.web.state import _safe_name, describe_model, file_sha256

    base = os.path.basename(str(filename or "").replace("\\", "/"))
    stem, suffix = os.path.splitext(base)
    if suffix.lower() != ".safetensors":
        why = {".pt": "a torch pickle", ".pth": "a torch pickle", ".pkl": "a pickle",
               ".pickle": "a pickle", ".h5": "a Keras HDF5 model", ".keras": "a Keras model",
               ".ckpt": "a pickled checkpoint", ".bin": "a pickled checkpoint"}.get(
                   suffix.lower(), "not a .safetensors file")
        raise CheckpointRefusedError(
            f"refusing {base or 'the upload'}: {why}; only siamface checkpoints in the "
            "safetensors format (.safetensors, made by siamface train or calibrate) are "
            "accepted, because pickles can run code when loaded")
    name = _safe_name(stem)
    if name is None:
        raise ConfigError(f"model file name {base!r}: use letters, digits, '.', '_' and '-' "
                          "(at most 100 characters)")
    reason = sniff_model_file(data)
    if reason is not None:
        raise CheckpointRefusedError(
            f"refusing {base}: {reason}; only siamface checkpoints in the safetensors format "
            "are accepted")

    def work():
        folder = state.upload_dir()
        target = folder / f"{name}.safetensors"
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".safetensors", dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                info = read_checkpoint_info(tmp)
                load_checkpoint(tmp)  # every tensor: names, shapes, finite values
            except CheckpointError as exc:
                raise CheckpointError(str(exc).replace(str(tmp), base)) from None
            except SiamfaceError as exc:
                raise CheckpointError(f"{base}: {exc}") from None
            if name == state.default_model or (target.exists() and
                                               file_sha256(target) != file_sha256(tmp)):
                raise ModelExistsError(f"a different model named {name!r} exists already; "
                                       "rename the file before uploading it")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        state.forget(name)
        return describe_model(name, target, info)

    return state.run(work)

"""The REST API under ``/api/v1``: what :func:`install` adds to a FastAPI app.

Endpoints (each handler parses its request and calls one :mod:`siamface.web.actions`
function)::

    POST /api/v1/verify        a, b                      -> VerifyResult.to_dict()
    POST /api/v1/analyze       image                     -> {"faces": [FaceResult], "count"}
    POST /api/v1/embed         images (1..max_files)     -> {"results": [FaceResult + embedding]}
    POST /api/v1/identify      gallery (zip), probes     -> ranked persons per probe
    POST /api/v1/dataset-test  dataset (zip) or path     -> metrics + report files (base64)
    GET  /api/v1/models                                   -> the checkpoints and their metadata
    POST /api/v1/models        file (.safetensors)       -> the added model (201)
    GET  /api/v1/health                                   -> {"status": "ok"}; no key needed
    GET  /api/v1/version                                  -> versions of siamface and the API

Requests are ``multipart/form-data`` (files plus plain fields) or ``application/json`` with
images as base64 strings (a ``data:image/...;base64,`` prefix is allowed). Options: ``model``
(a name from ``/models``), ``threshold``, ``crop`` (aligned / padded / center),
``fallback_policy`` (auto / always / never), ``require_face``.

Errors are JSON ``{"code": ..., "message": ...}`` with a stable ``code``:

=====  ===================  ==========================================================
400    bad_image            an image that cannot be decoded (corrupt, truncated, bad base64)
400    bad_request          malformed multipart or JSON
400    bad_archive          a zip refused by the safe zip reader, or an unusable dataset
400    bad_checkpoint       a safetensors upload that is not a valid siamface checkpoint
401    unauthorized         an API key is set and the request lacks it (``Bearer``)
403    forbidden_path       a server path outside every ``--allow-path`` root
404    unknown_model        ``model`` is not in ``/models``
404    not_found            no such endpoint
405    method_not_allowed
409    model_exists         an upload's name is taken by a different checkpoint
413    too_large            the request body is over ``max_request_bytes`` (checked while
                            reading, before parsing)
413    image_too_large      an image with more pixels than ``max_pixels`` (from its header)
413    too_many_files       more files than ``max_files``
415    unsupported_type     a request that is neither multipart nor JSON, an upload that is
                            not an image (or a format not decoded), a model file that is a
                            pickle / ``.pt`` / ``.pth`` / ``.h5``
422    no_face              ``require_face=true`` and an image holds no face
422    invalid_request      a missing or invalid field
503    busy                 the inference queue is full; ``Retry-After`` says when to retry
500    internal_error
=====  ===================  ==========================================================

Security: with an API key (``SIAMFACE_API_KEY`` or ``ServeConfig.api_key``) every
``/api/v1`` endpoint except ``/health`` needs ``Authorization: Bearer <key>`` (compared in
constant time); ``/health`` stays open so that a supervisor can probe liveness, and it tells
nothing but "ok". The guard middleware checks the key and the body size before a handler (or
the multipart parser) sees the request; multipart files are parsed in memory, never spooled
to disk.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import platform
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from siamface.archive import UnsafeArchiveError
from siamface.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageDecodeError,
    ImageTooLargeError,
    SiamfaceError,
    UnknownNameError,
)
from siamface.web import actions
from siamface.web.state import AppState, Busy, PathNotAllowedError, UnknownModelError

__all__ = ["API_PREFIX", "ApiError", "install"]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
OPEN_PATHS = frozenset({f"{API_PREFIX}/health"})
_FIELD_BYTES = 64 << 10  # a plain (non-file) multipart field
_IMAGE_TYPES = ("image/", "application/octet-stream")
_ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip",
              "application/octet-stream", "multipart/x-zip")


class ApiError(Exception):
    """An error answered as ``{"code", "message"}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}


def error_response(status: int, code: str, message: str, *, headers: dict | None = None,
                   extra: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **(extra or {})},
                        status_code=status, headers=headers)


def _siamface_error(exc: Exception) -> ApiError:
    """The HTTP answer to a library error."""
    text = str(exc)
    if isinstance(exc, Busy):
        return ApiError(503, "busy", text, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, actions.NoFace):
        return ApiError(422, "no_face", text)
    if isinstance(exc, actions.UnsupportedTypeError):
        return ApiError(415, "unsupported_type", text)
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, "image_too_large", text)
    if isinstance(exc, ImageDecodeError):
        return ApiError(400, "bad_image", text)
    if isinstance(exc, UnknownModelError):
        return ApiError(404, "unknown_model", text)
    if isinstance(exc, PathNotAllowedError):
        return ApiError(403, "forbidden_path", text)
    if isinstance(exc, actions.CheckpointRefusedError):
        return ApiError(415, "unsupported_type", text)
    if isinstance(exc, actions.ModelExistsError):
        return ApiError(409, "model_exists", text)
    if isinstance(exc, CheckpointError):
        return ApiError(400, "bad_checkpoint", text)
    if isinstance(exc, (UnsafeArchiveError, DatasetError)):
        return ApiError(400, "bad_archive", text)
    if isinstance(exc, actions.TooManyFilesError):
        return ApiError(413, "too_many_files", text)
    if isinstance(exc, (ConfigError, UnknownNameError)):
        return ApiError(422, "invalid_request", text)
    return ApiError(400, "bad_request", text)


# -- request models (also the OpenAPI schema) -------------------------------------------------

Crop = Literal["aligned", "padded", "center"]
Policy = Literal["auto", "always", "never"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="a model name from GET /models (default: "
                              "the server's default model)")
    crop: Crop | None = Field(None, description="face crop (default: the model's)")
    fallback_policy: Policy | None = Field(
        None, description="no face detected: use the centre crop if it passes the "
        "face-presence check (auto), always, or never")
    require_face: bool = Field(False, description="answer 422 no_face instead of a result "
                               "without a face")


class VerifyOptions(_Options):
    threshold: float | None = Field(None, ge=0, description="distance threshold (default: "
                                    "the model's calibrated one)")


class AnalyzeOptions(_Options):
    all_faces: bool = Field(True, description="every face (true) or the selected one only")


class EmbedOptions(_Options):
    pass


class IdentifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = None
    k: int = Field(5, ge=1, le=100, description="ranks per probe")
    open_set_threshold: float | None = Field(None, ge=0, description="accept a probe's best "
                                             "match only within this distance")
    mode: Literal["mean", "nearest"] = "mean"
    gallery_path: str | None = Field(None, description="a server folder or .zip under an "
                                     "--allow-path root, instead of an uploaded gallery")
    crop: Crop | None = None
    fallback_policy: Policy | None = None


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = None
    n_pairs: int = Field(100, ge=1, le=100_000)
    samples: int = Field(8, ge=0, le=64)
    threshold: float | None = Field(None, ge=0)
    seed: int = 0
    path: str | None = Field(None, description="a server folder or .zip under an "
                             "--allow-path root, instead of an uploaded zip")
    files: bool = Field(True, description="include the report files (base64)")


_B64 = {"type": "string", "contentEncoding": "base64",
        "description": "the image file's bytes, base64 (a data: URL prefix is allowed)"}
_BINARY = {"type": "string", "format": "binary"}


def _json_schema(model: type[BaseModel], images: dict[str, Any], required: list[str]) -> dict:
    schema = model.model_json_schema()
    schema["properties"] = {**images, **schema.get("properties", {})}
    schema["required"] = required + schema.get("required", [])
    return schema


def _body(model: type[BaseModel], json_images: dict[str, Any], form_files: dict[str, Any],
          required: list[str]) -> dict:
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": _json_schema(model, form_files, required)},
        "application/json": {"schema": _json_schema(model, json_images, required)},
    }}}


class Gender(BaseModel):
    label: str
    probability: float
    probabilities: dict[str, float]


class Face(BaseModel):
    source: str
    detected: bool
    detected_by: str | None
    restored: str | None = None
    crop: str
    select: str
    fallback: str | None
    box: list[float] | None
    landmarks: list[list[float]] | None
    score: float | None
    face_score: float | None
    no_face: str | None
    gender: Gender | None


class EmbeddedFace(Face):
    embedding: list[float] | None


class VerifyResponse(BaseModel):
    status: Literal["match", "no_match", "no_face_a", "no_face_b", "no_face_both"]
    is_match: bool | None
    distance: float | None
    threshold: float
    threshold_source: str
    a: Face
    b: Face
    model: str


class AnalyzeResponse(BaseModel):
    model: str
    count: int
    faces: list[Face]


class EmbedResponse(BaseModel):
    model: str
    dim: int
    results: list[EmbeddedFace]


class ErrorResponse(BaseModel):
    code: str
    message: str


_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422, 503)}


# -- parsing ----------------------------------------------------------------------------------


class _InMemoryParser(MultiPartParser):
    """Starlette's multipart parser with files kept in memory (the body is already bounded
    by ``max_request_bytes``): an upload never touches the disk."""

    spool_max_size = 1 << 62


class _Parsed:
    """A request's fields (str or bytes) and files (name -> list of (filename, bytes))."""

    def __init__(self, fields: dict[str, Any], files: dict[str, list[tuple[str, bytes]]],
                 kind: str):
        self.fields, self.files, self.kind = fields, files, kind


def _decode_b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, "invalid_request", f"{name} must be a base64 string")
    text = value.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if ";base64" not in head:
            raise ApiError(400, "bad_image", f"{name}: a data: URL must be base64-encoded")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_image", f"{name} is not valid base64") from None
    if not data:
        raise ApiError(400, "bad_image", f"{name} is empty")
    return data


async def _parse(request: Request, state: AppState, file_fields: dict[str, str],
                 multi: tuple[str, ...] = ()) -> _Parsed:
    """The fields and files of a multipart or JSON request. ``file_fields`` maps each file
    field to its kind ("image" or "zip"); ``multi`` names those that take several files."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit = state.config.max_files
    if content_type == "multipart/form-data":
        try:
            form: FormData = await _InMemoryParser(
                request.headers, request.stream(), max_files=limit + 1, max_fields=64,
                max_part_size=_FIELD_BYTES).parse()
        except MultiPartException as exc:
            if "Too many files" in exc.message:
                raise ApiError(413, "too_many_files", f"more than {limit} files in one "
                               "request") from None
            raise ApiError(400, "bad_request", f"malformed multipart body: {exc.message}"
                           ) from None
        fields: dict[str, Any] = {}
        files: dict[str, list[tuple[str, bytes]]] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in file_fields:
                    raise ApiError(422, "invalid_request", f"unexpected file field {key!r}; "
                                   f"expected {', '.join(file_fields) or 'no files'}")
                _check_part_type(key, value, file_fields[key])
                value.file.seek(0)
                files.setdefault(key, []).append((value.filename or key, value.file.read()))
                await value.close()
            else:
                if key in file_fields:
                    raise ApiError(422, "invalid_request", f"{key} must be a file upload")
                if key in fields:
                    raise ApiError(422, "invalid_request", f"field {key!r} given twice")
                fields[key] = value
        for key, got in files.items():
            if len(got) > 1 and key not in multi:
                raise ApiError(422, "invalid_request", f"one file expected in {key!r}, got "
                               f"{len(got)}")
        return _Parsed(fields, files, "multipart")
    if content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, "bad_request", f"the body is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_request", "the JSON body must be an object")
        files = {}
        for key in file_fields:
            if key not in body or body[key] is None:
                continue
            value = body.pop(key)
            if key in multi:
                if not isinstance(value, list):
                    raise ApiError(422, "invalid_request", f"{key} must be a list of base64 "
                                   "strings")
                if len(value) > limit:
                    raise ApiError(413, "too_many_files", f"{len(value)} files in {key!r}, "
                                   f"more than the limit of {limit}")
                files[key] = [(f"{key}[{i}]", _decode_b64(v, f"{key}[{i}]"))
                              for i, v in enumerate(value)]
            else:
                files[key] = [(key, _decode_b64(value, key))]
        return _Parsed(body, files, "json")
    shown = content_type or "none"
    raise ApiError(415, "unsupported_type", f"content type {shown} is not accepted; send "
                   "multipart/form-data (files) or application/json (base64 images)")


def _check_part_type(key: str, upload: UploadFile, kind: str) -> None:
    if kind == "model":
        return  # judged from the bytes: add_model explains what a refused file is
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    allowed = _IMAGE_TYPES if kind == "image" else _ZIP_TYPES
    if declared and not declared.startswith(allowed):
        what = "an image" if kind == "image" else "a zip file"
        raise ApiError(415, "unsupported_type",
                       f"{key} ({upload.filename or 'upload'}) has content type {declared}; "
                       f"expected {what}")


def _options(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                  for e in exc.errors(include_url=False)]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        raise ApiError(422, "invalid_request", f"{first['field']}: {first['message']}",
                       extra={"errors": errors}) from None


def _zip_or_path(parsed, field: str, path: Any, path_field: str) -> Any:
    """An uploaded zip (``field``) or a server path (``path_field``), exactly one of them."""
    if path is None:
        return _one(parsed, field)[1]
    if parsed.files.get(field):
        raise ApiError(422, "invalid_request", f"give {field} or {path_field}, not both")
    return path


def _one(parsed: _Parsed, key: str) -> tuple[str, bytes]:
    got = parsed.files.get(key)
    if not got:
        how = "a file field" if parsed.kind == "multipart" else "a base64 string"
        raise ApiError(422, "invalid_request", f"{key} is required ({how})")
    return got[0]


# -- the router -------------------------------------------------------------------------------


def build_router(state: AppState) -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)

    async def call(fn: Callable, /, *args, **kwargs):
        return await run_in_threadpool(fn, *args, **kwargs)

    def model_name(name: str | None) -> str:
        return name or state.default_model

    @router.post("/verify", response_model=VerifyResponse, responses=_ERRORS,
                 summary="Are the faces in images a and b the same person?",
                 openapi_extra=_body(VerifyOptions, {"a": _B64, "b": _B64},
                                     {"a": _BINARY, "b": _BINARY}, ["a", "b"]))
    async def verify(request: Request):
        parsed = await _parse(request, state, {"a": "image", "b": "image"})
        opts = _options(VerifyOptions, parsed.fields)
        result = await call(actions.verify, state, _one(parsed, "a"), _one(parsed, "b"),
                            model=opts.model, threshold=opts.threshold, crop=opts.crop,
                            fallback_policy=opts.fallback_policy,
                            require_face=opts.require_face)
        return JSONResponse({**result.to_dict(), "model": model_name(opts.model)})

    @router.post("/analyze", response_model=AnalyzeResponse, responses=_ERRORS,
                 summary="Every face of an image with its gender and location",
                 openapi_extra=_body(AnalyzeOptions, {"image": _B64}, {"image": _BINARY},
                                     ["image"]))
    async def analyze(request: Request):
        parsed = await _parse(request, state, {"image": "image"})
        opts = _options(AnalyzeOptions, parsed.fields)
        faces = await call(actions.analyze, state, _one(parsed, "image"), model=opts.model,
                           all_faces=opts.all_faces, crop=opts.crop,
                           fallback_policy=opts.fallback_policy,
                           require_face=opts.require_face)
        return JSONResponse({"model": model_name(opts.model),
                             "count": sum(f.has_face for f in faces),
                             "faces": [f.to_dict() for f in faces]})

    @router.post("/embed", response_model=EmbedResponse, responses=_ERRORS,
                 summary="The embedding of the selected face of each image",
                 openapi_extra=_body(EmbedOptions, {"images": {"type": "array", "items": _B64}},
                                     {"images": {"type": "array", "items": _BINARY}},
                                     ["images"]))
    async def embed(request: Request):
        parsed = await _parse(request, state, {"images": "image"}, multi=("images",))
        opts = _options(EmbedOptions, parsed.fields)
        images = parsed.files.get("images") or []
        if not images:
            raise ApiError(422, "invalid_request", "images is required (one or more)")
        faces = await call(actions.embed, state, images, model=opts.model, crop=opts.crop,
                           fallback_policy=opts.fallback_policy,
                           require_face=opts.require_face)
        dim = next((len(f.embedding) for f in faces if f.embedding is not None), 0)
        return JSONResponse({"model": model_name(opts.model), "dim": dim,
                             "results": [f.to_dict(with_embedding=True) for f in faces]})

    @router.post("/identify", responses=_ERRORS,
                 summary="Rank the gallery's persons for each probe image",
                 openapi_extra=_body(IdentifyOptions,
                                     {"gallery": {**_B64, "description": "a zip of person "
                                                  "folders or <person>_<n>.jpg files, base64"},
                                      "probes": {"type": "array", "items": _B64}},
                                     {"gallery": _BINARY,
                                      "probes": {"type": "array", "items": _BINARY}},
                                     ["probes"]))
    async def identify(request: Request):
        parsed = await _parse(request, state, {"gallery": "zip", "probes": "image"},
                              multi=("probes",))
        opts = _options(IdentifyOptions, parsed.fields)
        gallery = _zip_or_path(parsed, "gallery", opts.gallery_path, "gallery_path")
        out = await call(actions.identify, state, gallery, parsed.files.get("probes") or [],
                         k=opts.k, model=opts.model, open_set_threshold=opts.open_set_threshold,
                         mode=opts.mode, crop=opts.crop, fallback_policy=opts.fallback_policy)
        return JSONResponse({"model": model_name(opts.model), **out})

    @router.post("/dataset-test", responses=_ERRORS,
                 summary="Generated pairs from a zip of images: figures and the report",
                 openapi_extra=_body(DatasetOptions, {"dataset": _B64},
                                     {"dataset": _BINARY}, []))
    async def dataset_test(request: Request):
        parsed = await _parse(request, state, {"dataset": "zip"})
        opts = _options(DatasetOptions, parsed.fields)
        source = _zip_or_path(parsed, "dataset", opts.path, "path")
        _evaluation, files = await call(actions.dataset_test, state, source,
                                       n_pairs=opts.n_pairs, samples=opts.samples,
                                       model=opts.model, threshold=opts.threshold,
                                       seed=opts.seed)
        body: dict[str, Any] = {"model": model_name(opts.model),
                                "metrics": json.loads(files["metrics.json"])}
        if opts.files:
            body["files"] = {name: base64.b64encode(data).decode("ascii")
                             for name, data in files.items() if name != "metrics.json"}
        return JSONResponse(body)

    @router.get("/models", summary="The checkpoints this server can use")
    async def models():
        return JSONResponse({"default": state.default_model,
                             "models": await call(state.models)})

    @router.post("/models", status_code=201, responses=_ERRORS,
                 summary="Add a siamface checkpoint (.safetensors only; pickles, .pt/.pth and "
                 ".h5 are refused)",
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "multipart/form-data": {"schema": {
                         "type": "object", "required": ["file"],
                         "properties": {"file": _BINARY}}}}}})
    async def add_model(request: Request):
        parsed = await _parse(request, state, {"file": "model"})
        if parsed.kind != "multipart":
            raise ApiError(415, "unsupported_type", "upload the checkpoint as multipart "
                           "form-data, field 'file'")
        if parsed.fields:
            raise ApiError(422, "invalid_request", f"unexpected field(s): "
                           f"{', '.join(parsed.fields)}")
        filename, data = _one(parsed, "file")
        described = await call(actions.add_model, state, filename, data)
        return JSONResponse(described, status_code=201)

    @router.get("/health", summary="Liveness (open even with an API key)")
    async def health():
        return {"status": "ok"}

    @router.get("/version", summary="Versions of siamface, the API and the default model")
    async def version():
        from importlib import metadata

        import siamface

        info = state.service().info
        try:  # read from the installed package: the onnx runtime never imports torch
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch_version = None
        return {"siamface": siamface.__version__, "api": "v1",
                "python": platform.python_version(), "torch": torch_version,
                "runtime": state.config.runtime,
                "default_model": {"name": state.default_model, "backbone": info.backbone,
                                  "threshold": float(info.threshold)}}

    known = {route.path for route in router.routes}

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    async def unknown(request: Request, rest: str):
        if request.url.path in known:
            raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed on "
                           f"{request.url.path}")
        raise ApiError(404, "not_found", f"no endpoint {request.method} {request.url.path}")

    return router


# -- the guard: API key and body size, before any parsing ------------------------------------


class Guard:
    """ASGI middleware for ``/api/v1``: the API key (401), then the request size (413, from
    Content-Length and again while the body streams in, which is then handed to the app from
    memory). With ``allowed_hosts``, requests whose Host header names another host are
    refused (400) on every path: a loopback server cannot be reached through DNS rebinding."""

    def __init__(self, app, state: AppState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        hosts = self.state.config.allowed_hosts
        if hosts is not None and not _host_allowed(scope, hosts):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await error_response(400, "bad_host", "this server answers only to "
                                        f"{', '.join(hosts)}")(scope, receive, send)
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return await self.app(scope, receive, send)
        key = self.state.config.api_key
        if key and path not in OPEN_PATHS and not _authorized(scope, key):
            return await error_response(
                401, "unauthorized", "this API needs a key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
        limit = self.state.config.max_request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await error_response(400, "bad_request", "invalid Content-Length"
                                            )(scope, receive, send)
            if size > limit:
                return await _too_large(limit, size)(scope, receive, send)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                return await _too_large(limit, None)(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _too_large(limit: int, size: int | None) -> JSONResponse:
    got = f" ({size:,} bytes)" if size is not None else ""
    return error_response(413, "too_large", f"the request is too large{got}; the limit is "
                          f"{limit:,} bytes (siamface serve --max-request-mb)",
                          headers={"Connection": "close"})


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _authorized(scope, key: str) -> bool:
    header = _header(scope, b"authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    return hmac.compare_digest(token.strip().encode("utf-8"), key.encode("utf-8"))


def _host_allowed(scope, hosts: list[str]) -> bool:
    host = (_header(scope, b"host") or "").strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in hosts


# -- installing -------------------------------------------------------------------------------


def install(app: FastAPI, state: AppState) -> None:
    """Add the API router, its JSON error handlers and the guard middleware to ``app``."""
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers,
                              extra=exc.extra)

    async def library_error(request: Request, exc: SiamfaceError):
        err = _siamface_error(exc)
        return error_response(err.status, err.code, err.message, headers=err.headers)

    async def http_error(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                 400: "bad_request", 401: "unauthorized", 415: "unsupported_type"}
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}"
        return error_response(exc.status_code, codes.get(exc.status_code, "error"), message,
                              headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                  for e in exc.errors()]
        return error_response(422, "invalid_request", "invalid request", extra={"errors": errors})

    async def unexpected(request: Request, exc: Exception):
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(SiamfaceError, library_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
    app.include_router(build_router(state))
    app.add_middleware(Guard, state=state)

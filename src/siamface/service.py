"""The service layer: what the CLI and the web app call. Loads a model and a face pipeline
once, then answers verify / analyze / embed for any image source."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from siamface.checkpoint import CheckpointInfo, embedding_digest, load_checkpoint
from siamface.chip_restore import apply_gates, gates_from_preprocessing
from siamface.errors import CheckpointError, ConfigError, ImageDecodeError, NoFaceError
from siamface.io import DEFAULT_MAX_PIXELS, ImageSource, describe_source, load_image

if TYPE_CHECKING:  # torch is imported on first use: the onnx runtime never imports it
    import torch

__all__ = [
    "DEFAULT_BACKBONE",
    "RUNTIMES",
    "VERIFY_STATUSES",
    "EmbedReport",
    "FaceResult",
    "FaceService",
    "GenderPrediction",
    "VerifyResult",
    "check_device",
    "default_model_path",
    "load",
    "pipeline_for",
]

DEFAULT_BACKBONE = "dlib-resnet"
DEFAULT_MODEL_FILE = "default-dlib-resnet.safetensors"
RUNTIMES = ("torch", "onnx", "onnx-int8")  # onnx*: siamface.ort, without torch


@dataclass(frozen=True)
class GenderPrediction:
    label: str
    probability: float  # of ``label``
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probability": self.probability,
                "probabilities": self.probabilities}


@dataclass(frozen=True)
class FaceResult:
    """One face: where it was found, how it was cropped, its gender and embedding.

    ``face_score`` is the detector's score, or the face-presence check's for a fallback or
    centre crop. When ``no_face`` is set the face is absent (it says why): ``embedding`` and
    ``gender`` are ``None`` and a verification with it has no verdict. ``detected_by`` says
    what found the face: ``"detector"`` (the first pass), a detection retry's name, or None;
    ``restored`` the chip restorations that changed the chip before it was embedded (e.g.
    ``"denoise"`` for a noisy face, :mod:`siamface.chip_restore`; ``"denoise+dehaze"`` when the
    model's fog gate also fired on the denoised chip), or None.
    """

    source: str
    detected: bool
    crop: str
    select: str
    fallback: str | None
    box: list[float] | None
    landmarks: list[list[float]] | None
    score: float | None
    gender: GenderPrediction | None
    embedding: np.ndarray | None = field(repr=False)
    chip: np.ndarray = field(repr=False)
    face_score: float | None = None
    no_face: str | None = None
    detected_by: str | None = None
    restored: str | None = None

    @property
    def has_face(self) -> bool:
        return self.no_face is None

    def to_dict(self, with_embedding: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "detected": self.detected,
            "detected_by": self.detected_by,
            "restored": self.restored,
            "crop": self.crop,
            "select": self.select,
            "fallback": self.fallback,
            "box": self.box,
            "landmarks": self.landmarks,
            "score": self.score,
            "face_score": self.face_score,
            "no_face": self.no_face,
            "gender": self.gender.to_dict() if self.gender else None,
        }
        if with_embedding:
            out["embedding"] = (None if self.embedding is None
                                else [float(v) for v in self.embedding])
        return out


VERIFY_STATUSES = ("match", "no_match", "no_face_a", "no_face_b", "no_face_both")


@dataclass(frozen=True)
class VerifyResult:
    """A verdict, or none: ``status`` is one of :data:`VERIFY_STATUSES`; when a face is
    absent (``no_face_*``), ``is_match`` and ``distance`` are ``None``."""

    is_match: bool | None
    distance: float | None
    threshold: float
    threshold_source: str
    a: FaceResult
    b: FaceResult
    status: str = "match"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "is_match": self.is_match,
            "distance": self.distance,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
        }


@dataclass(frozen=True)
class EmbedReport:
    """What :meth:`FaceService.embed_files` produced: one row of ``embeddings`` (N, D) and of
    ``detected`` (N,) per entry of ``paths``, and ``skipped`` (source, reason) for the files
    that gave no embedding."""

    paths: list[str]
    embeddings: np.ndarray
    detected: np.ndarray
    skipped: list[tuple[str, str]]


def default_model_path() -> Path | None:
    """The trained default model shipped inside the package, if this build has one."""
    path = Path(str(resources.files("siamface") / "assets" / DEFAULT_MODEL_FILE))
    return path if path.is_file() else None


def _untrained_default(backbone: str, weights: str | None):
    from siamface.backbones import create_backbone
    from siamface.model import SiameseMultiTask

    net = create_backbone(backbone, pretrained=True, weights=weights)
    model = SiameseMultiTask(net)
    model.eval()
    info = CheckpointInfo(
        backbone=backbone,
        backbone_sha256=net.config.sha256,
        stored_groups=[],
        head=model.head_config,
        threshold=float(net.config.default_threshold),
        threshold_source=f"{backbone} default",
        gender_trained=False,
    )
    return model, info


class FaceService:
    """A loaded model plus its face pipeline. Thread-compatible for reads."""

    runtime = "torch"  # one of RUNTIMES; siamface.ort's service sets its own

    def __init__(self, model, info: CheckpointInfo, pipeline, *, flip: bool = False,
                 device: str | torch.device = "cpu", batch_size: int = 32,
                 model_path: str | os.PathLike | None = None):
        """``model``: a :class:`~siamface.model.SiameseMultiTask`, or a function of no
        arguments that builds one, called on first use (see ``lazy`` in :meth:`load`)."""
        self.info = info
        self.regions = info.region_thresholds()  # None: one global threshold
        self.gates = gates_from_preprocessing(info.preprocessing)  # restore, embed again
        self.pipeline = pipeline
        self.flip = flip
        self.batch_size = batch_size
        self.model_path = None if model_path is None else Path(model_path)
        self._model_id: str | None = None
        self._embedding_id: str | None = None
        self._model_lock = threading.Lock()
        if callable(model) and not _is_module(model):
            self._model, self._build_model = None, model
            self._device = device  # checked by load(); converted when the model is built
        else:
            self._device = check_device(device)
            self._model, self._build_model = model.to(self._device).eval(), None

    @property
    def model(self):
        """The network (built now if the service was loaded lazily)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    self._device = check_device(self._device)
                    self._model = self._build_model().to(self._device).eval()
        return self._model

    @model.setter
    def model(self, value) -> None:
        self._model = value

    def __getstate__(self) -> dict[str, Any]:  # worker processes get a copy (no lock)
        state = dict(self.__dict__)
        state.pop("_model_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._model_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        if self._model is None:
            self._device = check_device(self._device)
        return self._device

    @device.setter
    def device(self, value) -> None:
        self._device = value

    @property
    def embedding_dim(self) -> int:
        """Length of an embedding (known without building a lazily loaded model)."""
        if self._model is None:
            from siamface.backbones import get_pretrained_config

            return get_pretrained_config(self.info.backbone).embedding_dim
        return int(self._model.embedding_dim)

    # construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, crop: str | None = None,
             select: str | None = None, flip: bool | None = None, device: str = "cpu",
             backbone: str | None = None, backbone_weights: str | None = None,
             batch_size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS,
             fallback_policy: str | None = None, runtime: str = "torch",
             onnx_dir: str | os.PathLike | None = None, lazy: bool = False,
             retries: Sequence[str] | None = None) -> FaceService:
        """Load a checkpoint (the shipped default when ``path`` is None).

        ``backbone`` without ``path``: that backbone's pretrained embeddings with its default
        threshold and no trained gender head. ``crop`` / ``select`` override the checkpoint's
        preprocessing; ``flip`` averages each face with its mirror image (None: when the
        checkpoint's threshold was calibrated that way). Images with more than ``max_pixels``
        pixels are refused from their header, before decoding. ``fallback_policy`` (auto,
        always, never; default auto) decides whether a centre crop of an image in which no
        face was detected is used as a face (see :mod:`siamface.faces`). ``runtime="onnx"``
        runs the checkpoint's ONNX export (``siamface export --format onnx``; found in
        ``onnx_dir`` or the export cache) with ONNX Runtime and never imports torch (see
        :mod:`siamface.ort`). ``retries``: the detection retries on restored copies of an
        image in which no face was found (default: all of
        :data:`siamface.detect.restore.DEFAULT_RETRIES`; ``()`` for none). ``lazy``: read only the checkpoint's metadata now and build
        the network (importing torch) on first use, so a run whose embeddings are all cached
        never builds it; a checkpoint whose tensors are corrupt then fails on first use.
        """
        if runtime != "torch":
            if runtime not in RUNTIMES:
                from siamface.errors import UnknownNameError

                raise UnknownNameError("runtime", runtime, RUNTIMES)
            from siamface.ort import OnnxFaceService

            return OnnxFaceService.load(
                path, crop=crop, select=select, flip=flip, device=device, backbone=backbone,
                backbone_weights=backbone_weights, batch_size=batch_size,
                max_pixels=max_pixels, fallback_policy=fallback_policy, onnx_dir=onnx_dir,
                runtime=runtime, retries=retries)
        if not (lazy and str(device) == "cpu"):  # checking "cpu" would import torch
            check_device(device)
        ckpt = path if path is not None else default_model_path()
        if lazy and ckpt is not None and not (path is None and backbone is not None):
            info, pipeline = _checkpoint_pipeline(ckpt, backbone, crop, select, max_pixels,
                                                  fallback_policy, retries)
            pre = info.preprocessing
            flip = bool(pre.get("flip_average", False)) if flip is None else flip
            build = functools.partial(_model_from_checkpoint, ckpt, backbone, backbone_weights)
            return cls(build, info, pipeline, flip=flip, device=device, batch_size=batch_size,
                       model_path=ckpt)
        ckpt = None
        if path is None and backbone is not None:
            # an explicit backbone without a checkpoint: its pretrained embeddings, no trained heads
            model, info = _untrained_default(backbone, backbone_weights)
        else:
            ckpt = path if path is not None else default_model_path()
            if ckpt is None:
                model, info = _untrained_default(DEFAULT_BACKBONE, backbone_weights)
            else:
                model, info = load_checkpoint(ckpt, backbone=backbone,
                                              backbone_weights=backbone_weights)
        pre = info.preprocessing
        pipeline = _pipeline(model.backbone.config, pre, crop, select, max_pixels,
                             fallback_policy, retries)
        if flip is None:
            flip = bool(pre.get("flip_average", False))
        return cls(model, info, pipeline, flip=flip, device=device, batch_size=batch_size,
                   model_path=ckpt)

    # properties ---------------------------------------------------------------------------
    @property
    def max_pixels(self) -> int:
        """The largest image (in pixels) this service decodes."""
        return self.pipeline.max_pixels

    def load_image(self, source: ImageSource) -> np.ndarray:
        """``source`` decoded as RGB uint8 under this service's ``max_pixels``."""
        return load_image(source, max_pixels=self.max_pixels)

    @property
    def threshold(self) -> float:
        return self.info.threshold

    @property
    def model_id(self) -> str:
        """What makes this service's embeddings what they are: the checkpoint file's sha256
        (or the untrained backbone and its weights' hash) and the flip setting. Keys the
        embedding cache together with the face pipeline's parameters."""
        if self._model_id is None:
            if self.model_path is not None:
                digest = hashlib.sha256()
                with open(self.model_path, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(chunk)
                base = "checkpoint:" + digest.hexdigest()
            else:
                base = f"untrained:{self.info.backbone}:{self.info.backbone_sha256}"
            self._model_id = f"{base}:flip={int(self.flip)}"
        return self._model_id

    @property
    def embedding_id(self) -> str:
        """What makes this service's embeddings and gender logits what they are: the
        checkpoint's tensors and the metadata that shapes them (not its threshold, training
        record or metrics: :func:`siamface.checkpoint.embedding_digest`) and the flip setting.
        Keys the embedding cache, so a recalibrated copy of a model reuses its embeddings;
        :attr:`model_id` names the file itself."""
        if self._embedding_id is None:
            if self.model_path is not None:
                base = "embeddings:" + embedding_digest(self.model_path, self.info)
            else:
                base = f"untrained:{self.info.backbone}:{self.info.backbone_sha256}"
            self._embedding_id = f"{base}:flip={int(self.flip)}"
        return self._embedding_id

    def describe(self) -> str:
        """One line naming the model, for reports."""
        where = str(self.model_path) if self.model_path is not None else (
            f"untrained {self.info.backbone}")
        return f"{where} ({self.info.backbone}, flip {'on' if self.flip else 'off'})"

    @property
    def gender_available(self) -> bool:
        return self.info.gender_trained

    @property
    def gender_classes(self) -> tuple[str, str]:
        return self.info.head.gender_classes

    # core ---------------------------------------------------------------------------------
    def _run_chips(self, chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and gender logits for uint8 chips (N, S, S, 3), in batches."""
        from siamface.model import run_chips

        return run_chips(self.model, chips, flip=self.flip, batch_size=self.batch_size,
                         device=self.device)

    def _embed_chips(self, chips: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
        """(chips, embeddings, gender logits, restored) of aligned uint8 chips: the network's
        pass, then a second one on the restored chips of the faces an embedding gate flags
        (``siamface.chip_restore.apply_gates``; ``restored`` names the restoration)."""
        embeddings, logits = self._run_chips(chips)
        if not self.gates:
            return chips, embeddings, logits, [None] * len(chips)
        return apply_gates(self._run_chips, chips, embeddings, logits, self.gates)

    def _gender(self, logit: float) -> GenderPrediction | None:
        if not self.gender_available:
            return None
        first, second = self.gender_classes
        p_second = float(1.0 / (1.0 + np.exp(-logit)))
        probs = {first: 1.0 - p_second, second: p_second}
        label = second if p_second >= 0.5 else first
        return GenderPrediction(label=label, probability=probs[label], probabilities=probs)

    def _results(self, sources: Sequence[ImageSource], crops) -> list[FaceResult]:
        """Embed and label the crops that hold a face; absent faces get neither."""
        faces = [i for i, c in enumerate(crops) if getattr(c, "no_face", None) is None]
        chips = (np.stack([crops[i].chip for i in faces]) if faces
                 else np.zeros((0, 1, 1, 3), np.uint8))
        chips, embedded, logits, gated = self._embed_chips(chips)
        row = {i: n for n, i in enumerate(faces)}
        out = []
        for i, (source, crop) in enumerate(zip(sources, crops)):
            present = i in row
            out.append(FaceResult(
                source=describe_source(source),
                detected=bool(crop.detected),
                crop=crop.crop,
                select=crop.select,
                fallback=crop.fallback,
                box=None if crop.box is None else [float(v) for v in crop.box],
                landmarks=None if crop.landmarks is None else np.asarray(crop.landmarks).tolist(),
                score=None if crop.score is None else float(crop.score),
                gender=self._gender(float(logits[row[i]])) if present else None,
                embedding=embedded[row[i]] if present else None,
                chip=chips[row[i]] if present else crop.chip,
                face_score=None if crop.face_score is None else float(crop.face_score),
                no_face=crop.no_face,
                detected_by=getattr(crop, "detected_by", None),
                restored=_restorations(getattr(crop, "restored", None),
                                       gated[row[i]] if present else None),
            ))
        return out

    def faces(self, images: Sequence[ImageSource]) -> list[FaceResult]:
        """One face per image (chosen by the pipeline's selection rule)."""
        images = list(images)
        return self._results(images, self.pipeline.crop_batch(images))

    # public API ---------------------------------------------------------------------------
    def analyze(self, image: ImageSource, *, all_faces: bool = False) -> list[FaceResult]:
        """Gender and embedding of the selected face (or of every face with ``all_faces``)."""
        if all_faces:
            crops = self.pipeline.crop_all(image)
            return self._results([image] * len(crops), crops)
        return self.faces([image])

    def embed(self, images: Iterable[ImageSource]) -> np.ndarray:
        """Embeddings (N, D) of the selected face in each image; :class:`NoFaceError` when
        an image holds no face (``faces`` or ``embed_files`` report them instead)."""
        faces = self.faces(list(images))
        absent = [f for f in faces if not f.has_face]
        if absent:
            raise NoFaceError(absent[0].source, absent[0].no_face or "no face", len(absent))
        if not faces:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.stack([f.embedding for f in faces])

    def embed_files(self, paths: Sequence[str | os.PathLike], *,
                    root: str | os.PathLike | None = None, progress: Any = None) -> EmbedReport:
        """Embed image files ``batch_size`` at a time; a file that cannot be read, or holds no
        face, is skipped and reported with its reason, never fatal. ``paths`` in the report
        are relative to ``root`` when given; ``progress(n)`` is called after each batch with
        the files it covered."""
        kept, embeddings, detected = [], [], []
        skipped: list[tuple[str, str]] = []
        for start in range(0, len(paths), self.batch_size):
            chunk = paths[start:start + self.batch_size]
            batch = []
            for path in chunk:
                try:
                    batch.append((path, self.load_image(path)))
                except ImageDecodeError as exc:
                    skipped.append((str(path), exc.reason))
            for (path, _), face in zip(batch, self.faces([image for _, image in batch])):
                if not face.has_face:
                    skipped.append((str(path), face.no_face or "no face"))
                    continue
                kept.append(str(Path(path).relative_to(root)) if root is not None else str(path))
                embeddings.append(face.embedding)
                detected.append(face.detected)
            if progress is not None:
                progress(len(chunk))
        matrix = np.array(embeddings, dtype=np.float32).reshape(len(kept), -1)
        if not kept:
            matrix = np.zeros((0, self.embedding_dim), np.float32)
        return EmbedReport(kept, matrix, np.array(detected, dtype=bool), skipped)

    def pair_thresholds(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The operating threshold of each pair of embedding rows: the checkpoint's region
        thresholds where it has them, else its one global threshold."""
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        if self.regions is None:
            return np.full(a.shape[0], self.threshold, np.float64)
        return self.regions.pair_thresholds(a, b)

    def threshold_source_text(self) -> str:
        """Where the operating threshold comes from, in words."""
        if self.regions is None:
            return self.info.threshold_source
        return f"{self.regions.describe()}; a user threshold replaces them"

    def compare(self, a: FaceResult, b: FaceResult, threshold: float | None = None) -> VerifyResult:
        """The verdict on two faces: at ``threshold`` when given (one global value, which
        replaces any region thresholds; the result's source says "user"), else at the
        checkpoint's operating point for this pair."""
        t = self.threshold if threshold is None else float(threshold)
        source = self.threshold_source_text() if threshold is None else "user"
        if not (a.has_face and b.has_face):  # no face, no verdict
            status = ("no_face_both" if not (a.has_face or b.has_face)
                      else "no_face_a" if not a.has_face else "no_face_b")
            return VerifyResult(None, None, t, source, a, b, status)
        if threshold is None:
            t = float(self.pair_thresholds(a.embedding, b.embedding)[0])
        distance = float(np.linalg.norm(a.embedding - b.embedding))
        match = distance <= t
        return VerifyResult(match, distance, t, source, a, b, "match" if match else "no_match")

    def verify(self, a: ImageSource, b: ImageSource, *, threshold: float | None = None
               ) -> VerifyResult:
        """Are the faces in ``a`` and ``b`` the same person?"""
        face_a, face_b = self.faces([a, b])
        return self.compare(face_a, face_b, threshold)

    def verify_many(self, pairs: Sequence[tuple[ImageSource, ImageSource]], *,
                    threshold: float | None = None) -> list[VerifyResult]:
        """Verify many pairs; each distinct source is embedded once."""
        unique: dict[Any, int] = {}
        order: list[ImageSource] = []
        index = []
        for a, b in pairs:
            ids = []
            for src in (a, b):
                key = str(src) if isinstance(src, (str, Path)) else id(src)
                if key not in unique:
                    unique[key] = len(order)
                    order.append(src)
                ids.append(unique[key])
            index.append(ids)
        faces = self.faces(order)
        return [self.compare(faces[i], faces[j], threshold) for i, j in index]


def _pipeline(config: Any, preprocessing: dict[str, Any], crop: str | None,
              select: str | None, max_pixels: int, fallback_policy: str | None = None,
              retries: Sequence[str] | None = None):
    from siamface.faces import DEFAULT_FALLBACK_POLICY, DEFAULT_SELECT, FacePipeline

    return FacePipeline.for_backbone(
        config,
        crop=crop or preprocessing.get("crop"),
        select=select or preprocessing.get("select") or DEFAULT_SELECT,
        max_pixels=max_pixels,
        fallback_policy=fallback_policy or DEFAULT_FALLBACK_POLICY,
        retries=retries,
        chip_restore=preprocessing.get("chip_restore"),
    )


def pipeline_for(path: str | os.PathLike | None = None, *, backbone: str | None = None,
                 crop: str | None = None, select: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, fallback_policy: str | None = None,
                 retries: Sequence[str] | None = None):
    """The face pipeline :meth:`FaceService.load` would build for the same arguments (chip
    size, alignment template, crop and selection rule), without loading any weights: what
    ``siamface prepare --model M | --backbone NAME`` crops with."""
    from siamface.backbones import get_pretrained_config

    if path is None and backbone is not None:
        name = backbone
    else:
        ckpt = path if path is not None else default_model_path()
        if ckpt is not None:
            return _checkpoint_pipeline(ckpt, backbone, crop, select, max_pixels,
                                        fallback_policy, retries)[1]
        name = DEFAULT_BACKBONE
    return _pipeline(get_pretrained_config(name), {}, crop, select, max_pixels,
                     fallback_policy, retries)


def _checkpoint_pipeline(ckpt, backbone: str | None, crop: str | None, select: str | None,
                         max_pixels: int, fallback_policy: str | None,
                         retries: Sequence[str] | None) -> tuple[CheckpointInfo, Any]:
    """A checkpoint's metadata and the face pipeline it asks for, without its weights;
    ``backbone`` refuses a checkpoint made for another backbone."""
    from siamface.backbones import get_pretrained_config
    from siamface.checkpoint import read_checkpoint_info

    info = read_checkpoint_info(ckpt)
    if backbone is not None and backbone != info.backbone:
        raise CheckpointError(
            f"{ckpt} was trained for backbone {info.backbone!r}, not {backbone!r}")
    return info, _pipeline(get_pretrained_config(info.backbone), info.preprocessing, crop,
                           select, max_pixels, fallback_policy, retries)


def _model_from_checkpoint(path, backbone: str | None, backbone_weights: str | None):
    return load_checkpoint(path, backbone=backbone, backbone_weights=backbone_weights)[0]


def _is_module(obj: Any) -> bool:
    # a torch module is callable too; telling it from a builder must not import torch
    return hasattr(obj, "state_dict") and hasattr(obj, "eval")


def check_device(device: str | torch.device) -> torch.device:
    """A usable torch device, or a :class:`ConfigError` saying why not."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}; use cpu, cuda or cuda:N") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} GPUs present")
    elif parsed.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return parsed


def load(path: str | os.PathLike | None = None, **kwargs: Any) -> FaceService:
    """Load a model: the shipped default when ``path`` is None. See :meth:`FaceService.load`."""
    return FaceService.load(path, **kwargs)


def _restorations(*names: str | None) -> str | None:
    """The restorations applied to a chip, in order, joined by ``+`` (None when none was)."""
    return "+".join(n for n in names if n) or None

"""The torch-free inference runtime: the ONNX export of a checkpoint run with ONNX Runtime,
numpy and OpenCV only. ``siamface.load(model, runtime="onnx")`` (or ``--runtime onnx``)
returns an :class:`OnnxFaceService`: the same verify / analyze / embed API as the torch
service, with detection (:class:`OnnxMTCNN`: the numpy cascade of
:mod:`siamface.detect.cascade` around MTCNN's ONNX networks), alignment
(:mod:`siamface.align`), the face-presence check (:class:`OnnxFacePresence`: the numpy code of
:mod:`siamface.detect.presence` around the ONNX R-Net and O-Net), gender and verification.

The export comes from ``siamface export --format onnx --with-detector [--model M]``, which
writes it into the export cache (:func:`siamface.export.default_export_dir`, keyed by the
checkpoint's sha256 and the flip setting) or ``--out DIR`` (then pass ``onnx_dir=DIR``). An
export made from another checkpoint, or whose files changed since, is refused with a
:class:`~siamface.errors.CheckpointError`. ``runtime="onnx-int8"`` runs the int8 model of an
export made with ``--int8``.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import numpy as np

from siamface.checkpoint import read_checkpoint_info
from siamface.chip_restore import gates_from_preprocessing
from siamface.detect.cascade import CROPS_PER_CALL, PNET_PIXELS_PER_CALL, Cascade, in_chunks
from siamface.detect.presence import FacePresence
from siamface.errors import CheckpointError, ConfigError
from siamface.export.manifest import (
    DETECTOR_FILES,
    MANIFEST_NAME,
    check_files,
    default_export_dir,
    file_sha256,
    read_manifest,
)
from siamface.io import DEFAULT_MAX_PIXELS
from siamface.service import FaceService, default_model_path

__all__ = ["OnnxFacePresence", "OnnxFaceService", "OnnxMTCNN", "session"]

ONNX_RUNTIMES = {"onnx": "model", "onnx-int8": "model_int8"}


def session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU inference session of ``path`` (``threads``: intra-op threads,
    default ONNX Runtime's: one per physical core). It pickles as its file and thread count
    and is rebuilt where it is unpickled, so a pipeline holding sessions can go to detection
    worker processes."""
    return _Session(str(path), threads)


class _Session:
    """An ONNX Runtime session that crosses process boundaries (ONNX Runtime's own cannot
    be pickled); attributes are those of the session inside."""

    def __init__(self, path: str, threads: int | None) -> None:
        self.path, self.threads = path, threads
        self._session = _create_session(path, threads)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "threads": self.threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["threads"])

    def __getattr__(self, name: str) -> Any:
        if name == "_session":  # not built yet (unpickling)
            raise AttributeError(name)
        return getattr(self._session, name)


def _create_session(path: str, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError("the onnx runtime needs onnxruntime: pip install 'siamface[onnx]'"
                          ) from exc
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    # Idle pool threads sleep instead of spinning: between MTCNN's many small network calls
    # the spinning threads took the cores from the numpy cascade (two images: 140 -> 85 ms);
    # batched throughput is the same either way.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise CheckpointError(f"{path} cannot be loaded by ONNX Runtime ({exc})") from exc


def _run(sess: Any, x: np.ndarray) -> list[np.ndarray]:
    return sess.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})


class OnnxMTCNN(Cascade):
    """MTCNN with its three networks in ONNX Runtime (``pnet``, ``rnet``, ``onet``:
    sessions of an export's ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``); the rest is the
    numpy cascade the torch :class:`siamface.detect.MTCNN` runs too."""

    def __init__(self, pnet: Any, rnet: Any, onet: Any, **settings: Any) -> None:
        super().__init__(**settings)
        self.pnet, self.rnet, self.onet = pnet, rnet, onet

    def run_pnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_call = max(1, PNET_PIXELS_PER_CALL // (x.shape[2] * x.shape[3]))
        reg, logit = in_chunks(lambda part: _run(self.pnet, part), x, per_call)
        return reg, logit

    def run_rnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        reg, logit = in_chunks(lambda part: _run(self.rnet, part), x, CROPS_PER_CALL[0])
        return reg, logit

    def run_onet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reg, marks, logit = in_chunks(lambda part: _run(self.onet, part), x, CROPS_PER_CALL[1])
        return reg, marks, logit


class OnnxFacePresence(FacePresence):
    """:class:`~siamface.detect.presence.FacePresence` with its networks in ONNX Runtime
    (``rnet``, ``onet``, ``pnet``: sessions); the same windows, contrast and averaging."""

    def __init__(self, rnet: Any, onet: Any, pnet: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rnet_session, self._onet_session, self._pnet_session = rnet, onet, pnet

    def run_onet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not len(x):
            return (np.zeros((0, 4), np.float32), np.zeros((0, 10), np.float32),
                    np.zeros(0, np.float32))
        reg, marks, logit = _run(self._onet_session, x)[:3]
        return reg, marks, logit

    def run_rnet(self, x: np.ndarray) -> np.ndarray:
        return _run(self._rnet_session, x)[1] if len(x) else np.zeros(0, np.float32)

    def run_pnet(self, x: np.ndarray) -> np.ndarray:
        return _run(self._pnet_session, x)[1].reshape(-1) if len(x) else np.zeros(0, np.float32)


class _ExportedModel:
    """Stands in for the torch model of a :class:`FaceService`: the embedding size, and a
    clear error for anything that needs torch."""

    def __init__(self, embedding_dim: int, backbone: str):
        self.embedding_dim = int(embedding_dim)
        self.backbone_name = backbone

    def __getattr__(self, name: str) -> Any:
        raise ConfigError(f"the onnx runtime holds no torch model (asked for {name!r}); "
                          "load the model with runtime='torch' (--runtime torch) for that")


def _export_hint(ckpt: Path | None, flip: bool, default_flip: bool, int8: bool) -> str:
    parts = ["siamface export --format onnx --with-detector"]
    if ckpt is not None and ckpt != default_model_path():
        parts.append(f"--model {ckpt}")
    if flip != default_flip:
        parts.append("--flip" if flip else "--no-flip")
    if int8:
        parts.append("--int8 --calibration DIR")
    return " ".join(parts)


class OnnxFaceService(FaceService):
    """A :class:`~siamface.service.FaceService` whose networks run in ONNX Runtime; built by
    :meth:`load` (``siamface.load(..., runtime="onnx")``). Never imports torch."""

    def __init__(self, session_: Any, manifest: dict[str, Any], info: Any, pipeline: Any, *,
                 flip: bool, batch_size: int = 32, model_path: str | os.PathLike | None = None,
                 onnx_dir: str | os.PathLike | None = None, runtime: str = "onnx"):
        # FaceService.__init__ moves a torch model to a device: nothing of that applies here.
        spec = manifest["model"]
        self.model = _ExportedModel(spec["embedding_dim"], spec["backbone"])
        self.info = info
        self.regions = info.region_thresholds()
        self.gates = gates_from_preprocessing(info.preprocessing)
        self.pipeline = pipeline
        self.flip = bool(flip)
        self.device = "cpu"
        self.batch_size = batch_size
        self.model_path = None if model_path is None else Path(model_path)
        self.onnx_dir = None if onnx_dir is None else Path(onnx_dir)
        self.manifest = manifest
        self.session = session_
        self.runtime = runtime
        self.chip_size = int(spec["chip_size"])
        self._model_id: str | None = None
        self._embedding_id: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, crop: str | None = None,
             select: str | None = None, flip: bool | None = None, device: str = "cpu",
             backbone: str | None = None, batch_size: int = 32,
             max_pixels: int = DEFAULT_MAX_PIXELS, fallback_policy: str | None = None,
             onnx_dir: str | os.PathLike | None = None, runtime: str = "onnx",
             threads: int | None = None, retries: Any = None,
             **unused: Any) -> OnnxFaceService:
        """The ONNX export of the checkpoint ``path`` (the shipped default when None), from
        ``onnx_dir`` or the export cache; the other arguments as for
        :meth:`FaceService.load`. ``runtime="onnx-int8"`` runs the int8 model."""
        from siamface.faces import DEFAULT_FALLBACK_POLICY, DEFAULT_SELECT, FacePipeline

        if runtime not in ONNX_RUNTIMES:
            raise ConfigError(f"unknown onnx runtime {runtime!r}; valid: "
                              f"{', '.join(ONNX_RUNTIMES)}")
        if str(device) != "cpu":
            raise ConfigError(f"the onnx runtime runs on the CPU only, not {device!r}; use "
                              "--runtime torch for a GPU")
        if unused.get("backbone_weights") is not None:
            raise ConfigError("--backbone-weights applies to the torch runtime only: the "
                              "ONNX export holds the weights it was made with")
        if path is None and backbone is not None:
            raise ConfigError(f"the onnx runtime runs an exported checkpoint; an untrained "
                              f"backbone ({backbone!r} without --model) needs --runtime torch")
        ckpt = Path(path) if path is not None else default_model_path()
        if ckpt is None:
            raise CheckpointError("this build ships no default model: give a checkpoint")
        info = read_checkpoint_info(ckpt)
        if backbone is not None and backbone != info.backbone:
            raise CheckpointError(
                f"{ckpt} was trained for backbone {info.backbone!r}, not {backbone!r}")
        pre = info.preprocessing
        default_flip = bool(pre.get("flip_average", False))
        flip = default_flip if flip is None else bool(flip)
        sha = file_sha256(ckpt)
        folder = Path(onnx_dir) if onnx_dir is not None else default_export_dir(sha, flip)
        hint = _export_hint(ckpt, flip, default_flip, runtime == "onnx-int8")
        if onnx_dir is not None:
            hint += f" --out {folder}"
        if not (folder / MANIFEST_NAME).is_file():
            raise CheckpointError(
                f"no ONNX export of {ckpt.name} in {folder}; create it with `{hint}`")
        manifest = read_manifest(folder)
        _check_manifest(manifest, folder, ckpt, sha, info, flip, hint)
        names = [ONNX_RUNTIMES[runtime]]
        if names[0] not in manifest["files"]:
            raise CheckpointError(f"the ONNX export in {folder} has no int8 model; create it "
                                  f"with `{hint}`")
        missing = [n for n in DETECTOR_FILES if n not in manifest["files"]]
        if missing:
            raise CheckpointError(f"the ONNX export in {folder} was made without the detector "
                                  f"(no {', '.join(missing)}); create it with `{hint}`")
        paths = check_files(folder, manifest, names + list(DETECTOR_FILES))
        nets = {name: session(paths[name], threads) for name in DETECTOR_FILES}
        spec = manifest["model"]
        config = types.SimpleNamespace(template=spec["template"], crop=spec["crop"],
                                       input_size=int(spec["chip_size"]))
        settings = {k: v for k, v in (manifest.get("detector") or {}).items() if k != "name"}
        pipeline = FacePipeline.for_backbone(
            config,
            crop=crop or pre.get("crop"),
            select=select or pre.get("select") or DEFAULT_SELECT,
            max_pixels=max_pixels,
            fallback_policy=fallback_policy or DEFAULT_FALLBACK_POLICY,
            retries=retries,
            chip_restore=pre.get("chip_restore"),
            detector=OnnxMTCNN(nets["pnet"], nets["rnet"], nets["onet"], **settings),
            presence=OnnxFacePresence(nets["rnet"], nets["onet"], nets["pnet"]),
        )
        return cls(session(paths[names[0]], threads), manifest, info, pipeline, flip=flip,
                   batch_size=batch_size, model_path=ckpt, onnx_dir=folder, runtime=runtime)

    @property
    def model_id(self) -> str:
        """The torch service's id, the runtime and the ONNX model file's sha256: embeddings
        differ from torch's by float rounding (int8, and each int8 calibration: by more),
        so caches keep them apart."""
        if self._model_id is None:
            entry = self.manifest["files"][ONNX_RUNTIMES[self.runtime]]
            self._model_id = (f"{super().model_id}:runtime={self.runtime}:"
                              f"{entry['sha256'][:16]}")
        return self._model_id

    @property
    def embedding_id(self) -> str:
        """The torch service's embedding id, the runtime and the ONNX model file's sha256."""
        if self._embedding_id is None:
            entry = self.manifest["files"][ONNX_RUNTIMES[self.runtime]]
            self._embedding_id = (f"{super().embedding_id}:runtime={self.runtime}:"
                                  f"{entry['sha256'][:16]}")
        return self._embedding_id

    def describe(self) -> str:
        return f"{super().describe()} [{self.runtime} runtime, {self.onnx_dir}]"

    def _run_chips(self, chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and gender logits for uint8 chips (N, S, S, 3), in batches."""
        s = self.chip_size
        chips = np.asarray(chips)
        dim = self.model.embedding_dim
        if len(chips) == 0:
            return np.zeros((0, dim), np.float32), np.zeros((0,), np.float32)
        if chips.ndim != 4 or chips.shape[1:] != (s, s, 3) or chips.dtype != np.uint8:
            raise ConfigError(f"the {self.info.backbone} ONNX model expects uint8 RGB chips "
                              f"of shape (N, {s}, {s}, 3), got {chips.dtype} {chips.shape}; "
                              f"crop with chip_size={s}")
        embeddings, logits = [], []
        for start in range(0, len(chips), self.batch_size):
            batch = np.ascontiguousarray(chips[start:start + self.batch_size])
            emb, logit = self.session.run(None, {"chips": batch})
            embeddings.append(emb)
            logits.append(logit)
        return np.concatenate(embeddings), np.concatenate(logits)


def _check_manifest(manifest: dict[str, Any], folder: Path, ckpt: Path, sha: str, info: Any,
                    flip: bool, hint: str) -> None:
    """The export must come from this very checkpoint, described as it describes itself,
    with the flip setting asked for."""
    made_from = manifest["checkpoint"]
    if made_from.get("sha256") != sha:
        raise CheckpointError(
            f"the ONNX export in {folder} does not match {ckpt}: it was made from "
            f"{made_from.get('file')!r} with sha256 {made_from.get('sha256')}, and {ckpt.name} "
            f"has sha256 {sha}; export this checkpoint with `{hint}`")
    spec = manifest["model"]
    expected = {"backbone": info.backbone, "threshold": float(info.threshold),
                "gender_classes": list(info.head.gender_classes),
                "gender_trained": bool(info.gender_trained)}
    wrong = {k: (spec.get(k), v) for k, v in expected.items() if spec.get(k) != v}
    if made_from.get("description") != info.to_json():
        wrong["description"] = ("(the manifest's)", "(the checkpoint's)")
    if wrong:
        what = "; ".join(f"{k}: export {a!r}, checkpoint {b!r}" for k, (a, b) in wrong.items())
        raise CheckpointError(f"the ONNX manifest in {folder} does not match the description "
                              f"of {ckpt} ({what}); export it again with `{hint}`")
    if bool(spec.get("flip_average")) != flip:
        raise CheckpointError(
            f"the ONNX export in {folder} was made with flip averaging "
            f"{'on' if spec.get('flip_average') else 'off'}, and flip "
            f"{'on' if flip else 'off'} was asked for; export with `{hint}`")


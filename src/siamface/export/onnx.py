"""Export a checkpoint (and MTCNN) to ONNX: ``export_onnx(out, model)``.

``model.onnx`` maps aligned uint8 RGB chips (N, S, S, 3) to (embedding (N, D), gender logit
(N,)) with the backbone's preprocessing ``(pixel - mean) / scale`` inside the graph and, when
the service flips (the checkpoint's ``preprocessing.flip_average``, or ``flip=True``), the
average of each face with its mirror image too, exactly as :meth:`FaceService._run_chips`
computes it; the batch axis is dynamic. ``with_detector`` adds MTCNN's P-Net (batch, height
and width dynamic), R-Net and O-Net (batch dynamic), which the ONNX runtime runs with the
numpy cascade of :mod:`siamface.detect.cascade`. ``int8`` adds ``model.int8.onnx``: ONNX
Runtime's static quantisation calibrated on real face chips.

Graphs come from torch's TorchScript-based exporter (``dynamo=False``: the torch.export-based
one needs the separate onnxscript package), opset :data:`~siamface.export.manifest.OPSET`, and
are checked with ``onnx.checker`` and against PyTorch on a few chips before the manifest is
written (last, so a folder with a manifest is complete).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siamface import __version__
from siamface._atomic import atomic_path, atomic_write_text
from siamface.checkpoint import read_checkpoint_info
from siamface.errors import CheckpointError, ConfigError
from siamface.export.manifest import (
    DETECTOR_FILES,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    MODEL_FILE,
    MODEL_INT8_FILE,
    ONNX_BACKBONES,
    OPSET,
    default_export_dir,
    file_sha256,
)

__all__ = ["ChipGraph", "OnnxExport", "export_onnx", "quantize_int8"]

# Chips per calibration batch of the int8 quantiser (its calibrator keeps every activation).
_CALIBRATION_BATCH = 16
_SELF_CHECK_TOLERANCE = 1e-3  # a broken export differs by far more; the tests ask for 1e-4


class ChipGraph(nn.Module):
    """What ``model.onnx`` computes: uint8 chips (N, S, S, 3) -> (embedding, gender logit),
    the backbone's normalisation and (with ``flip``) the mirror-image average inside."""

    def __init__(self, model: nn.Module, flip: bool):
        super().__init__()
        config = model.backbone.config
        self.model = model
        self.flip = bool(flip)
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.inv_scale = 1.0 / float(config.scale)

    def forward(self, chips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (chips.permute(0, 3, 1, 2).to(torch.float32) - self.mean) * self.inv_scale
        if not self.flip:
            return self.model.forward_single(x)
        n = x.shape[0]
        emb, logit = self.model.forward_single(torch.cat([x, x.flip(3)]))
        return (emb[:n] + emb[n:]) / 2, (logit[:n] + logit[n:]) / 2


class _PNetGraph(nn.Module):
    """P-Net's logits as exported: its 2x2 ceil-mode max pool as one MaxPool (the torch
    module's two strided maxima branch on the input size in Python, which a trace would
    freeze)."""

    def __init__(self, pnet: nn.Module):
        super().__init__()
        self.pnet = pnet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pnet
        x = p.prelu1(p.conv1(x))
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = p.prelu3(p.conv3(p.prelu2(p.conv2(x))))
        out = p.head(x)
        return out[:, :4], out[:, 4]


class _Logits(nn.Module):
    """R-Net or O-Net as exported: outputs with the face logit (not the probability)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net.logits(x)


@dataclass(frozen=True)
class OnnxExport:
    """Where an export was written and what it holds."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.folder / entry["file"]
                for name, entry in self.manifest["files"].items()}


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path,
            inputs: list[str], outputs: list[str], dynamic: dict[str, dict[int, str]],
            opset: int) -> None:
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The legacy exporter's deprecation notice, and tracer notes about the dlib ResNet's
        # shape-dependent padding (fixed for a fixed chip size), are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=opset,
                          input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          do_constant_folding=True)
    module.eval()  # the exporter restores the mode it found; make sure it is eval
    import onnx

    proto = onnx.load_model_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_close(what: str, got: Sequence[np.ndarray], want: Sequence[torch.Tensor]) -> None:
    for g, w in zip(got, want, strict=True):
        diff = float(np.abs(g - w.numpy()).max()) if g.size else 0.0
        if not diff <= _SELF_CHECK_TOLERANCE:
            raise CheckpointError(f"the ONNX export of {what} differs from PyTorch by {diff:g} "
                                  f"(> {_SELF_CHECK_TOLERANCE:g}); the export is not usable")


def _sample_chips(size: int, n: int = 3) -> np.ndarray:
    """Deterministic smooth test chips (a self-check, not an accuracy test)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + k) * np.cos(4 * y - k) for k in range(3)], axis=-1)
    chips = [(127 + 100 * base + rng.normal(0, 8, base.shape)).clip(0, 255) for _ in range(n)]
    return np.stack(chips).astype(np.uint8)


def _export_detector(folder: Path, opset: int) -> dict[str, dict[str, Any]]:
    from siamface.detect.nets import load_networks

    pnet, rnet, onet = load_networks()
    specs = [
        ("pnet", _PNetGraph(pnet), (1, 3, 61, 47), ["reg", "logit"],
         {"x": {0: "n", 2: "height", 3: "width"}, "reg": {0: "n", 2: "rows", 3: "cols"},
          "logit": {0: "n", 1: "rows", 2: "cols"}}),
        ("rnet", _Logits(rnet), (2, 3, 24, 24), ["reg", "logit"],
         {"x": {0: "n"}, "reg": {0: "n"}, "logit": {0: "n"}}),
        ("onet", _Logits(onet), (2, 3, 48, 48), ["reg", "landmarks", "logit"],
         {"x": {0: "n"}, "reg": {0: "n"}, "landmarks": {0: "n"}, "logit": {0: "n"}}),
    ]
    entries = {}
    gen = torch.Generator().manual_seed(0)
    for name, module, shape, outputs, dynamic in specs:
        path = folder / DETECTOR_FILES[name]
        example = torch.rand(shape, generator=gen) * 2 - 1
        _export(module, (example,), path, ["x"], outputs, dynamic, opset)
        probe = torch.rand((3, *shape[1:]) if name != "pnet" else (2, 3, 37, 90),
                           generator=gen) * 2 - 1
        with torch.inference_mode():
            want = module(probe)
        got = _session(path).run(None, {"x": probe.numpy()})
        _check_close(f"MTCNN {name}", got, want)
        entries[name] = {"file": path.name, "sha256": file_sha256(path), "inputs": ["x"],
                         "outputs": outputs}
    return entries


class _ChipReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over uint8 chips."""

    def __init__(self, chips: np.ndarray, batch: int = _CALIBRATION_BATCH):
        self._batches = iter([chips[i:i + batch] for i in range(0, len(chips), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._batches, None)
        return None if chunk is None else {"chips": np.ascontiguousarray(chunk)}

    def rewind(self) -> None:  # not needed by a single calibration pass
        raise NotImplementedError


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def quantize_int8(fp32: Path, out: Path, chips: np.ndarray, method: str = "percentile"
                  ) -> int:
    """Static int8 quantisation (QDQ, per-channel signed weights, unsigned activations) of
    ``fp32`` into ``out``, its activation ranges calibrated on ``chips`` by ``method``
    (:data:`CALIBRATION_METHODS`), in equal batches (the histogram calibrators need them: a
    last partial batch is left out). Returns the number of chips used."""
    chips = chips[:len(chips) // _CALIBRATION_BATCH * _CALIBRATION_BATCH]
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_ChipReader, CalibrationDataReader):
        pass

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ConfigError(f"unknown calibration method {method!r}; valid: "
                          f"{', '.join(CALIBRATION_METHODS)}")

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as work, \
            atomic_path(out) as tmp:
        pre = Path(work) / "pre.onnx"
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(tmp), Reader(chips), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=methods[method],
                            extra_options={"CalibTensorRangeSymmetric": False})
    import onnx

    onnx.checker.check_model(str(out), full_check=True)
    return len(chips)


def export_onnx(
    out: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    *,
    flip: bool | None = None,
    with_detector: bool = False,
    int8: bool = False,
    calibration: np.ndarray | Iterable[Any] | None = None,
    calibration_method: str = "percentile",
    opset: int = OPSET,
    progress: Callable[[str], None] | None = None,
) -> OnnxExport:
    """Export the checkpoint ``model`` (the shipped default when None) to ONNX in ``out``
    (default: :func:`~siamface.export.manifest.default_export_dir`, where
    ``runtime="onnx"`` looks). ``flip`` overrides the checkpoint's flip averaging;
    ``with_detector`` exports MTCNN too (the ONNX runtime needs it); ``int8`` also writes a
    statically quantised model calibrated on ``calibration``: uint8 chips (N, S, S, 3) as the
    model's face pipeline crops them, or image sources that it crops (about 200 faces), by
    ``calibration_method`` (percentile: on LFW View 2 it lost 0.18 points of accuracy against
    fp32, minmax 0.23)."""
    from siamface.service import FaceService, default_model_path

    say = progress or (lambda _msg: None)
    ckpt = Path(model) if model is not None else default_model_path()
    if ckpt is None:
        raise CheckpointError("this build ships no default model: give --model CHECKPOINT")
    info = read_checkpoint_info(ckpt)
    if info.backbone not in ONNX_BACKBONES:
        raise CheckpointError(
            f"{ckpt}: backbone {info.backbone!r} has no ONNX export path (exportable "
            f"backbones: {', '.join(ONNX_BACKBONES)}); use the torch runtime for it")
    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {calibration_method!r}; valid: "
                          f"{', '.join(CALIBRATION_METHODS)}")
    if int8 and calibration is None:
        raise ConfigError("int8 quantisation is calibrated on real faces: give calibration "
                          "chips or images (--calibration DIR)")
    service = FaceService.load(ckpt, flip=flip)
    checkpoint_sha = file_sha256(ckpt)
    folder = Path(out) if out is not None else default_export_dir(checkpoint_sha, service.flip)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until written again
    config = service.model.backbone.config
    size = config.input_size

    say(f"exporting {ckpt.name} ({info.backbone}, flip {'on' if service.flip else 'off'})")
    graph = ChipGraph(service.model, service.flip)
    chips = _sample_chips(size)
    model_path = folder / MODEL_FILE
    _export(graph, (torch.from_numpy(chips[:2]),), model_path, ["chips"],
            ["embedding", "gender_logit"],
            {"chips": {0: "n"}, "embedding": {0: "n"}, "gender_logit": {0: "n"}}, opset)
    want = service._run_chips(chips)
    got = _session(model_path).run(None, {"chips": chips})
    _check_close(f"{ckpt.name}", got, [torch.from_numpy(w) for w in want])
    files: dict[str, dict[str, Any]] = {"model": {
        "file": MODEL_FILE, "sha256": file_sha256(model_path), "inputs": ["chips"],
        "outputs": ["embedding", "gender_logit"], "dtype": "float32"}}
    if int8:
        say("quantising to int8")
        calib = _calibration_chips(service, calibration)
        int8_path = folder / MODEL_INT8_FILE
        used = quantize_int8(model_path, int8_path, calib, calibration_method)
        files["model_int8"] = {"file": MODEL_INT8_FILE, "sha256": file_sha256(int8_path),
                               "inputs": ["chips"], "outputs": ["embedding", "gender_logit"],
                               "dtype": "int8", "calibration_chips": used,
                               "calibration_method": calibration_method}
    else:
        (folder / MODEL_INT8_FILE).unlink(missing_ok=True)
    if with_detector:
        say("exporting MTCNN (P-Net, R-Net, O-Net)")
        files.update(_export_detector(folder, opset))
    else:
        for name in DETECTOR_FILES.values():
            (folder / name).unlink(missing_ok=True)
    import onnx
    import onnxruntime

    pipeline = service.pipeline
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": service.model_id,
        "checkpoint": {"file": ckpt.name, "sha256": checkpoint_sha,
                       "description": info.to_json()},
        "model": {
            "backbone": info.backbone,
            "backbone_sha256": info.backbone_sha256,
            "chip_size": size,
            "crop": config.crop,
            "template": config.template,
            "embedding_dim": int(service.model.embedding_dim),
            "flip_average": bool(service.flip),
            "threshold": float(info.threshold),
            "threshold_source": info.threshold_source,
            "gender_classes": list(info.head.gender_classes),
            "gender_trained": bool(info.gender_trained),
            "mean": list(config.mean),
            "scale": float(config.scale),
        },
        "detector": {"name": "MTCNN", **_detector_settings(pipeline)} if with_detector else None,
        "opset": opset,
        "files": files,
        "versions": {"siamface": __version__, "torch": torch.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    say(f"wrote {', '.join(e['file'] for e in files.values())} and {MANIFEST_NAME} to {folder}")
    return OnnxExport(folder, manifest)


def _detector_settings(pipeline: Any) -> dict[str, Any]:
    detector = pipeline.detector
    return {"min_face_size": detector.min_face_size, "factor": detector.factor,
            "thresholds": list(detector.thresholds), "max_side": detector.max_side}


def _calibration_chips(service: Any, calibration: Any) -> np.ndarray:
    """uint8 chips for calibration: given as an array, or cropped from image sources (faces
    only: a source without a face is left out)."""
    size = service.model.backbone.config.input_size
    if isinstance(calibration, np.ndarray):
        chips = calibration
    else:
        crops = service.pipeline.crop_batch(list(calibration))
        kept = [c.chip for c in crops if c.has_face]
        chips = np.stack(kept) if kept else np.zeros((0, size, size, 3), np.uint8)
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (size, size, 3):
        raise ConfigError(f"calibration chips must be uint8 (N, {size}, {size}, 3), got "
                          f"{chips.dtype} {chips.shape}")
    if len(chips) < 16:
        raise ConfigError(f"int8 calibration needs at least 16 face chips, got {len(chips)}")
    return chips

"""Self-describing checkpoints: one safetensors file whose header metadata holds a JSON
description (format version, backbone and its weights' hash, preprocessing, heads, calibrated
threshold, gender classes, training config, metrics). Never a pickle.

Only the tensors that differ from the pretrained backbone are stored: the heads and the backbone
layer groups that training unlocked, so a checkpoint of trained heads is a few kilobytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from siamface._atomic import atomic_path
from siamface.errors import CheckpointError
from siamface.heads import HeadConfig

if TYPE_CHECKING:  # torch is imported where tensors are: reading metadata needs none
    from siamface.model import SiameseMultiTask

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointInfo",
    "embedding_digest",
    "load_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
    "stored_tensor_names",
    "tensor_digest",
    "with_preprocessing",
    "with_threshold",
]

FORMAT_NAME = "siamface-checkpoint"
# 2: preprocessing may say flip_average (the threshold was calibrated on faces averaged with
# their mirror image); a reader of version 1 would ignore it and mis-threshold, so it refuses.
# 3: preprocessing may hold chip_restore and embedding_gates (restored chips, embedded again);
# a reader of version 2 would embed those faces unrestored.
FORMAT_VERSION = 3
META_KEY = "siamface"


def save_file(tensors: dict[str, Any], filename: str, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file``, imported on first use (it imports torch)."""
    from safetensors.torch import save_file as _save_file

    _save_file(tensors, filename, metadata=metadata)


@dataclass(frozen=True)
class CheckpointInfo:
    """The metadata of a checkpoint, parsed and validated."""

    backbone: str
    backbone_sha256: str | None
    stored_groups: list[str]
    head: HeadConfig
    threshold: float
    threshold_source: str
    gender_trained: bool
    preprocessing: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    calibration: dict[str, Any] = field(default_factory=dict)  # how the threshold was chosen
    # thresholds that depend on the pair (siamface.regions.RegionThresholds.to_dict); None:
    # the one global threshold
    regions: dict[str, Any] | None = None

    def region_thresholds(self):
        """The checkpoint's :class:`~siamface.regions.RegionThresholds`, or None."""
        if self.regions is None:
            return None
        from siamface.regions import RegionThresholds

        return RegionThresholds.from_dict(self.regions)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "backbone": {
                "name": self.backbone,
                "weights_sha256": self.backbone_sha256,
                "stored_groups": list(self.stored_groups),
            },
            "head": self.head.to_dict(),
            "threshold": {"value": float(self.threshold), "source": self.threshold_source,
                          **({"calibration": self.calibration} if self.calibration else {}),
                          **({"regions": self.regions} if self.regions is not None else {})},
            "gender": {"classes": list(self.head.gender_classes), "trained": self.gender_trained},
            "preprocessing": self.preprocessing,
            "training": self.training,
            "metrics": self.metrics,
        }


def _group_parameter_names(model: SiameseMultiTask, groups: list[str]) -> set[str]:
    wanted = set(groups)
    known = [name for name, _ in model.backbone.layer_groups()]
    missing = wanted - set(known)
    if missing:
        raise CheckpointError(
            f"backbone {model.backbone.config.name!r} has no layer groups {sorted(missing)}; "
            f"its groups: {known}"
        )
    module_ids: set[int] = set()
    for name, modules in model.backbone.layer_groups():
        if name in wanted:
            for module in modules:
                module_ids.update(id(p) for p in module.parameters())
                module_ids.update(id(b) for b in module.buffers())
    names = set()
    for name, tensor in list(model.backbone.named_parameters()) + list(
        model.backbone.named_buffers()
    ):
        if id(tensor) in module_ids:
            names.add(f"backbone.{name}")
    return names


def stored_tensor_names(model: SiameseMultiTask, groups: list[str]) -> list[str]:
    """State-dict keys of the heads and of the backbone layer groups named in ``groups``: what
    a checkpoint (and a training state) stores of a model."""
    state = model.state_dict()
    heads = [k for k in state if not k.startswith("backbone.")]
    return sorted(heads) + sorted(_group_parameter_names(model, groups))


def save_checkpoint(
    path: str | os.PathLike,
    model: SiameseMultiTask,
    *,
    threshold: float,
    threshold_source: str,
    gender_trained: bool,
    stored_groups: list[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> CheckpointInfo:
    """Write ``model`` atomically to ``path`` (a ``.safetensors`` file)."""
    groups = list(stored_groups or [])
    info = CheckpointInfo(
        backbone=model.backbone.config.name,
        backbone_sha256=model.backbone.config.sha256,
        stored_groups=groups,
        head=model.head_config,
        threshold=float(threshold),
        threshold_source=threshold_source,
        gender_trained=bool(gender_trained),
        preprocessing=dict(preprocessing or {}),
        training=dict(training or {}),
        metrics=dict(metrics or {}),
    )
    state = model.state_dict()
    tensors = {k: state[k].detach().to("cpu").contiguous() for k in stored_tensor_names(model, groups)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(info.to_json())})
    return info


def _parse_info(meta: Any, source: str) -> CheckpointInfo:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{source} is not a siamface checkpoint (format {found!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"{source} has checkpoint format version {version!r}; this siamface reads 1 to "
            f"{FORMAT_VERSION}: upgrade siamface to load it"
        )
    try:
        backbone = meta["backbone"]
        threshold = float(meta["threshold"]["value"])
        trained = meta["gender"]["trained"]
        classes = meta["head"].get("gender_classes", ["male", "female"])
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"threshold {threshold} is not a finite non-negative distance")
        if not isinstance(trained, bool):
            raise TypeError(f"gender.trained must be true or false, got {trained!r}")
        preprocessing = meta.get("preprocessing", {})
        if not isinstance(preprocessing.get("flip_average", False), bool):
            raise TypeError(f"preprocessing.flip_average must be true or false, got "
                            f"{preprocessing['flip_average']!r}")
        restore = preprocessing.get("chip_restore", [])
        if not (isinstance(restore, list) and all(isinstance(n, str) for n in restore)):
            raise TypeError(f"preprocessing.chip_restore must be a list of names, got "
                            f"{restore!r}")
        from siamface.chip_restore import check_chip_restore, gates_from_preprocessing

        check_chip_restore(restore)
        gates_from_preprocessing(preprocessing)
        if not (isinstance(classes, list) and len(classes) == 2
                and all(isinstance(c, str) and c for c in classes)):
            raise ValueError(f"gender_classes must be two names, got {classes!r}")
        return CheckpointInfo(
            backbone=str(backbone["name"]),
            backbone_sha256=backbone.get("weights_sha256"),
            stored_groups=list(backbone.get("stored_groups", [])),
            head=HeadConfig.from_dict(meta["head"]),
            threshold=threshold,
            threshold_source=str(meta["threshold"]["source"]),
            gender_trained=trained,
            preprocessing=dict(preprocessing),
            training=dict(meta.get("training", {})),
            metrics=dict(meta.get("metrics", {})),
            format_version=version,
            calibration=dict(meta["threshold"].get("calibration") or {}),
            regions=_checked_regions(meta["threshold"].get("regions")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{source}: malformed checkpoint metadata ({exc})") from exc


def _checked_regions(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    from siamface.regions import RegionThresholds

    RegionThresholds.from_dict(data)  # raises ValueError when malformed
    return dict(data)


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Read and validate only the metadata of a checkpoint."""
    source = str(path)
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    try:
        with safe_open(source, framework="numpy") as handle:  # "pt" would import torch
            raw = (handle.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{source} is not a readable safetensors file ({exc})") from exc
    if raw is None:
        raise CheckpointError(f"{source} is a safetensors file but not a siamface checkpoint")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: checkpoint metadata is not valid JSON ({exc})") from exc
    return _parse_info(meta, source)


# Metadata that does not change what the network computes: a copy that differs only here
# (``with_threshold``, a retrained history) embeds every face the same.
_NOT_EMBEDDING_METADATA = ("threshold", "training", "metrics")


def tensor_digest(path: str | os.PathLike) -> str:
    """sha256 of a safetensors file's tensors (names, dtypes, shapes and bytes) without its
    metadata: two files with the same digest hold the same weights."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            size = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(size))
            header.pop("__metadata__", None)
            digest.update(json.dumps(header, sort_keys=True).encode())
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, struct.error, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    return digest.hexdigest()


def embedding_digest(path: str | os.PathLike, info: CheckpointInfo) -> str:
    """What fixes a checkpoint's embeddings and gender logits: its tensors
    (:func:`tensor_digest`) and its metadata less the threshold, training record and
    metrics. A :func:`with_threshold` copy shares it with its source."""
    meta = {k: v for k, v in info.to_json().items() if k not in _NOT_EMBEDDING_METADATA}
    blob = json.dumps({"tensors": tensor_digest(path), "meta": meta}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_checkpoint(
    path: str | os.PathLike, *, backbone: str | None = None, backbone_weights: str | None = None
) -> tuple[SiameseMultiTask, CheckpointInfo]:
    """Build the model a checkpoint describes and load its tensors.

    ``backbone``: refuse a checkpoint made for another backbone. The model is returned only when
    every stored tensor matched by name and shape, so nothing is ever half-loaded.
    """
    import torch

    from siamface.backbones import create_backbone
    from siamface.model import SiameseMultiTask

    info = read_checkpoint_info(path)
    if backbone is not None and backbone != info.backbone:
        raise CheckpointError(
            f"{path} was trained for backbone {info.backbone!r}, not {backbone!r}"
        )
    net = create_backbone(info.backbone, pretrained=True, weights=backbone_weights)
    expected_hash = net.config.sha256
    if info.backbone_sha256 and expected_hash and info.backbone_sha256 != expected_hash:
        raise CheckpointError(
            f"{path} was trained on {info.backbone} weights with sha256 {info.backbone_sha256}, "
            f"but the installed weights have sha256 {expected_hash}"
        )
    model = SiameseMultiTask(net, info.head)
    expected = set(stored_tensor_names(model, info.stored_groups))
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = set(handle.keys())
            if stored != expected:
                raise CheckpointError(
                    f"{path} does not match its own description: missing tensors "
                    f"{sorted(expected - stored)[:5]}, unexpected {sorted(stored - expected)[:5]}"
                )
            tensors = {k: handle.get_tensor(k) for k in stored}
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: corrupt tensor data ({exc})") from exc
    state = model.state_dict()
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(state[key].shape):
            raise CheckpointError(
                f"{path}: tensor {key} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(state[key].shape)}"
            )
        if not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values")
    _check_gate_size(path, info, model.embedding_dim)
    model.load_state_dict(tensors, strict=False)
    model.eval()
    return model, info


def _check_gate_size(path: Any, info: CheckpointInfo, embedding_dim: int) -> None:
    from siamface.chip_restore import gates_from_preprocessing

    try:
        gates_from_preprocessing(info.preprocessing, embedding_dim)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def with_threshold(
    source: str | os.PathLike, target: str | os.PathLike, *, threshold: float,
    threshold_source: str, calibration: dict[str, Any], regions: dict[str, Any] | None = None,
) -> CheckpointInfo:
    """Copy the checkpoint ``source`` to ``target`` (atomically) with a new verification
    threshold (and region thresholds, or none: ``regions`` replaces the source's);
    ``calibration`` (what data and method chose it) goes into its metadata. The tensors are
    copied unchanged, and the copy is validated like any checkpoint."""
    if not math.isfinite(threshold) or threshold < 0:
        raise CheckpointError(f"threshold {threshold} is not a finite non-negative distance")
    return _copy_with(source, target, threshold=float(threshold),
                      threshold_source=threshold_source,
                      calibration=json.loads(json.dumps(calibration)), regions=regions)


def with_preprocessing(source: str | os.PathLike, target: str | os.PathLike,
                       preprocessing: dict[str, Any]) -> CheckpointInfo:
    """Copy the checkpoint ``source`` to ``target`` (atomically) with its preprocessing
    replaced (e.g. a fitted fog gate added), tensors unchanged, validated like any checkpoint."""
    return _copy_with(source, target, preprocessing=json.loads(json.dumps(preprocessing)))


def _copy_with(source: str | os.PathLike, target: str | os.PathLike,
               **changes: Any) -> CheckpointInfo:
    info = read_checkpoint_info(source)
    try:
        with safe_open(str(source), framework="pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except SafetensorError as exc:
        raise CheckpointError(f"{source}: corrupt tensor data ({exc})") from exc
    new = CheckpointInfo(**{**info.__dict__, "format_version": FORMAT_VERSION, **changes})
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(new.to_json())})
    return read_checkpoint_info(target)

"""Training configuration: one frozen dataclass per area, loaded from YAML, overridden by
``section.key=value`` strings; unknown keys fail with a "did you mean" hint.

Stages are data: ``stage1`` (heads only), ``stage2`` (top groups unlocked) and an optional
``stage3`` (deeper), each naming how many top layer groups it unlocks, its optimizer, learning
rate, schedule, epochs and patience.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamface.augment import SEVERITIES
from siamface.chip_restore import DEFAULT_CHIP_RESTORE, check_chip_restore
from siamface.data import LAYOUTS
from siamface.errors import ConfigError, UnknownNameError
from siamface.faces import FALLBACK_POLICIES
from siamface.model import HeadConfig

__all__ = [
    "STAGE_KEYS",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "RunConfig",
    "StageConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]

STAGE_KEYS = ("stage1", "stage2", "stage3")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
VERIFICATION_LOSSES = ("contrastive", "triplet", "pair_hinge")
MONITORS = ("val_total", "val_verification", "val_accuracy_cv")
GENDER_LOSSES = ("bce", "focal")


AUGMENTATIONS = ("standard", "distortions")


def _choice(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise UnknownNameError(kind, value, valid)


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they become cached inputs.

    layout: one of :data:`siamface.data.LAYOUTS` (``auto`` guesses). FACECOM trains on
        Task_B/train and validates on Task_B/val; other layouts are split by person.
    val_fraction: person-wise validation share where the layout has no validation split.
    views: cached views per image: ``orig``, ``flip``, plus ``augment_views`` random views
        (training only; validation always uses ``orig``) made by ``augment``: ``standard``
        (``siamface.augment.train_augmentation``) or ``distortions`` (one kind of
        ``siamface.augment.DISTORTIONS`` at one of ``distortion_severities`` per view,
        ``siamface.augment.distortion_views``).
    val_distorted: the share of validation pairs whose second image is a distorted copy (one
        kind at one of ``distortion_severities`` per image), so early stopping and the
        calibrated threshold hold for distorted photos too (the validation gender figures
        then count the copies as well); 0 validates on clean pairs only.
    same_image_pairs: the share of genuine training pairs that pair two different cached
        views of one image (e.g. a clean view with a distorted one), so the loss sees the
        distortion itself as the only difference; 0 pairs different images only.
    chip_restore: the chip restorations (``siamface.chip_restore``) of every chip, the cached
        ones and the augmented and distorted views alike, as the trained model will be used;
        the checkpoint records them.
    fog_gate: fit the trained model's fog gate (``siamface.chip_restore.fit_dehaze_gate``) on
        up to 2,000 validation faces and store it in the checkpoint, so a face its embedding
        shows to be fogged is dehazed and embedded again (needs 50 validation faces).
    exclude_persons_file: persons (one per line) never used, e.g. a benchmark fold's people.
    """

    layout: str = "auto"
    root: str = ""
    val_root: str | None = None
    genders_csv: str | None = None
    val_fraction: float = 0.2
    include_distorted: bool = True
    max_images: int | None = None
    crop: str = "aligned"
    select: str = "central"
    fallback_policy: str = "auto"
    views: tuple[str, ...] = ("orig", "flip")
    augment_views: int = 0
    augment: str = "standard"
    distortion_severities: tuple[int, ...] = (3, 4)
    val_distorted: float = 0.0
    same_image_pairs: float = 0.0
    chip_restore: tuple[str, ...] = DEFAULT_CHIP_RESTORE
    fog_gate: bool = True
    cache_dir: str | None = None
    exclude_persons_file: str | None = None

    def __post_init__(self) -> None:
        _choice("data layout", self.layout, LAYOUTS)
        _choice("fallback policy", self.fallback_policy, FALLBACK_POLICIES)
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        for view in self.views:
            _choice("view", view, ("orig", "flip"))
        if "orig" not in self.views:
            raise ConfigError("data.views must include 'orig' (validation uses it)")
        if self.augment_views < 0:
            raise ConfigError(f"data.augment_views must be >= 0, got {self.augment_views}")
        _choice("augmentation", self.augment, AUGMENTATIONS)
        if not self.distortion_severities or any(
                isinstance(s, bool) or s not in SEVERITIES for s in self.distortion_severities):
            raise ConfigError("data.distortion_severities must be a non-empty list of "
                              f"{', '.join(map(str, SEVERITIES))}, got "
                              f"{list(self.distortion_severities)}")
        if not 0.0 <= self.val_distorted <= 1.0:
            raise ConfigError(f"data.val_distorted must be in [0, 1], got {self.val_distorted}")
        if not 0.0 <= self.same_image_pairs <= 1.0:
            raise ConfigError("data.same_image_pairs must be in [0, 1], got "
                              f"{self.same_image_pairs}")
        if self.same_image_pairs > 0 and len(self.views) + self.augment_views < 2:
            raise ConfigError("data.same_image_pairs needs at least two views per image "
                              "(data.views or data.augment_views)")
        check_chip_restore(self.chip_restore)


@dataclass(frozen=True)
class ModelConfig:
    """Backbone name and head configuration (see :class:`siamface.model.HeadConfig`).

    ``projection`` (a learnable linear map of the embedding) is off by default: trained with
    the reference recipe on LFW (fold 0 of View 2) it lowered verification from 98.3% to 95.0%
    (``benchmarks/bench_lfw_trained.py``), while the raw dlib distance with a calibrated
    threshold keeps the pretrained accuracy.

    ``flip_average``: the model is meant to embed each face as the mean of the face and its
    mirror image; validation (and so the calibrated threshold) does the same, and the
    checkpoint records it so ``siamface verify`` / ``analyze`` do it by default.
    """

    backbone: str = "dlib-resnet"
    backbone_weights: str | None = None
    normalize: bool = False
    projection: bool = False
    gender_dropout: float = 0.2
    flip_average: bool = True

    def head_config(self) -> HeadConfig:
        return HeadConfig(normalize=self.normalize, projection=self.projection,
                          gender_dropout=self.gender_dropout)


@dataclass(frozen=True)
class LossConfig:
    """Verification loss, gender loss (class-weighted ``bce`` or ``focal``; unknown genders
    masked out) and task weights.

    verification: ``contrastive`` on each pair's distance (``margin``); batch-hard
        ``triplet`` (``triplet_margin``); or ``pair_hinge`` over every pair of the batch's
        images with hard-negative mining (``hinge_threshold`` +- ``hinge_margin``), the loss
        form dlib's ResNet was trained with, which keeps its distance scale.
    gender_backprop: let the gender loss reach the unlocked backbone groups (the reference
        did). Off by default: on LFW it cost verification what fine-tuning gained (see
        README, Training).
    """

    verification: str = "pair_hinge"
    margin: float = 1.0
    triplet_margin: float = 0.2
    hinge_threshold: float = 0.6
    hinge_margin: float = 0.04
    gender: str = "bce"
    gender_weights: str = "balanced"
    focal_gamma: float = 2.0
    verification_weight: float = 0.5
    gender_weight: float = 1.0
    gender_backprop: bool = False

    def __post_init__(self) -> None:
        _choice("verification loss", self.verification, VERIFICATION_LOSSES)
        _choice("gender loss", self.gender, GENDER_LOSSES)
        _choice("gender weighting", self.gender_weights, ("balanced", "none"))
        if self.margin <= 0 or self.triplet_margin < 0:
            raise ConfigError("loss margins must be positive")
        if self.hinge_threshold <= 0 or not 0 <= self.hinge_margin < self.hinge_threshold:
            raise ConfigError("loss.hinge_threshold must be > 0 and 0 <= loss.hinge_margin < "
                              "loss.hinge_threshold")
        if self.verification_weight < 0 or self.gender_weight < 0:
            raise ConfigError("loss weights must be >= 0")


@dataclass(frozen=True)
class StageConfig:
    """One training stage: the top ``unlocked_groups`` backbone layer groups train with the
    heads (0 = heads only). ``schedule`` ``cosine`` decays from ``lr`` to
    ``lr * min_lr_fraction`` over ``epochs``. Early stopping after ``patience`` epochs without
    a better ``monitor`` value (``val_total``: the whole validation loss; ``val_verification``:
    its verification part; ``val_accuracy_cv``: cross-validated verification accuracy on the
    validation pairs, higher is better); the best weights are restored at the end of the
    stage."""

    enabled: bool = True
    unlocked_groups: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    min_lr_fraction: float = 0.1
    epochs: int = 15
    patience: int = 3
    train_heads: bool = True
    monitor: str = "val_total"

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("monitor", self.monitor, MONITORS)
        _choice("schedule", self.schedule, SCHEDULES)
        if self.unlocked_groups < 0:
            raise ConfigError(f"unlocked_groups must be >= 0, got {self.unlocked_groups}")
        if self.lr <= 0 or self.epochs < 0 or self.patience < 1:
            raise ConfigError(
                f"stage needs lr > 0, epochs >= 0 and patience >= 1; got lr={self.lr}, "
                f"epochs={self.epochs}, patience={self.patience}"
            )


@dataclass(frozen=True)
class RunConfig:
    """Run-level settings: output folder, seed, batch and epoch sizes, threads.

    pairs_per_epoch: training pairs per epoch (None: as many as training images, at least
        ``batch_size``); half matched, half mismatched.
    val_pairs: validation pairs (half matched) for the loss, early stopping and threshold.
    max_steps_per_epoch: cap on optimizer steps per epoch (quick tests).
    num_threads: torch threads for the whole run (None: torch's default).
    train_threads: torch threads while the stages train on cached inputs (None: keep
        ``num_threads``). The trainable tops are small, and one thread avoids the
        synchronisation stalls that make small ops ten times slower on a busy machine.
    """

    out_dir: str = "runs/train"
    seed: int = 0
    batch_size: int = 64
    pairs_per_epoch: int | None = None
    val_pairs: int = 2000
    max_steps_per_epoch: int | None = None
    num_threads: int | None = None
    train_threads: int | None = 1
    device: str = "cpu"
    progress: bool = True
    feature_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.val_pairs < 2:
            raise ConfigError("run.batch_size and run.val_pairs must be >= 2")


def _default_stage1() -> StageConfig:
    return StageConfig(unlocked_groups=0, optimizer="adam", lr=1e-2, epochs=20, patience=3)


def _default_stage2() -> StageConfig:
    return StageConfig(unlocked_groups=2, optimizer="adamw", lr=1e-5, weight_decay=1e-5,
                       schedule="cosine", min_lr_fraction=0.1, epochs=5, patience=2,
                       monitor="val_verification")


def _default_stage3() -> StageConfig:
    return StageConfig(enabled=False, unlocked_groups=3, optimizer="adamw", lr=5e-7,
                       weight_decay=1e-5, schedule="cosine", min_lr_fraction=0.1, epochs=10,
                       patience=3, monitor="val_verification")


@dataclass(frozen=True)
class TrainConfig:
    """The whole resolved configuration of a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stage1: StageConfig = field(default_factory=_default_stage1)
    stage2: StageConfig = field(default_factory=_default_stage2)
    stage3: StageConfig = field(default_factory=_default_stage3)
    run: RunConfig = field(default_factory=RunConfig)

    def stages(self) -> list[tuple[str, StageConfig]]:
        """The enabled stages in order."""
        return [(k, getattr(self, k)) for k in STAGE_KEYS if getattr(self, k).enabled]

    def __post_init__(self) -> None:
        previous = -1
        for key, stage in self.stages():
            if stage.unlocked_groups < previous:
                raise ConfigError(
                    f"{key}.unlocked_groups={stage.unlocked_groups} is below the previous "
                    f"stage's {previous}; stages may only unlock more groups"
                )
            previous = stage.unlocked_groups


# --- dict conversion --------------------------------------------------------------------------

def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain JSON/YAML-ready dict (tuples become lists)."""
    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return convert(config)


def _unknown_key(where: str, key: str, valid: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(key, valid, n=1)
    extra = f"; did you mean '{where}{hint[0]}'?" if hint else ""
    return ConfigError(
        f"unknown config key '{where}{key}'{extra} (valid keys here: {', '.join(valid)})"
    )


_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
_SINGULARS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _expected(annotation: Any) -> str:
    """What a field of type ``annotation`` accepts, in words (for error messages)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        words = " or ".join(_expected(a) for a in args if a is not type(None))
        return f"{words} or null" if type(None) in args else words
    if origin is tuple:
        return f"a list of {_PLURALS.get(args[0], 'values')}"
    return _SINGULARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Check/convert a YAML value to a field's annotated type; a :class:`ConfigError` naming
    the key, what it accepts and what it got otherwise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError:
                pass
        raise ConfigError(f"{name} must be {_expected(annotation)}, got {_show(value)}")
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(items))
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise ConfigError(f"{name} must be {_expected(annotation)}, got {_show(value)}")


def _build(cls: type, data: Any, where: str, base: Any = None) -> Any:
    if not isinstance(data, dict):
        if where:
            raise ConfigError(f"config section '{where.rstrip('.')}' must be a mapping of "
                              f"key: value pairs, got {type(data).__name__} {_show(data)}")
        raise ConfigError(f"the top level of a config must be a mapping of sections "
                          f"({', '.join(f.name for f in dataclasses.fields(cls))}), got "
                          f"{type(data).__name__} {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(where, str(key), list(fields))
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            current = getattr(base, key) if base is not None else None
            values[key] = _build(annotation, {} if value is None else value, f"{where}{key}.",
                                 current)
        else:
            values[key] = _coerce(value, annotation, f"{where}{key}")
    try:
        if base is not None:
            return dataclasses.replace(base, **values)
        return cls(**values)
    except ConfigError as exc:  # a section's own check: say which section it was
        section = where.rstrip(".")
        if section and not str(exc).startswith(section):
            _prefixed(exc, f"{section}: ")
        raise


def _prefixed(exc: ConfigError, prefix: str) -> ConfigError:
    """Put ``prefix`` before ``exc``'s message in place, so it keeps its type (an
    :class:`~siamface.errors.UnknownNameError` stays one) and can be re-raised."""
    message = exc.args[0] if exc.args else str(exc)
    exc.args = (f"{prefix}{message}", *exc.args[1:])
    return exc


def config_from_dict(data: dict[str, Any] | None, base: TrainConfig | None = None, *,
                     source: str | os.PathLike | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict layered over ``base`` (the defaults).
    ``source`` (the file ``data`` came from) is named in every error."""
    try:
        return _build(TrainConfig, {} if data is None else data, "", base or TrainConfig())
    except ConfigError as exc:
        if source is not None:
            _prefixed(exc, f"config file {source}: ")
        raise


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars/lists)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value "
                              f"(e.g. stage2.lr=1e-6)")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        nested: dict[str, Any] = {}
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = _parse_value(raw)
        config = config_from_dict(nested, config)
    return config


def load_config(path: str | os.PathLike | None = None,
                overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``.

    Every problem with the file (missing, unreadable, not UTF-8, not YAML, not a mapping of
    sections, an unknown key, a value of the wrong type) is a :class:`ConfigError` that names
    the file, the key and what was expected.
    """
    config = TrainConfig()
    if path is not None:
        config = config_from_dict(_read_yaml(Path(path)), config, source=Path(path))
    return apply_overrides(config, list(overrides or []))


def _read_yaml(file: Path) -> Any:
    import yaml

    if file.is_dir():
        raise ConfigError(f"config file {file} is a directory; expected a YAML file")
    if not file.is_file():
        raise ConfigError(f"config file {file} not found; expected a YAML file "
                          f"(see configs/ for examples)")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {file} is not UTF-8 text (byte {exc.start}: "
                          f"{exc.reason}); expected a UTF-8 encoded YAML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"config file {file} is not valid YAML{where} ({problem}); a config "
                          f"must be a YAML mapping of sections (see configs/ for examples)"
                          ) from exc

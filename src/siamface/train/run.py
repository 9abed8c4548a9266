"""A whole training run: data, cached trunk activations, the stages, checkpoints, reports,
resume. ``train(config)`` is what ``siamface train`` and the benchmarks call."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamface._atomic import atomic_write_text
from siamface.checkpoint import save_checkpoint
from siamface.data import FaceDataset, evaluation_pairs
from siamface.data.pairs import PairSampler
from siamface.errors import ConfigError
from siamface.metrics import youden_threshold
from siamface.model import SiameseMultiTask
from siamface.train.config import TrainConfig, config_to_dict
from siamface.train.data import TrainData, prepare_data
from siamface.train.distributed import DistInfo, barrier, init_distributed
from siamface.train.features import GroupRunner, TopModel, advance, trunk_activations
from siamface.train.loop import StageInputs, evaluate, train_epoch
from siamface.train.objective import MultiTaskLoss, gender_class_weights
from siamface.train.report import write_config, write_curves, write_history_csv, write_json
from siamface.train.stages import (
    build_optimizer,
    build_scheduler,
    trainable_parameters,
    unlock,
    unlocked_group_names,
)
from siamface.train.state import load_state, save_state, trained_state

__all__ = ["RUN_FILES", "TrainResult", "build_model", "train", "validation_views"]

log = logging.getLogger(__name__)

RUN_FILES = {
    "config": "config.yaml",
    "state": "train_state.pt",
    "history_csv": "metrics.csv",
    "history_json": "metrics.json",
    "curves": "curves.png",
    "checkpoint": "model.safetensors",
    "skipped": "skipped.txt",
    "summary": "summary.json",
}
_RESUME_IGNORED = {("run", "progress"), ("run", "num_threads")}


@dataclass
class TrainResult:
    """What a run produced: its folder, final checkpoint, per-epoch history, final
    validation metrics, the calibrated threshold and the images it skipped."""

    out_dir: Path
    checkpoint: Path | None
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    threshold: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    model: SiameseMultiTask | None = None


def build_model(config: TrainConfig, backbone: torch.nn.Module | None = None) -> SiameseMultiTask:
    """The backbone (pretrained) and freshly initialised heads, seeded by ``run.seed``."""
    if backbone is None:
        from siamface.backbones import create_backbone

        backbone = create_backbone(config.model.backbone, pretrained=True,
                                   weights=config.model.backbone_weights)
    torch.manual_seed(config.run.seed)
    return SiameseMultiTask(backbone, config.model.head_config())


class _Progress:
    """tqdm bars on rank 0 only (and only when enabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def bar(self, total: int, desc: str, unit: str = "it"):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=not self.enabled,
                    dynamic_ncols=True, leave=False)


@dataclass
class _Run:
    """The state of one training run that its stages share."""

    config: TrainConfig
    info: DistInfo
    progress: _Progress
    out_dir: Path
    model: SiameseMultiTask
    runner: GroupRunner
    data: TrainData
    activations: dict[int, tuple[torch.Tensor, torch.Tensor]]
    val_pairs: list
    loss_fn: MultiTaskLoss
    kept_groups: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)

    def inputs(self, boundary: int) -> StageInputs:
        return _stage_inputs(*self.activations[boundary], self.data, self.config,
                             self.val_pairs)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {section: ({k: v for k, v in values.items() if (section, k) not in _RESUME_IGNORED}
                      if isinstance(values, dict) else values)
            for section, values in config.items()}


def _stage_inputs(acts: torch.Tensor, val_acts: torch.Tensor, data: TrainData,
                  config: TrainConfig, val_pairs: list) -> StageInputs:
    n_val = len(data.val)
    copies = 2 if config.data.val_distorted else 1  # the distorted copies follow the images
    if len(val_acts) != copies * n_val:
        raise ConfigError(
            f"validation activations have {len(val_acts)} rows for {n_val} images"
            f"{' and their distorted copies' if config.data.val_distorted else ''}")
    b = np.array([p.b for p in val_pairs], dtype=np.int64)
    b[distorted_pairs(len(val_pairs), config)] += n_val
    gender, person = data.val.gender_labels(), data.val.person_labels()
    return StageInputs(
        train_x=acts,
        train_gender=torch.from_numpy(data.train.gender_labels()),
        train_person=torch.from_numpy(data.train.person_labels()),
        sampler=PairSampler(data.train.person_labels()),
        pairs_per_epoch=_pairs_per_epoch(config, data.train),
        val_x=val_acts,
        val_gender=torch.from_numpy(np.concatenate([gender] * copies)),
        val_person=torch.from_numpy(np.concatenate([person] * copies)),
        val_a=torch.tensor([p.a for p in val_pairs], dtype=torch.long),
        val_b=torch.from_numpy(b),
        val_same=torch.tensor([float(p.same) for p in val_pairs]),
        same_image_share=config.data.same_image_pairs,
    )


def distorted_pairs(n_pairs: int, config: TrainConfig) -> np.ndarray:
    """Which of ``n_pairs`` validation pairs compare with the second image's distorted copy
    (a share ``data.val_distorted`` of them, fixed by the seed)."""
    k = round(config.data.val_distorted * n_pairs)
    rng = np.random.default_rng(config.run.seed + 1)
    return np.sort(rng.permutation(n_pairs)[:k])


def distorted_validation_chips(config: TrainConfig, chips: np.ndarray) -> np.ndarray:
    """The distorted copy of each validation chip (``data.val_distorted``): one kind of
    ``siamface.augment.DISTORTIONS`` at one of ``data.distortion_severities`` per chip."""
    from siamface.augment import distortion_views

    view = restored_views(distortion_views(config.data.distortion_severities), config)
    seed = config.run.seed * 1_000_003 + 500_009  # apart from the training views' seeds
    return np.stack([view(np.asarray(chip), seed + i * 101) for i, chip in enumerate(chips)])


def _pairs_per_epoch(config: TrainConfig, dataset: FaceDataset) -> int:
    n = config.run.pairs_per_epoch or len(dataset)
    return max(int(n), config.run.batch_size)


def augment_function(config: TrainConfig, size: int):
    """The ``augment(chip, seed)`` that makes the config's ``augment_views`` (None without)."""
    if config.data.augment_views == 0:
        return None
    from siamface.augment import distortion_views, train_augmentation

    if config.data.augment == "distortions":
        return restored_views(distortion_views(config.data.distortion_severities), config)
    aug = train_augmentation(image_size=size, seed=config.run.seed)
    return restored_views(lambda chip, seed: aug(image=np.ascontiguousarray(chip))["image"],
                          config)


def restored_views(view, config: TrainConfig):
    """``view(chip, seed)`` followed by the config's chip restorations, as a chip that looks
    damaged is restored before the trained model sees it at inference."""
    names = tuple(config.data.chip_restore)
    if not names:
        return view
    from siamface.chip_restore import restore_chip

    return lambda chip, seed: restore_chip(view(chip, seed), names)[0]


def validation_views(config: TrainConfig) -> tuple[str, ...]:
    """The views each validation image is embedded with (their mean is its embedding), as the
    trained model will be used: with its mirror image when ``model.flip_average``."""
    return ("orig", "flip") if config.model.flip_average else ("orig",)


def compute_activations(model: SiameseMultiTask, runner: GroupRunner, data: TrainData,
                        config: TrainConfig, boundaries: list[int], progress: _Progress,
                        device: str = "cpu") -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Training (all views) and validation (:func:`validation_views`) activations at each
    boundary, running the frozen trunk once per image and view at the lowest boundary."""
    low = min(boundaries)
    backbone = model.backbone
    size = int(backbone.config.input_size)
    n_views = len(config.data.views) + config.data.augment_views
    val_views = validation_views(config)
    val_rows = len(data.val_chips) * (2 if config.data.val_distorted else 1)
    bar = progress.bar(len(data.train_chips) * n_views + val_rows * len(val_views),
                       "trunk cache", "img")
    try:
        train_low = trunk_activations(
            backbone, runner, data.train_chips, low, views=config.data.views,
            augment=augment_function(config, size), augment_views=config.data.augment_views,
            seed=config.run.seed, batch_size=config.run.feature_batch_size, device=device,
            progress=lambda n: bar.update(n * n_views))
        val_chips = data.val_chips
        if config.data.val_distorted:
            val_chips = np.concatenate([val_chips,
                                        distorted_validation_chips(config, val_chips)])
        val_low = trunk_activations(backbone, runner, val_chips, low, views=val_views,
                                    batch_size=config.run.feature_batch_size, device=device,
                                    progress=lambda n: bar.update(n * len(val_views)))
    finally:
        bar.close()
    out = {}
    for b in sorted(set(boundaries)):
        out[b] = (advance(runner, train_low, low, b), advance(runner, val_low, low, b))
    return out


def _check_resume(out_dir: Path, config_dict: dict[str, Any], state: dict[str, Any]) -> None:
    started, now = _comparable(state.get("config", {})), _comparable(config_dict)
    if started == now:
        return
    missing = [f"{section}.{key}" for section, values in now.items() if isinstance(values, dict)
               for key in values if key not in started.get(section, {})]
    if missing:
        raise ConfigError(
            f"--resume: {out_dir} was started by an older siamface whose configuration has no "
            f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; finish it with that "
            "version or start a new run folder"
        )
    differ = [f"{section}.{key}" for section, values in now.items() if isinstance(values, dict)
              for key in values if values[key] != started[section][key]]
    raise ConfigError(
        f"--resume: the configuration differs from the one {out_dir} was started with "
        f"({', '.join(differ) or 'sections'}; see {out_dir / RUN_FILES['config']}); resume "
        "with the same config and flags, or start a new run folder"
    )


def _check_monitors(config: TrainConfig, val_pairs: list) -> None:
    """Refuse, before any training, a monitor the validation set cannot measure."""
    for key, stage in config.stages():
        if stage.monitor == "val_accuracy_cv" and len(val_pairs) < 50:
            raise ConfigError(
                f"{key}.monitor=val_accuracy_cv needs at least 50 validation pairs, there are "
                f"{len(val_pairs)}; raise run.val_pairs or monitor val_verification"
            )


def train(config: TrainConfig, *, resume: bool = False, data: TrainData | None = None,
          model: SiameseMultiTask | None = None,
          activations: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
          info: DistInfo | None = None) -> TrainResult:
    """Run every enabled stage of ``config`` and write the run folder (rank 0 only).

    ``data``, ``model`` and ``activations`` may be given to reuse work (benchmarks);
    ``resume`` continues from the run folder's training state.
    """
    info = info or init_distributed(config.run.device)
    if config.run.num_threads:
        torch.set_num_threads(config.run.num_threads)
    out_dir = Path(config.run.out_dir)
    progress = _Progress(config.run.progress and info.is_main)
    config_dict = config_to_dict(config)
    state: dict[str, Any] | None = None
    if resume:
        state = load_state(out_dir / RUN_FILES["state"])
        _check_resume(out_dir, config_dict, state)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_config(out_dir / RUN_FILES["config"], config_dict)
    torch.manual_seed(config.run.seed)
    np.random.seed(config.run.seed % (2**32))
    model = model or build_model(config)
    model.to(info.device)
    backbone = model.backbone
    if data is None:
        from siamface.faces import FacePipeline

        pipeline = FacePipeline.for_backbone(backbone.config, crop=config.data.crop,
                                             select=config.data.select,
                                             fallback_policy=config.data.fallback_policy,
                                             chip_restore=config.data.chip_restore)
        bar = progress.bar(0, "face chips", "img")
        try:
            data = prepare_data(config.data, pipeline, seed=config.run.seed,
                                progress=bar.update)
        finally:
            bar.close()
    if info.is_main:
        lines = [f"{path}\t{reason}" for path, reason in data.skipped]
        atomic_write_text(out_dir / RUN_FILES["skipped"],
                          "\n".join(lines) + ("\n" if lines else ""))
    stages = config.stages()
    if not stages:
        raise ConfigError("every stage is disabled; enable stage1 at least")
    runner = GroupRunner(backbone)
    boundaries = [runner.boundary(s.unlocked_groups) for _, s in stages]
    if activations is None:
        activations = compute_activations(model, runner, data, config, boundaries, progress,
                                          info.device)
    val_pairs = evaluation_pairs(data.val, config.run.val_pairs, seed=config.run.seed)
    _check_monitors(config, val_pairs)
    weights = gender_class_weights(config.loss, data.train.gender_labels())
    loss_fn = MultiTaskLoss(config.loss, weights)
    kept_groups = unlocked_group_names(model, max(s.unlocked_groups for _, s in stages))
    run = _Run(config, info, progress, out_dir, model, runner, data, activations, val_pairs,
               loss_fn, kept_groups, list(state["history"]) if state else [])
    if state:
        model.load_state_dict(state["model"], strict=False)
        torch.set_rng_state(state["rng"])
    threads = torch.get_num_threads()
    if config.run.train_threads:
        torch.set_num_threads(config.run.train_threads)
    try:
        top, inputs = _run_stages(run, stages, boundaries, state)
    finally:
        torch.set_num_threads(threads)
    final = evaluate(top, loss_fn, inputs, info.device)
    threshold = youden_threshold(final.distances, final.same)
    metrics = final.metrics(threshold)
    checkpoint = out_dir / RUN_FILES["checkpoint"]
    if info.is_main:
        stored = unlocked_group_names(model, stages[-1][1].unlocked_groups)
        gates = fit_gates(config, model, data.val_chips, info.device)
        _save(checkpoint, model, threshold, metrics, config, stored, len(data.train),
              gender_trained=_gender_trained(config, data.train.gender_labels()), gates=gates)
        summary = {"metrics": metrics, "threshold": threshold, "checkpoint": str(checkpoint),
                   "skipped": len(data.skipped), "train_images": len(data.train),
                   "val_images": len(data.val), "train_persons": len(data.train.persons()),
                   "val_persons": len(data.val.persons()), "gender_class_weights": weights}
        write_json(out_dir / RUN_FILES["summary"], summary)
        write_curves(out_dir / RUN_FILES["curves"], run.history)
    barrier(info)
    model.eval()
    return TrainResult(out_dir, checkpoint, run.history, metrics, float(threshold), data.skipped,
                       model)


def _run_stages(run: _Run, stages: list, boundaries: list[int], state: dict[str, Any] | None
                ) -> tuple[TopModel, StageInputs]:
    """Every enabled stage in order, skipping those a resumed state has finished."""
    for si, (key, stage) in enumerate(stages):
        boundary = boundaries[si]
        unlock(run.model, stage)
        top = TopModel(run.model, run.runner, boundary,
                       gender_backprop=run.config.loss.gender_backprop)
        inputs = run.inputs(boundary)
        if state is not None and (si < state["stage_index"] or (
                si == state["stage_index"] and state["stage_done"])):
            continue
        _run_stage(run, si, key, stage, top, inputs,
                   state if state is not None and si == state["stage_index"] else None)
        state = None
        if run.info.is_main:
            _stage_checkpoint(run, run.out_dir / f"{key}.safetensors", top, inputs,
                              stage.unlocked_groups)
    return top, inputs


def _run_stage(run: _Run, si: int, key: str, stage, top: TopModel, inputs: StageInputs,
               state: dict[str, Any] | None) -> None:
    model, config, info = run.model, run.config, run.info
    params = trainable_parameters(model)
    if not params or stage.epochs == 0:
        log.warning("stage %s has nothing to train (epochs=%d)", key, stage.epochs)
        return
    module: torch.nn.Module = top
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(
            top, device_ids=[info.local_rank] if info.device.startswith("cuda") else None)
    optimizer = build_optimizer(params, stage)
    scheduler = build_scheduler(optimizer, stage)
    start, best_loss, bad, best_epoch = 0, float("inf"), 0, -1
    best_state = trained_state(model, run.kept_groups)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["epoch"]) + 1
        best_loss, bad = float(state["best_loss"]), int(state["bad_epochs"])
        best_epoch, best_state = int(state["best_epoch"]), state["best_state"]
    for epoch in range(start, stage.epochs):
        began = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        steps = -(-inputs.pairs_per_epoch // config.run.batch_size)
        if config.run.max_steps_per_epoch:
            steps = min(steps, config.run.max_steps_per_epoch)
        bar = run.progress.bar(steps, f"{key} epoch {epoch + 1}/{stage.epochs}", "step")
        try:
            losses = train_epoch(
                top, module, run.loss_fn, optimizer, inputs, seed=config.run.seed,
                stage_index=si, epoch=epoch, batch_size=config.run.batch_size,
                max_steps=config.run.max_steps_per_epoch, info=info,
                on_step=_bar_callback(bar))
        finally:
            bar.close()
        scheduler.step()
        evaluation = evaluate(top, run.loss_fn, inputs, info.device)
        row: dict[str, Any] = {"stage": key, "epoch": epoch + 1, "lr": lr}
        row.update({f"train_{k}": v for k, v in losses.items()})
        row.update(evaluation.metrics())
        row["seconds"] = round(time.perf_counter() - began, 3)
        run.history.append(row)
        score = _monitored(row, stage.monitor)
        if score < best_loss - 1e-12:
            best_loss, bad, best_epoch = score, 0, epoch
            best_state = trained_state(model, run.kept_groups)
        else:
            bad += 1
        done = bad >= stage.patience or epoch == stage.epochs - 1
        if done:
            model.load_state_dict(best_state, strict=False)
        if info.is_main:
            log.info("%s epoch %d: train %.4f val %.4f acc %.4f", key, epoch + 1,
                     row["train_total"], row["val_total"], row["val_accuracy"])
            save_state(run.out_dir / RUN_FILES["state"], {
                "config": config_to_dict(config), "stage_index": si, "stage_key": key,
                "epoch": epoch, "stage_done": done,
                "model": trained_state(model, run.kept_groups),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad,
                "best_state": best_state, "history": run.history, "rng": torch.get_rng_state(),
            })
            write_history_csv(run.out_dir / RUN_FILES["history_csv"], run.history)
            write_json(run.out_dir / RUN_FILES["history_json"], run.history)
        if done:
            break


def _monitored(row: dict[str, Any], monitor: str) -> float:
    """The early-stopping score of an epoch's row, lower is better."""
    if monitor not in row:
        raise ConfigError(f"monitor {monitor!r} is not measured here (too few validation "
                          f"pairs?); use val_total or val_verification")
    value = float(row[monitor])
    return -value if monitor.startswith("val_accuracy") else value


def _bar_callback(bar):
    def on_step(_step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    return on_step


def _stage_checkpoint(run: _Run, path: Path, top: TopModel, inputs: StageInputs,
                      unlocked: int) -> None:
    evaluation = evaluate(top, run.loss_fn, inputs, run.info.device)
    threshold = youden_threshold(evaluation.distances, evaluation.same)
    _save(path, run.model, threshold, evaluation.metrics(threshold), run.config,
          unlocked_group_names(run.model, unlocked), None,
          gender_trained=_gender_trained(run.config, inputs.train_gender.numpy()))


def _gender_trained(config: TrainConfig, train_labels: np.ndarray) -> bool:
    """Only a head that saw both classes with a non-zero loss weight may report a gender."""
    labels = np.asarray(train_labels)
    return config.loss.gender_weight > 0 and bool((labels == 0).any() and (labels == 1).any())


GATE_FACES = 2000
GATE_MIN_FACES = 50


def fit_gates(config: TrainConfig, model: SiameseMultiTask, val_chips: np.ndarray,
              device: Any = "cpu") -> list[Any]:
    """The trained model's embedding gates: its fog gate (``data.fog_gate``) fitted on up to
    GATE_FACES validation chips (seeded choice), embedded as the model will embed faces; none
    with fewer than GATE_MIN_FACES chips."""
    if not config.data.fog_gate or len(val_chips) < GATE_MIN_FACES:
        return []
    from siamface.chip_restore import fit_dehaze_gate
    from siamface.model import run_chips

    rng = np.random.default_rng(config.run.seed + 2)
    pick = np.sort(rng.permutation(len(val_chips))[:GATE_FACES])
    model.eval()

    def embed(chips: np.ndarray) -> np.ndarray:
        return run_chips(model, chips, flip=config.model.flip_average, device=device)[0]

    return [fit_dehaze_gate(embed, np.asarray(val_chips)[pick],
                            severities=config.data.distortion_severities,
                            chip_restore=config.data.chip_restore, seed=config.run.seed)]


def _save(path: Path, model: SiameseMultiTask, threshold: float, metrics: dict[str, Any],
          config: TrainConfig, stored_groups: list[str], train_images: int | None, *,
          gender_trained: bool, gates: Sequence[Any] = ()) -> None:
    pre = dict(model.backbone.config.preprocessing())
    pre.update({"crop": config.data.crop, "select": config.data.select,
                "flip_average": config.model.flip_average,
                "chip_restore": list(config.data.chip_restore)})
    if gates:
        pre["embedding_gates"] = [gate.to_dict() for gate in gates]
    training = {"config": config_to_dict(config)}
    if train_images is not None:
        training["train_images"] = train_images
    source = "youden on validation pairs"
    if config.data.val_distorted:
        source += f" ({config.data.val_distorted:.0%} with a distorted second image)"
    save_checkpoint(path, model, threshold=float(threshold),
                    threshold_source=source, gender_trained=gender_trained,
                    stored_groups=stored_groups, preprocessing=pre, training=training,
                    metrics={k: float(v) for k, v in metrics.items()})

"""LFW 10-fold protocol with training.

For each View 2 fold k: train both stages on the images of every LFW person who is not in
fold k's pairs (10% of those people held out for early stopping and the threshold, calibrated
with Youden's J), then score fold k's 600 pairs at that calibrated threshold and the gender of
every labelled image of fold k's people. Reports mean +- std over the folds for verification
accuracy, gender accuracy, balanced accuracy and female F1, beside the untrained baseline in
the same table: dlib embeddings with the protocol threshold (chosen on the other 9 folds'
pairs) and a plain logistic regression on dlib embeddings for gender (fit on the same
training people).

Chips of all LFW images (MTCNN, aligned) and the frozen trunk's activations are computed once
and kept under ``.cache/`` (see ``benchmarks/_lfw_cache.py``), so the folds reuse them.

Usage (repository root):
    PYTHONPATH=src .venv/bin/python benchmarks/bench_lfw_trained.py            # 10 folds
    PYTHONPATH=src .venv/bin/python benchmarks/bench_lfw_trained.py --limit-folds 1
    ... --distort all            # also each distortion kind on the second image of each
                                 # pair (on its chip), with the same trained models
    ... --distort all --severity 4   # ... at severity 4 (default 3)
    ... --set data.augment=distortions --set data.augment_views=2
                                 # train on two distorted views per image besides the clean
                                 # ones (cached once for all folds)
    ... --set stage2.epochs=5    # any training config override
``--allow-partial`` uses whatever chips the cache already holds (pairs with a missing image
are left out and counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lfw_cache import DEFAULT_CACHE, DEFAULT_LFW, lfw_training, restore_tag, stage_activations

TARGETS = {"verification": 0.993, "gender_accuracy": 0.985, "balanced_accuracy": 0.983,
           "female_f1": 0.970}


@torch.no_grad()
def _heads(model, acts: torch.Tensor, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and gender logits of ``model`` (its own trained groups above ``start``) for
    activations (N, V, ...), each the mean over the V views, as the trainer validates."""
    from siamface.train.features import GroupRunner, TopModel
    from siamface.train.loop import embed_cached

    top = TopModel(model, GroupRunner(model.backbone, check=False), start)
    emb, logit = embed_cached(top, acts)
    return emb.numpy(), logit.numpy()


@torch.no_grad()
def _distorted_features(model, runner, chips, idx: np.ndarray, kind: str, start: int,
                        severity: int, restore: tuple[str, ...]) -> torch.Tensor:
    """Trunk activations (N, 2, ...) of the distorted chips and their mirror images, each
    distorted chip restored by ``restore`` as the face pipeline restores chips."""
    from siamface.augment import distort
    from siamface.chip_restore import restore_chip

    out = []
    for i in range(0, len(idx), 64):
        batch = np.stack([
            restore_chip(distort(np.asarray(chips[j]), kind, seed=int(j), severity=severity),
                         restore)[0]
            for j in idx[i:i + 64]])
        views = [runner.run(model.backbone.preprocess(v), 0, start)
                 for v in (batch, np.ascontiguousarray(batch[:, :, ::-1]))]
        out.append(torch.stack(views, dim=1))
    return torch.cat(out)


def _second_chips(chips, idx: np.ndarray, kind: str | None, severity: int,
                  restore: tuple[str, ...]) -> np.ndarray:
    """The second images' chips as ``_distorted_features`` embeds them (clean for None)."""
    from siamface.augment import distort
    from siamface.chip_restore import restore_chip

    if kind is None:
        return np.stack([np.asarray(chips[j]) for j in idx])
    return np.stack([restore_chip(distort(np.asarray(chips[j]), kind, seed=int(j),
                                          severity=severity), restore)[0] for j in idx])


def _gated(model, config, gates, eb: np.ndarray, chips, idx: np.ndarray, kind: str | None,
           severity: int) -> tuple[np.ndarray, float]:
    """Second-image embeddings after the model's embedding gates (the flagged faces' chips
    restored and embedded again, as the service does) and the share flagged."""
    from siamface.chip_restore import apply_gates
    from siamface.model import run_chips

    if not gates:
        return eb, 0.0
    flagged = np.zeros(len(eb), bool)
    for gate in gates:
        flagged |= gate.scores(eb) > gate.cutoff
    if not flagged.any():
        return eb, 0.0
    sub = np.flatnonzero(flagged)
    chips_f = _second_chips(chips, idx[sub], kind, severity, config.data.chip_restore)

    def embed(c):
        return run_chips(model, c, flip=config.model.flip_average)

    logits = np.zeros(len(sub), np.float32)
    _, e2, _, _ = apply_gates(embed, chips_f, eb[sub], logits, gates)
    out = eb.copy()
    out[sub] = e2
    return out, float(flagged.mean())


def _gender(labels: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    from siamface.metrics import gender_report

    r = gender_report(labels, prob)
    return {"gender_accuracy": r["accuracy"], "balanced_accuracy": r["balanced_accuracy"],
            "female_f1": r["per_class"]["female"]["f1"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--config", default=None, help="training config (default: built-in)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    parser.add_argument("--limit-folds", type=int, default=10)
    parser.add_argument("--folds", default=None,
                        help="comma-separated folds to run (e.g. 5,6,7), instead of the first "
                             "--limit-folds")
    parser.add_argument("--distort", default=None, metavar="KINDS",
                        help="also score each fold with the second image of each pair "
                             "distorted: comma-separated siamface.augment kinds, or 'all'")
    parser.add_argument("--severity", type=int, default=3, choices=(1, 2, 3, 4, 5),
                        help="severity of --distort (siamface.augment.SEVERITIES)")
    parser.add_argument("--allow-partial", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lfw-trained"))
    parser.add_argument("--val-fraction", type=float, default=0.1)
    args = parser.parse_args(argv)

    from sklearn.linear_model import LogisticRegression

    from siamface.checkpoint import load_checkpoint
    from siamface.data import FaceDataset, fold_persons, index_lfw_pairs, person_split, read_view2
    from siamface.metrics import kfold_verification, verification_accuracy
    from siamface.train import apply_overrides, load_config, train
    from siamface.train.data import TrainData
    from siamface.train.features import advance
    from siamface.train.run import build_model, fit_gates, validation_views

    config = apply_overrides(load_config(args.config), ["data.layout=lfw", "run.progress=false",
                                                        *args.overrides])
    started = time.time()
    lfw = lfw_training(config, args.lfw, args.cache, allow_partial=args.allow_partial)
    dataset, chips, model0, runner = lfw.dataset, lfw.chips, lfw.model, lfw.runner
    boundaries, low, store, avail = lfw.boundaries, lfw.low, lfw.store, lfw.available
    stages = config.stages()
    print(f"LFW: {int(avail.sum())}/{len(dataset)} images with chips and trunk activations "
          f"({time.time() - started:.0f} s)", flush=True)
    n_groups = len(runner)
    n_views = len(validation_views(config))  # 2: each face averaged with its mirror image
    all_idx = np.flatnonzero(avail)
    emb0 = np.zeros((len(dataset), model0.embedding_dim), np.float32)
    feats = advance(runner, torch.from_numpy(np.asarray(store[all_idx][:, :1])), low, n_groups)
    emb0[all_idx] = feats[:, 0].numpy()

    def views(idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(store[idx][:, :n_views]))

    pairs = read_view2(args.lfw)
    ipairs = index_lfw_pairs(dataset, pairs)
    usable = np.array([avail[p.a] and avail[p.b] for p in ipairs])
    pa = np.array([p.a for p in ipairs])
    pb = np.array([p.b for p in ipairs])
    same = np.array([p.same for p in ipairs])
    fold_of = np.array([p.fold for p in pairs])
    labels = dataset.gender_labels()

    kinds: list[str] = []
    if args.distort:
        from siamface.augment import DISTORTIONS

        kinds = list(DISTORTIONS) if args.distort == "all" else args.distort.split(",")
        unknown = sorted(set(kinds) - set(DISTORTIONS))
        if unknown:
            parser.error(f"unknown distortion {unknown}; kinds: {', '.join(DISTORTIONS)}")
    # trunk activations of each pair's distorted second image (and its mirror), per kind
    need = np.unique(pb[usable])
    second: dict[str, dict[int, np.ndarray]] = {}
    for kind in kinds:
        t = time.time()
        file = (Path(lfw.store.filename).parent
                / f"second-{kind}-s{args.severity}{restore_tag(config)}.npy")
        feats = np.load(file, mmap_mode="r") if file.is_file() else None
        if feats is None or len(feats) != len(need):  # reuse: same chips, kind and severity
            feats = _distorted_features(model0, runner, chips, need, kind, low,
                                        args.severity, config.data.chip_restore).numpy()
            np.save(file.with_name(f".{file.name}"), feats)
            file.with_name(f".{file.name}").replace(file)
        second[kind] = dict(zip(need.tolist(), feats))
        print(f"distorted second images: {kind} ({time.time() - t:.0f} s)", flush=True)

    def second_acts(b_idx: np.ndarray, kind: str | None = None) -> torch.Tensor:
        if kind is None:
            return views(b_idx)
        return torch.from_numpy(np.stack([second[kind][int(i)] for i in b_idx]))[:, :n_views]

    # untrained baselines over all folds (protocol threshold from the other folds), per
    # condition (None: clean)
    base = {}
    for kind in [None, *kinds]:
        d0 = np.linalg.norm(emb0[pa] - emb0[pb], axis=1)
        if kind is not None:
            with torch.no_grad():
                sel = np.flatnonzero(usable)
                eb = runner.run(second_acts(pb[sel], kind)[:, 0], low).numpy()
                d0[sel] = np.linalg.norm(emb0[pa[sel]] - eb, axis=1)
        base[kind] = kfold_verification(d0[usable], same[usable], fold_of[usable])
    base_k = base[None]

    rows = []
    folds = ([int(f) for f in args.folds.split(",")] if args.folds
             else list(range(min(args.limit_folds, 10))))
    for k in folds:
        t0 = time.time()
        banned = fold_persons(pairs, k)
        train_idx = np.array([i for i in all_idx if dataset[i].person_id not in banned])
        train_all = FaceDataset([dataset[int(i)] for i in train_idx], name=f"LFW without fold {k}")
        tr, va = person_split(train_all, args.val_fraction, seed=config.run.seed)
        pos = {r.path: i for r, i in zip(train_all, train_idx)}
        tr_idx = np.array([pos[r.path] for r in tr])
        va_idx = np.array([pos[r.path] for r in va])
        acts = stage_activations(runner, store, tr_idx, va_idx, low, boundaries, n_views,
                                 lfw.extra, config, chips)
        empty = np.zeros((0, 150, 150, 3), np.uint8)
        data = TrainData(tr, va, empty, empty)
        cfg = apply_overrides(config, [f"run.out_dir={args.out / f'fold{k}'}"])
        result = train(cfg, data=data, model=build_model(cfg), activations=acts)
        model = result.model
        sel = np.flatnonzero(usable & (fold_of == k))
        extra: dict[str, float] = {}
        # the fog gate, fitted as the trainer fits it (on this fold's validation faces)
        gates = fit_gates(cfg, model, np.stack([np.asarray(chips[i]) for i in va_idx]))
        ea, _ = _heads(model, views(pa[sel]), low)
        eb, _ = _heads(model, second_acts(pb[sel]), low)
        eb, extra["gate_fired_clean"] = _gated(model, cfg, gates, eb, chips, pb[sel], None,
                                               args.severity)
        d = np.linalg.norm(ea - eb, axis=1)
        acc = verification_accuracy(d, same[sel], result.threshold)
        # gender of every labelled image of the fold's people
        g_idx = np.array([i for i in all_idx if dataset[i].person_id in banned and labels[i] >= 0])
        _, logit = _heads(model, views(g_idx), low)
        trained_gender = _gender(labels[g_idx], 1 / (1 + np.exp(-logit)))
        # the heads-only model of the same run (stage 1 checkpoint)
        heads, info1 = load_checkpoint(args.out / f"fold{k}" / f"{stages[0][0]}.safetensors")
        ha, _ = _heads(heads, views(pa[sel]), low)
        hb, _ = _heads(heads, second_acts(pb[sel]), low)
        acc1 = verification_accuracy(np.linalg.norm(ha - hb, axis=1), same[sel], info1.threshold)
        _, logit1 = _heads(heads, views(g_idx), low)
        stage1_gender = _gender(labels[g_idx], 1 / (1 + np.exp(-logit1)))
        # untrained baseline for this fold: protocol accuracy, LR gender on dlib embeddings
        lr_idx = np.array([i for i in train_idx if labels[i] >= 0])
        lr = LogisticRegression(max_iter=2000).fit(emb0[lr_idx], labels[lr_idx])
        base_gender = _gender(labels[g_idx], lr.predict_proba(emb0[g_idx])[:, 1])
        for kind in kinds:  # the same trained model, second image distorted
            eb, _ = _heads(model, second_acts(pb[sel], kind), low)
            eb, extra[f"gate_fired_{kind}"] = _gated(model, cfg, gates, eb, chips, pb[sel],
                                                     kind, args.severity)
            extra[f"verification_{kind}"] = verification_accuracy(
                np.linalg.norm(ea - eb, axis=1), same[sel], result.threshold)
            extra[f"baseline_verification_{kind}"] = float(base[kind]["accuracies"][k])
        row = {"fold": k, "pairs": int(sel.size), "gender_images": int(g_idx.size),
               "train_images": len(tr), "val_images": len(va),
               "threshold": result.threshold, "verification": acc,
               "baseline_verification": float(base_k["accuracies"][k]),
               **trained_gender, **{f"baseline_{n}": v for n, v in base_gender.items()},
               "stage1_verification": acc1, "stage1_threshold": info1.threshold,
               **{f"stage1_{n}": v for n, v in stage1_gender.items()},
               "epochs": {s: sum(r["stage"] == s for r in result.history) for s, _ in stages},
               **extra, "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=2, default=float))

    def ms(key: str) -> str:
        v = np.array([r[key] for r in rows], dtype=np.float64)
        scale = 1 if key == "female_f1" or key.endswith("female_f1") else 100
        unit = "" if scale == 1 else "%"
        return f"{v.mean() * scale:.2f}{unit} +- {v.std() * scale:.2f}" if scale != 1 else \
            f"{v.mean():.3f} +- {v.std():.3f}"

    title = f"LFW View 2, {len(rows)} fold(s)"
    table = [
        f"## {title}", "",
             "| model | verification | gender accuracy | balanced accuracy | female F1 |",
             "| --- | --- | --- | --- | --- |",
        (f"| untrained dlib (protocol threshold) + logistic regression gender | "
         f"{ms('baseline_verification')} | {ms('baseline_gender_accuracy')} | "
         f"{ms('baseline_balanced_accuracy')} | {ms('baseline_female_f1')} |"),
        (f"| trained heads only (stage 1, calibrated threshold) | "
         f"{ms('stage1_verification')} | {ms('stage1_gender_accuracy')} | "
         f"{ms('stage1_balanced_accuracy')} | {ms('stage1_female_f1')} |"),
        (f"| trained (two stages, calibrated threshold) | {ms('verification')} | "
         f"{ms('gender_accuracy')} | {ms('balanced_accuracy')} | {ms('female_f1')} |"),
        (f"| target | {TARGETS['verification']:.1%} | {TARGETS['gender_accuracy']:.1%} | "
         f"{TARGETS['balanced_accuracy']:.1%} | {TARGETS['female_f1']:.3f} |"), "",
        (f"untrained dlib over all 10 folds: {base_k['mean']:.2%} +- {base_k['std']:.2%}; "
         f"pairs used {int(usable.sum())}/6000; images {int(avail.sum())}/{len(dataset)}; "
         f"total {time.time() - started:.0f} s"),
    ]
    if kinds:
        def fired(kind: str) -> str:
            return f"{np.mean([r[f'gate_fired_{kind}'] for r in rows]):.1%}"

        per_kind = np.array([[r[f"verification_{kind}"] for kind in kinds] for r in rows])
        table += ["", f"## {title}, second image of each pair distorted", "",
                  ("| distortion | untrained dlib (protocol threshold) | trained (two stages, "
                   "calibrated threshold) | trained model's fog gate fired |"),
                  "| --- | --- | --- | --- |",
                  (f"| none | {ms('baseline_verification')} | {ms('verification')} | "
                  f"{fired('clean')} |")]
        table += [f"| {kind} | {ms(f'baseline_verification_{kind}')} | "
                  f"{ms(f'verification_{kind}')} | {fired(kind)} |" for kind in kinds]
        table += ["", (f"trained, mean of the {len(kinds)} kinds {per_kind.mean():.2%}, worst "
                  f"kind {kinds[int(per_kind.mean(axis=0).argmin())]} "
                  f"{per_kind.mean(axis=0).min():.2%}")]
    print("\n".join(table))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "table": table},
                                                      indent=2, default=float))
    (args.out / "results.md").write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

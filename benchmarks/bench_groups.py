"""Per-group figures of a model on diverse public faces (the fairness issue's tables).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_groups.py \
        --fairface DIR --utkface DIR --asian DIR [--lfw DIR] [--model CKPT]

Each set is read from its flag, else ``$SIAMFACE_DATA/<name>``; a set that is absent is skipped
with a line saying so. Every image is embedded once through the evaluation caches (one face per
image, the service's own fallback policy; faces not found count against coverage, not accuracy).

- FairFace val (never trained or calibrated on): per ethnicity x gender group, gender accuracy
  and the false-match rate of *all* pairs of different images inside the group at the model's
  operating point (its region thresholds where it has them, else its one threshold), with the
  raw-distance threshold that would give that group 1% FMR; the mean, the worst group and the
  worst / best FMR ratio (best floored at 0.5%). Then gender accuracy by age band (children,
  0-2 and 3-9, are their own bands).
- UTKFace, its held-out fifth (file-name hash; the training script never reads it; ``--utkface-all``
  for every file): gender accuracy by race and by age band.
- Asian celebrities, the held-out half of its people (person hash): genuine pairs = every two
  photos of one person, impostors = every two photos of different people; EER, and FNMR and FMR
  at the operating point.
- LFW View 2: FNMR and FMR at the operating point over its 6,000 pairs.

``--json FILE`` writes every figure as JSON as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _public_sets as sets

REPO = Path(__file__).resolve().parents[1]
FMR_FLOOR = 0.005
GROUP_FMR = 0.01


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--fairface", type=Path, default=None)
    p.add_argument("--utkface", type=Path, default=None)
    p.add_argument("--utkface-all", action="store_true",
                   help="every UTKFace file, not only the held-out fifth")
    p.add_argument("--asian", type=Path, default=None)
    p.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", type=Path, default=sets.DEFAULT_CACHE)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def all_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


def distances_and_thresholds(service, emb: np.ndarray, i: np.ndarray, j: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's distance and its threshold at the model's operating point."""
    return (np.linalg.norm(emb[i] - emb[j], axis=1).astype(np.float64),
            service.pair_thresholds(emb[i], emb[j]))


def gender_hits(embedded, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(has a face and a gender label, predicted correctly) per record."""
    labels = np.array([r.gender_label for r in dataset])
    usable = embedded.has_face & (labels >= 0)
    predicted = np.where(embedded.gender_prob >= 0.5, 1, 0)
    return usable, usable & (predicted == labels)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def gender_table(title: str, dataset, embedded, column: str, order) -> dict:
    usable, hit = gender_hits(embedded, dataset)
    values = np.array([r.group(column) or "" for r in dataset])
    genders = np.array([r.gender or "" for r in dataset])
    rows, out = [], {}
    for value in order:
        for gender in ("female", "male"):
            m = (values == value) & (genders == gender)
            n, found = int(m.sum()), int((m & usable).sum())
            if n == 0:
                continue
            acc = hit[m].sum() / found if found else float("nan")
            out[f"{value}/{gender}"] = {"images": n, "faces": found, "gender_accuracy": acc}
            rows.append([f"{value} {gender}", str(n), pct(found / n), pct(acc)])
    accs = [v["gender_accuracy"] for v in out.values() if np.isfinite(v["gender_accuracy"])]
    overall = hit.sum() / max(usable.sum(), 1)
    rows.append(["all", str(len(dataset)), pct(usable.mean()), pct(overall)])
    rows.append(["mean of groups (worst)", "", "",
                 f"{pct(np.mean(accs))} ({pct(min(accs))})" if accs else "-"])
    print_table(title, [column.replace("_", " ") + " x gender", "images", "faces found",
                        "gender accuracy"], rows)
    return {"groups": out, "overall": float(overall),
            "mean": float(np.mean(accs)) if accs else None,
            "worst": float(min(accs)) if accs else None}


def fairface_report(service, root: Path, args) -> dict:
    from siamface.data.demographics import AGE_BANDS, CHILD_BANDS, FAIRFACE_ETHNICITIES

    dataset = sets.load("fairface", root, split="val")
    embedded = sets.embed(service, dataset, cache=args.cache, workers=args.workers)
    usable, hit = gender_hits(embedded, dataset)
    ethnicity = np.array([r.group("ethnicity") or "" for r in dataset])
    gender = np.array([r.gender or "" for r in dataset])
    rows, groups = [], {}
    for eth in FAIRFACE_ETHNICITIES:
        for g in ("female", "male"):
            members = np.flatnonzero((ethnicity == eth) & (gender == g))
            faces = members[embedded.has_face[members]]
            i, j = all_pairs(len(faces))
            emb = embedded.embeddings[faces]
            d, t = distances_and_thresholds(service, emb, i, j)
            fmr = float(np.mean(d <= t)) if len(d) else float("nan")
            t1 = float(np.quantile(d, GROUP_FMR)) if len(d) else float("nan")
            acc = float(hit[members].sum() / max(usable[members].sum(), 1))
            name = f"{eth.replace('_Hispanic', '')} {'women' if g == 'female' else 'men'}"
            groups[name] = {"images": len(members), "faces": len(faces),
                            "gender_accuracy": acc, "impostor_pairs": len(d), "fmr": fmr,
                            "threshold_at_1pct_fmr": t1,
                            "mean_operating_threshold": float(t.mean()) if len(t) else None}
            rows.append([name, str(len(members)), pct(len(faces) / max(len(members), 1)),
                         pct(acc), f"{len(d):,}", pct(fmr, 2), f"{t1:.3f}"])
    accs = [v["gender_accuracy"] for v in groups.values()]
    fmrs = [v["fmr"] for v in groups.values()]
    ratio = max(fmrs) / max(min(fmrs), FMR_FLOOR)
    rows.append(["mean (worst)", "", "", f"{pct(np.mean(accs))} ({pct(min(accs))})", "",
                 f"{pct(np.mean(fmrs), 2)} ({pct(max(fmrs), 2)})", ""])
    print_table("FairFace val: gender and same-group impostors at the operating point",
                ["group", "images", "faces found", "gender accuracy", "impostor pairs",
                 "false-match rate", "threshold for 1% FMR"], rows)
    print(f"\nworst / best FMR ratio (best floored at {pct(FMR_FLOOR)}): {ratio:.2f}; gender "
          f"accuracy over all faces: {pct(hit.sum() / max(usable.sum(), 1))}")
    bands = gender_table("FairFace val: gender by age band (children: 0-2 and 3-9)", dataset,
                         embedded, "age_band", AGE_BANDS)
    print(f"(children's bands {', '.join(CHILD_BANDS)} are included in the FairFace figures above)")
    return {"groups": groups, "gender_mean": float(np.mean(accs)), "gender_worst": min(accs),
            "fmr_mean": float(np.mean(fmrs)), "fmr_worst": max(fmrs), "fmr_best": min(fmrs),
            "fmr_ratio": ratio, "age_bands": bands}


def utkface_report(service, root: Path, args) -> dict:
    from siamface.data.demographics import AGE_BANDS, UTKFACE_ETHNICITIES

    dataset = sets.load("utkface", root)
    if not args.utkface_all:
        dataset = sets.held_out(dataset, sets.UTKFACE_HELD_OUT, by="file")[1]
    embedded = sets.embed(service, dataset, cache=args.cache, workers=args.workers)
    return {"race": gender_table(f"UTKFace ({dataset.name}): gender by race", dataset, embedded,
                                 "ethnicity", UTKFACE_ETHNICITIES),
            "age_band": gender_table(f"UTKFace ({dataset.name}): gender by age band", dataset,
                                     embedded, "age_band", AGE_BANDS)}


def verification_rows(service, emb: np.ndarray, i: np.ndarray, j: np.ndarray,
                      same: np.ndarray, present: np.ndarray | None = None) -> dict:
    """FNMR and FMR at the operating point and the EER; a pair whose ``present`` is False has
    no verdict (a rejection) and is left out of the EER."""
    from siamface.metrics import eer

    d, t = distances_and_thresholds(service, emb, i, j)
    present = np.ones(len(d), bool) if present is None else present
    accept = (d <= t) & present
    out = {"genuine_pairs": int(same.sum()), "impostor_pairs": int((~same).sum()),
           "fnmr": float(np.mean(~accept[same])), "fmr": float(np.mean(accept[~same])),
           "pairs_without_face": int((~present).sum())}
    if service.regions is not None:
        d = d * (service.threshold / t)  # the pair's own threshold maps to the global one
    out["eer"] = eer(d[present], same[present])["eer"]
    return out


def asian_report(service, root: Path, args) -> dict:
    dataset = sets.held_out(sets.load("asian", root), sets.ASIAN_HELD_OUT, by="person")[1]
    embedded = sets.embed(service, dataset, cache=args.cache, workers=args.workers)
    faces = np.flatnonzero(embedded.has_face)
    people = np.array([dataset[k].person_id for k in faces])
    i, j = all_pairs(len(faces))
    r = verification_rows(service, embedded.embeddings[faces], i, j, people[i] == people[j])
    r.update({"people": len(set(people)), "images": len(dataset), "faces": len(faces)})
    print(f"\nAsian celebrities, held-out half: {r['people']} people, {r['faces']} of "
          f"{r['images']} images with a face, {r['genuine_pairs']:,} genuine and "
          f"{r['impostor_pairs']:,} impostor pairs: EER {pct(r['eer'], 2)}; at the operating "
          f"point FNMR {pct(r['fnmr'], 2)}, FMR {pct(r['fmr'], 2)}")
    return r


def lfw_report(service, root: Path, args) -> dict:
    from siamface.data.lfw import read_lfw_genders, read_view2
    from siamface.evaluation.embeddings import embed_paths

    pairs = read_view2(root)
    paths = sorted({str(p) for pair in pairs for p in pair.paths(root)})
    index = {p: k for k, p in enumerate(paths)}
    embedded = embed_paths(service, paths, cache_dir=args.cache, workers=args.workers,
                           progress=sys.stderr.isatty(), desc="LFW View 2")
    i = np.array([index[str(pair.paths(root)[0])] for pair in pairs])
    j = np.array([index[str(pair.paths(root)[1])] for pair in pairs])
    same = np.array([pair.same for pair in pairs])
    present = embedded.has_face[i] & embedded.has_face[j]
    r = verification_rows(service, np.nan_to_num(embedded.embeddings), i, j, same, present)
    genders = read_lfw_genders(root)
    labels = np.array([{"male": 0, "female": 1}.get(genders.get(Path(p).stem), -1)
                       for p in paths])
    usable = embedded.has_face & (labels >= 0)
    hit = (embedded.gender_prob >= 0.5).astype(int) == labels
    for g, k in (("male", 0), ("female", 1)):
        m = usable & (labels == k)
        r[f"gender_accuracy_{g}"] = float(hit[m].mean())
    print(f"\nLFW View 2: {len(pairs):,} pairs ({r['pairs_without_face']} without a face): at "
          f"the operating point FNMR {pct(r['fnmr'], 2)}, FMR {pct(r['fmr'], 2)}; "
          f"EER {pct(r['eer'], 2)}; gender accuracy over its {len(paths):,} images: men "
          f"{pct(r['gender_accuracy_male'])}, women {pct(r['gender_accuracy_female'])}")
    return r


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import siamface

    service = siamface.load(args.model, lazy=True)
    print(f"model: {args.model or 'shipped default'} ({service.describe()})")
    print(f"operating point: {service.threshold_source_text()}")
    started, results = time.time(), {}
    reports = [("fairface", fairface_report), ("utkface", utkface_report),
               ("asian", asian_report)]
    for name, report in reports:
        root = sets.resolve(name, getattr(args, name))
        if root is None or not root.exists():
            print(f"\n{name}: skipped (give --{name} DIR or set SIAMFACE_DATA)")
            continue
        results[name] = report(service, root, args)
    if args.lfw.exists():
        results["lfw"] = lfw_report(service, args.lfw, args)
    else:
        print(f"\nLFW: skipped ({args.lfw} not found; --lfw DIR)")
    print(f"\n{time.time() - started:.0f} s")
    if args.json:
        from siamface._atomic import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(results, indent=2, default=float).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

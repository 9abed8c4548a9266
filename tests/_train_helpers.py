"""Tiny FACECOM-shaped data sets built from the local LFW copy, shared by the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

# persons with a few LFW images each (checked to exist in the fixture), by gender
MALES = ["Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody", "Ahmed_Chalabi", "Al_Sharpton"]
FEMALES = ["Ann_Veneman", "Amelia_Vega", "Angela_Bassett", "Anna_Kournikova",
           "Amelie_Mauresmo"]
PER_PERSON = 3


def _people(lfw: Path, names: list[str], gender: str) -> list[tuple[str, str]]:
    out = []
    for name in names:
        if len(list((lfw / "images" / name).glob("*.jpg"))) >= PER_PERSON:
            out.append((name, gender))
    return out


def build_facecom(lfw: Path, root: Path, *, distort: bool = True, n_train: int = 3,
                  n_val: int = 2) -> Path:
    """``root/Task_A/{train,val}/{male,female}`` and ``root/Task_B/{train,val}/<Name>`` (with
    a ``distortion/`` folder written by ``siamface distort``) from LFW images."""
    from siamface.cli.main import main

    genders = {}
    for line in (lfw / "female_names.txt").read_text().split():
        genders[Path(line).stem.rsplit("_", 1)[0]] = "female"
    males = [n for n in MALES if genders.get(n) != "female"]
    females = [n for n in FEMALES if genders.get(n) == "female"]
    people = {"train": _people(lfw, males[:n_train], "male")
              + _people(lfw, females[:n_train], "female"),
              "val": _people(lfw, males[n_train:n_train + n_val], "male")
              + _people(lfw, females[n_train:n_train + n_val], "female")}
    for split, persons in people.items():
        originals = root / "originals" / split
        for name, gender in persons:
            for i in range(1, PER_PERSON + 1):
                src = lfw / "images" / name / f"{name}_{i:04d}.jpg"
                for dst in (root / "Task_A" / split / gender / src.name,
                            originals / name / src.name):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst)
        task_b = root / "Task_B" / split
        if distort:
            rc = main(["distort", str(originals), str(task_b), "--layout", "facecom",
                       "--kinds", "fog", "--no-progress"])
            assert rc == 0
        else:
            shutil.copytree(originals, task_b)
    shutil.rmtree(root / "originals")
    return root

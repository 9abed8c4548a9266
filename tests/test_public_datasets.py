"""Readers of the public group-labelled and identity sets (UTKFace, FairFace, CelebA
identities, Asian celebrities) on tiny synthetic folders laid out as the real ones are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from siamface.data import (
    AGE_BANDS,
    FaceRecord,
    age_band,
    detect_layout,
    load_asian_celebrities,
    load_celeba_identities,
    load_fairface,
    load_utkface,
    open_dataset,
)
from siamface.errors import DatasetError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), 128, np.uint8))
    return path


def _fairface(root: Path, rows: list[str], split: str = "val") -> Path:
    for row in rows:
        name = row.split(",")[0]
        if name and not name.startswith("#"):
            _image(root / "fair_face" / name)
    csv = root / f"fairface_label_{split}.csv"
    csv.write_text("file,age,gender,race,service_test\n" + "\n".join(rows) + "\n")
    return csv


def test_age_bands_follow_fairface():
    assert [age_band(a) for a in (0, 2, 3, 9, 10, 19, 20, 45, 69, 70, 116)] == [
        "0-2", "0-2", "3-9", "3-9", "10-19", "10-19", "20-29", "40-49", "60-69", "70+", "70+"]
    assert {age_band(a) for a in range(120)} == set(AGE_BANDS)


def test_record_groups_are_hashable_and_sorted():
    record = FaceRecord("a.jpg", "a", "female", None, {"ethnicity": "Black", "age_band": "3-9"})
    assert record.groups == (("age_band", "3-9"), ("ethnicity", "Black"))
    assert record.group("ethnicity") == "Black" and record.group("nationality") is None
    assert hash(record) == hash(FaceRecord("a.jpg", "a", "female", None,
                                           (("age_band", "3-9"), ("ethnicity", "Black"))))


def test_utkface_names_give_gender_ethnicity_and_age_band(tmp_path):
    root = tmp_path / "UTKFace"
    _image(root / "26_1_2_20170116174525125.jpg.chip.jpg")
    _image(root / "5_0_1_20170110183726390.jpg.chip.jpg")
    _image(root / "part2" / "80_0_0_20170111200000000.jpg")
    _image(root / "39_1_20170116174525125.jpg.chip.jpg")  # no race field, as a few real ones
    assert detect_layout(root) == "utkface"
    data = open_dataset(root)
    by_name = {r.path.name.split(".")[0]: r for r in data}
    assert data.group_columns() == ["age_band", "ethnicity"]
    woman = by_name["26_1_2_20170116174525125"]
    assert (woman.gender, woman.group("ethnicity"), woman.group("age_band")) == (
        "female", "Asian", "20-29")
    assert by_name["5_0_1_20170110183726390"].group("age_band") == "3-9"
    assert by_name["80_0_0_20170111200000000"].group("ethnicity") == "White"
    assert by_name["39_1_20170116174525125"].group("ethnicity") is None
    assert len(data.persons()) == len(data)  # no identities: each image its own person


def test_utkface_refuses_a_name_it_cannot_read(tmp_path):
    root = tmp_path / "UTKFace"
    _image(root / "26_1_2_20170116174525125.jpg.chip.jpg")
    bad = _image(root / "holiday.jpg")
    with pytest.raises(DatasetError, match=str(bad.name)):
        load_utkface(root)


def test_fairface_reads_the_label_csv_and_the_mangled_age_bands(tmp_path):
    csv = _fairface(tmp_path, ["val/1.jpg,03-Sep,Male,East Asian,FALSE",
                               "val/2.jpg,50-59,Female,Latino_Hispanic,TRUE",
                               "val/3.jpg,Oct-19,Female,Black,TRUE",
                               "val/4.jpg,more than 70,Male,White,FALSE"])
    assert detect_layout(csv) == "fairface" and detect_layout(tmp_path) == "fairface"
    data = open_dataset(csv)
    assert [r.group("age_band") for r in data] == ["3-9", "50-59", "10-19", "70+"]
    assert [r.gender for r in data] == ["male", "female", "female", "male"]
    assert data.group_labels("ethnicity") == ["East Asian", "Latino_Hispanic", "Black", "White"]
    assert data[0].path == tmp_path / "fair_face" / "val" / "1.jpg"
    assert len(open_dataset(tmp_path, split="val")) == 4


@pytest.mark.parametrize("row, message", [
    ("val/2.jpg,20-29,Robot,White,FALSE", "unknown gender 'Robot'"),
    ("val/2.jpg,20-130,Male,White,FALSE", "unknown age band '20-130'"),
    ("val/2.jpg,20-29,Male,Martian,FALSE", "unknown race 'Martian'"),
])
def test_fairface_malformed_rows_name_the_file_and_line(tmp_path, row, message):
    csv = _fairface(tmp_path, ["val/1.jpg,20-29,Male,White,FALSE", row])
    with pytest.raises(DatasetError) as caught:
        load_fairface(csv)
    assert message in str(caught.value) and "fairface_label_val.csv:3" in str(caught.value)


def test_fairface_missing_images_and_csv(tmp_path):
    csv = _fairface(tmp_path, ["val/1.jpg,20-29,Male,White,FALSE"])
    with csv.open("a") as fh:
        fh.write("val/9.jpg,20-29,Male,White,FALSE\n")
    with pytest.raises(DatasetError, match=r"1 missing image.*9\.jpg"):
        load_fairface(csv)
    with pytest.raises(DatasetError, match="no fairface_label_train.csv; it has "
                                           "fairface_label_val.csv"):
        load_fairface(tmp_path, split="train")


def test_celeba_identities_of_the_images_present(tmp_path):
    for name in ("000001.jpg", "000002.jpg", "000093.jpg"):
        _image(tmp_path / "Celeb" / name)
    _image(tmp_path / "Celeb" / "stray.jpg")
    (tmp_path / "identity_CelebA.txt").write_text(
        "image identity\n000001.jpg 2880\n000002.jpg 2937\n000003.jpg 8692\n000093.jpg 2880\n")
    assert detect_layout(tmp_path) == "celeba"
    data = load_celeba_identities(tmp_path)
    assert sorted(data.person_indices()) == ["celeba:2880", "celeba:2937"]
    assert len(data.person_indices()["celeba:2880"]) == 2 and len(data) == 3


def test_celeba_malformed_identity_line_names_the_line(tmp_path):
    _image(tmp_path / "Celeb" / "000001.jpg")
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 2880\n000002.jpg\n")
    with pytest.raises(DatasetError, match=r"identity_CelebA\.txt:2: expected"):
        load_celeba_identities(tmp_path)


def test_asian_celebrities_person_is_the_name_before_the_number(tmp_path):
    base = tmp_path / "faces_data"
    for rel in ("korean/ahn-hyojin-1.jpg", "korean/ahn-hyojin-2.jpg", "chinese/ai-weiwei-3.jpg",
                "chinese/alex-fong.jpg", "japanese/aoi-miyazaki-12.jpg"):
        _image(base / rel)
    assert detect_layout(tmp_path) == "asian-celebrities" == detect_layout(base)
    data = load_asian_celebrities(tmp_path)
    assert sorted(data.person_indices()) == [
        "chinese/ai-weiwei", "chinese/alex-fong", "japanese/aoi-miyazaki", "korean/ahn-hyojin"]
    assert set(data.group_labels("ethnicity")) == {"East Asian"}
    assert data.group_labels("nationality").count("korean") == 2
    with pytest.raises(DatasetError, match="no chinese/japanese/korean folders"):
        load_asian_celebrities(tmp_path / "faces_data" / "korean")


def test_evaluation_groups_come_from_the_records(tmp_path):
    from siamface.evaluation.data import open_evaluation_data

    csv = _fairface(tmp_path, ["val/1.jpg,20-29,Male,White,FALSE",
                               "val/2.jpg,3-9,Female,Black,TRUE"])
    with open_evaluation_data(csv, groups=["ethnicity", "age_band"]) as data:
        assert data.groups["ethnicity"] == ["White", "Black"]
        assert data.groups["age_band"] == ["20-29", "3-9"]
        assert data.groups["gender"] == ["male", "female"]
    with pytest.raises(DatasetError, match="no such group; its groups: gender, distortion, "
                                           "age_band, ethnicity"), \
            open_evaluation_data(csv, groups=["hair"]):
        pass

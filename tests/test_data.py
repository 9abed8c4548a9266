"""siamface.data: layouts, splits, pairs and samplers on tiny synthetic trees and on LFW."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamface.data import (
    FaceDataset,
    FaceRecord,
    IndexPair,
    LFWPair,
    MPerPersonSampler,
    PairSampler,
    detect_layout,
    distortion_tag,
    evaluation_pairs,
    exclude_fold_people,
    facecom_person_id,
    flat_person_id,
    fold_persons,
    index_lfw_pairs,
    load_facecom,
    load_flat_folder,
    load_lfw,
    load_manifest,
    load_person_folders,
    open_dataset,
    parse_gender,
    person_split,
    read_pairs,
    read_view1,
    read_view2,
)
from siamface.errors import DatasetError, UnknownNameError


def _jpg(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path


def _dataset(spec: dict[str, tuple[str | None, int]]) -> FaceDataset:
    """person -> (gender, image count), with fake paths (nothing is read)."""
    return FaceDataset(
        FaceRecord(Path(f"/x/{p}/{p}_{i:04d}.jpg"), p, g)
        for p, (g, n) in spec.items() for i in range(1, n + 1)
    )


@pytest.fixture()
def facecom_root(tmp_path: Path) -> Path:
    root = tmp_path / "FACECOM"
    _jpg(root / "Task_A/train/male/Al_Bo_0001.jpg")
    _jpg(root / "Task_A/train/female/Cy_Di_0003.jpg")
    _jpg(root / "Task_A/val/female/Ed_Fa_0001_foggy.jpg")
    _jpg(root / "Task_A/train/male/Gi_0001.jpg")  # Gi in both: left unlabelled
    _jpg(root / "Task_A/val/female/Gi_0002.jpg")
    for person in ("Al_Bo", "Cy_Di", "Gi", "Zz"):
        _jpg(root / f"Task_B/train/{person}/{person}_0001.jpg")
        _jpg(root / f"Task_B/train/{person}/distortion/{person}_0001_blurred.jpg")
        _jpg(root / f"Task_B/train/{person}/distortion/{person}_0001_weird.jpg")
    _jpg(root / "Task_B/val/Ed_Fa/Ed_Fa_0001.jpg")
    return root


# --- records -----------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    ("male", "male"), ("M", "male"), (" Man ", "male"), ("0", "male"), (0, "male"),
    ("FEMALE", "female"), ("f", "female"), ("Woman", "female"), ("1", "female"), (1, "female"),
    ("", None), (None, None),
])
def test_parse_gender_accepts_documented_spellings(value, expected):
    assert parse_gender(value) == expected


def test_parse_gender_rejects_others_listing_valid_values():
    with pytest.raises(DatasetError, match=r"unknown gender 'boy' in g.csv:3.*male, m, man"):
        parse_gender("boy", source="g.csv:3")


def test_record_is_frozen_and_validated():
    record = FaceRecord("a/b.jpg", "b", "female")
    assert record.path == Path("a/b.jpg") and record.gender_label == 1
    with pytest.raises(AttributeError):
        record.person_id = "c"  # type: ignore[misc]
    with pytest.raises(DatasetError, match="parse_gender"):
        FaceRecord("a.jpg", "a", "F")


def test_dataset_helpers():
    ds = _dataset({"b": ("male", 2), "a": ("female", 3), "c": (None, 1)})
    assert ds.persons() == ["a", "b", "c"]
    assert {p: len(r) for p, r in ds.by_person().items()} == {"a": 3, "b": 2, "c": 1}
    assert ds.gender_counts() == {"male": 2, "female": 3, "unknown": 1}
    assert ds.gender_counts(by="person") == {"male": 1, "female": 1, "unknown": 1}
    labels = ds.person_labels()
    assert [ds.persons()[i] for i in labels] == [r.person_id for r in ds]
    assert list(ds.gender_labels()) == [0, 0, 1, 1, 1, -1]
    assert len(ds.with_min_images(2)) == 5
    with pytest.raises(DatasetError, match="no images"):
        FaceDataset([])


def test_person_gender_majority_female_on_tie():
    ds = FaceDataset([FaceRecord("1.jpg", "p", "male"), FaceRecord("2.jpg", "p", "female"),
                      FaceRecord("3.jpg", "q", "male"), FaceRecord("4.jpg", "q", "male"),
                      FaceRecord("5.jpg", "q", "female"), FaceRecord("6.jpg", "r", None)])
    assert ds.person_gender() == {"p": "female", "q": "male", "r": None}


# --- FACECOM -----------------------------------------------------------------------------
def test_distortion_tag_and_person_id():
    assert distortion_tag("Al_Bo_0001_foggy.jpg") == "foggy"
    assert distortion_tag("Al_Bo_0001_motion_blur.jpg") == "blurred"
    assert distortion_tag("Al_Bo_0001.jpg") is None
    assert facecom_person_id("Al_Bo_0001_lowlight.jpg") == "Al_Bo"
    assert facecom_person_id("Al_Bo_0012.jpg") == "Al_Bo"
    assert facecom_person_id("Al_Bo.jpg") == "Al_Bo"


def test_facecom_identities_with_genders(facecom_root):
    ds = load_facecom(facecom_root, "train")
    assert ds.persons() == ["Al_Bo", "Cy_Di", "Gi", "Zz"]
    genders = ds.person_gender()
    assert genders == {"Al_Bo": "male", "Cy_Di": "female", "Gi": None, "Zz": None}
    tags = Counter(r.distortion for r in ds)
    assert tags == {None: 4, "blurred": 4, "distortion": 4}
    val = load_facecom(facecom_root, "val")
    assert val.person_gender() == {"Ed_Fa": "female"}  # from Task_A val, suffix stripped


def test_facecom_gender_task(facecom_root):
    ds = load_facecom(facecom_root, "val", task="gender")
    assert [(r.person_id, r.gender, r.distortion) for r in ds] == [
        ("Ed_Fa", "female", "foggy"), ("Gi", "female", None)]
    assert detect_layout(facecom_root) == "facecom"


def test_facecom_errors(facecom_root, tmp_path):
    (facecom_root / "Task_B/train/Empty").mkdir()
    with pytest.raises(DatasetError, match=r"Empty has no images"):
        load_facecom(facecom_root, "train")
    with pytest.raises(DatasetError, match=r"Task_B.*not found.*folders present.*: none"):
        load_facecom(tmp_path / "nothing")
    with pytest.raises(UnknownNameError, match="valid: train, val"):
        load_facecom(facecom_root, "test")


# --- person folders, manifest, flat --------------------------------------------------------
def test_person_folders_with_genders_csv(tmp_path):
    _jpg(tmp_path / "ann/1.jpg")
    _jpg(tmp_path / "ann/distortion/1_rainy.jpg")
    _jpg(tmp_path / "bob/1.png")
    (tmp_path / "ann/notes.txt").write_text("x")
    (tmp_path / "genders.csv").write_text("Person,Gender\nann,F\nbob,\nghost,m\n")
    ds = load_person_folders(tmp_path)
    assert [(r.person_id, r.gender, r.distortion) for r in ds] == [
        ("ann", "female", None), ("ann", "female", "rainy"), ("bob", None, None)]
    assert open_dataset(tmp_path).persons() == ["ann", "bob"]


def test_person_folders_errors(tmp_path):
    _jpg(tmp_path / "ann/1.jpg")
    (tmp_path / "genders.csv").write_text("person,gender\nann,robot\n")
    with pytest.raises(DatasetError, match=r"'robot' in .*genders.csv:2"):
        load_person_folders(tmp_path)
    (tmp_path / "genders.csv").write_text("name,sex\nann,f\n")
    with pytest.raises(DatasetError, match="lacks column"):
        load_person_folders(tmp_path)
    (tmp_path / "genders.csv").unlink()
    (tmp_path / "bob").mkdir()
    with pytest.raises(DatasetError, match="bob has no images"):
        load_person_folders(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        load_person_folders(tmp_path / "missing")


def test_manifest(tmp_path):
    _jpg(tmp_path / "img/a.jpg")
    _jpg(tmp_path / "img/b.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,person_id,gender\nimg/a.jpg,p1,woman\nimg/b.jpg,p2,\n")
    ds = load_manifest(manifest)
    assert [(r.path, r.person_id, r.gender) for r in ds] == [
        (tmp_path / "img/a.jpg", "p1", "female"), (tmp_path / "img/b.jpg", "p2", None)]
    assert detect_layout(manifest) == "manifest"
    manifest.write_text("path,person_id\nimg/zz.jpg,p1\n")
    with pytest.raises(DatasetError, match="1 missing image"):
        load_manifest(manifest)
    manifest.write_text("path,person_id\n")
    with pytest.raises(DatasetError, match="no rows"):
        load_manifest(manifest)


def test_flat_folder_rule(tmp_path):
    assert flat_person_id("alice_01.jpg") == "alice"
    assert flat_person_id("bob-smith_2.jpg") == "bob"
    assert flat_person_id("carol.jpg") == "carol"
    for name in ("alice_01.jpg", "alice-2.jpg", "bob_1.jpg"):
        _jpg(tmp_path / name)
    (tmp_path / "genders.csv").write_text("person,gender\nalice,female\n")
    ds = load_flat_folder(tmp_path)
    assert sorted((r.person_id, r.gender) for r in ds) == [
        ("alice", "female"), ("alice", "female"), ("bob", None)]
    assert detect_layout(tmp_path) == "flat"


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        load_flat_folder(tmp_path)
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        open_dataset(tmp_path)


# --- splits ------------------------------------------------------------------------------
def test_person_split_is_disjoint_stratified_and_seeded():
    spec = {f"m{i}": ("male", 3) for i in range(40)}
    spec.update({f"f{i}": ("female", 2) for i in range(10)})
    spec.update({"u0": (None, 1), "u1": (None, 1)})
    ds = _dataset(spec)
    train, val = person_split(ds, 0.2, seed=3)
    assert not set(train.persons()) & set(val.persons())
    assert len(train) + len(val) == len(ds)
    assert val.gender_counts("person") == {"male": 8, "female": 2, "unknown": 1}
    again = person_split(ds, 0.2, seed=3)[1]
    assert again.persons() == val.persons()
    assert person_split(ds, 0.2, seed=4)[1].persons() != val.persons()
    with pytest.raises(DatasetError, match="2 or more"):
        person_split(_dataset({"solo": ("male", 3)}))


# --- pairs and samplers --------------------------------------------------------------------
def test_pair_sampler_single_draws():
    ds = _dataset({"a": ("male", 5), "b": ("female", 1), "c": ("male", 3), "d": (None, 2)})
    sampler = PairSampler(ds.person_labels())
    person = [r.person_id for r in ds]
    rng = np.random.default_rng(1)
    for anchor in range(len(ds)):
        if person.count(person[anchor]) < 2:
            continue
        pair = sampler.genuine(rng, anchor)
        assert pair.a == anchor and pair.b != anchor and person[pair.b] == person[anchor]
    impostors = [sampler.impostor(rng) for _ in range(200)]
    assert all(person[p.a] != person[p.b] and not p.same for p in impostors)
    assert {p.a for p in impostors} == set(range(len(ds)))  # any image can be drawn
    np.testing.assert_array_equal(sampler.images_of(0), [i for i, p in enumerate(person)
                                                         if p == "a"])


def test_evaluation_pairs_fixed_distinct_balanced():
    ds = _dataset({f"p{i}": ("male", 4) for i in range(10)})
    pairs = evaluation_pairs(ds, 60, seed=7)
    assert pairs == evaluation_pairs(ds, 60, seed=7)
    assert sum(p.same for p in pairs) == 30 and len(pairs) == 60
    keys = {(min(p.a, p.b), max(p.a, p.b)) for p in pairs}
    assert len(keys) == 60
    small = _dataset({"a": ("male", 2), "b": ("male", 1)})
    assert sum(p.same for p in evaluation_pairs(small, 10)) == 1  # only one genuine pair exists
    with pytest.raises(DatasetError, match="no person has 2"):
        PairSampler(_dataset({"a": ("male", 1), "b": ("male", 1)}).person_labels())
    with pytest.raises(DatasetError, match="impostor pairs need 2"):
        PairSampler(_dataset({"a": ("male", 3)}).person_labels())


def test_m_per_person_sampler():
    ds = _dataset({"a": ("male", 5), "b": ("male", 2), "c": ("male", 4), "d": ("male", 1),
                   "e": ("male", 3), "f": ("male", 6)})
    labels = ds.person_labels()
    sampler = MPerPersonSampler(labels, m=4, batch_size=8, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2  # 5 persons with 2+ images, 2 per batch
    seen = set()
    for batch in batches:
        assert len(batch) == 8
        counts = Counter(int(labels[i]) for i in batch)
        assert sorted(counts.values()) == [4, 4]
        seen |= set(counts)
    assert len(seen) == 4
    b_label = ds.persons().index("b")
    b_batches = [b for b in batches if any(labels[i] == b_label for i in b)]
    for batch in b_batches:  # 2 images, m=4: each image twice
        assert Counter(i for i in batch if labels[i] == b_label) == {
            i: 2 for i in np.flatnonzero(labels == b_label)}
    assert list(MPerPersonSampler(labels, 4, 8, seed=0)) == batches
    with pytest.raises(DatasetError, match="multiple of m"):
        MPerPersonSampler(labels, m=3, batch_size=8)
    with pytest.raises(DatasetError, match="only 5 of 6 persons qualify"):
        MPerPersonSampler(labels, m=2, batch_size=12)


def test_read_pairs_formats_and_errors(tmp_path):
    view1 = tmp_path / "dev.txt"
    view1.write_text("1\nA\t1\t2\nA\t1\tB\t3\n")
    assert read_pairs(view1) == [LFWPair("A", 1, "A", 2, True, 0),
                                 LFWPair("A", 1, "B", 3, False, 0)]
    view2 = tmp_path / "pairs.txt"
    view2.write_text("2\t1\r\nA\t1\t2\r\nA\t1\tB\t1\r\nC\t1\t2\r\nC\t2\tD\t1\r\n")
    pairs = read_pairs(view2)
    assert [p.fold for p in pairs] == [0, 0, 1, 1] and fold_persons(pairs, 1) == {"C", "D"}
    view2.write_text("2\t1\nA\t1\t2\n")
    with pytest.raises(DatasetError, match="announces 2 fold"):
        read_pairs(view2)
    view1.write_text("1\nA\t1\tB\t2\nA\t1\tB\t3\n")
    with pytest.raises(DatasetError, match=r"dev.txt:2: expected a matched pair"):
        read_pairs(view1)


def test_read_pairs_errors_name_the_real_line(tmp_path):
    """Blank lines are skipped but counted: the message names the line an editor shows."""
    view1 = tmp_path / "dev.txt"
    view1.write_text("\n2\n\nA\t1\t2\n\n  \nB\t1\t2\nA\t1\tB\t3\nA\t1\tB\tx\n")
    with pytest.raises(DatasetError, match=r"dev.txt:9: expected a mismatched pair"):
        read_pairs(view1)
    view1.write_text("\n\nten\n")
    with pytest.raises(DatasetError, match=r"dev.txt:3: first line must be"):
        read_pairs(view1)


# --- LFW (real data) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def lfw(lfw_dir):
    return load_lfw(lfw_dir)


@pytest.mark.lfw
def test_lfw_counts_and_genders(lfw):
    assert len(lfw) == 13233 and len(lfw.persons()) == 5749
    unknown = sorted(r.path.stem for r in lfw if r.gender is None)
    assert unknown == ["Robert_Evans_0001", "Robert_Evans_0002", "Tara_Kirk_0001",
                       "Yasser_Arafat_0005"]
    by_stem = {r.path.stem: r.gender for r in lfw}
    for stem in ("Allison_Searing_0001", "Claudia_Coslovich_0001", "Elizabeth_Hill_0001",
                 "Erika_Reyes_0001", "Tatiana_Shchegoleva_0001"):
        assert by_stem[stem] == "female"  # in both lists: female wins
    assert lfw.gender_counts() == {"male": 10263, "female": 2966, "unknown": 4}


@pytest.mark.lfw
def test_lfw_pairs_and_fold_exclusion(lfw, lfw_dir):
    view2 = read_view2(lfw_dir)
    assert len(view2) == 6000
    assert Counter(p.fold for p in view2) == {f: 600 for f in range(10)}
    assert sum(p.same for p in view2) == 3000
    assert view2[0] == LFWPair("Abel_Pacheco", 1, "Abel_Pacheco", 4, True, 0)
    assert all(a.is_file() and b.is_file() for a, b in (p.paths(lfw_dir) for p in view2[:50]))
    assert len(read_view1(lfw_dir, "train")) == 2200 and len(read_view1(lfw_dir, "test")) == 1000
    train = exclude_fold_people(lfw, view2, 3)
    assert not set(train.persons()) & fold_persons(view2, 3)
    assert fold_persons(view2, 4) <= set(train.persons())
    indexed = index_lfw_pairs(lfw, view2[:600])
    assert all(isinstance(p, IndexPair) for p in indexed)
    assert all((lfw[p.a].person_id == lfw[p.b].person_id) == p.same for p in indexed)

"""The trainer: configuration, the group-by-group runner, gradient routing, a two-stage
``main(["train", ...])`` run on a tiny FACECOM-shaped folder, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _train_helpers import build_facecom
from siamface.errors import ConfigError, DatasetError
from siamface.train.config import TrainConfig, apply_overrides, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


# --- configuration ----------------------------------------------------------------------------

def test_shipped_configs_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert isinstance(load_config(path), TrainConfig)


def test_reference_recipe_config():
    c = load_config(REPO / "configs" / "reference.yaml")
    assert (c.stage1.optimizer, c.stage1.lr, c.stage1.epochs, c.stage1.patience) == (
        "adam", 1e-3, 15, 3)
    assert (c.stage2.optimizer, c.stage2.lr, c.stage2.weight_decay, c.stage2.schedule,
            c.stage2.epochs, c.stage2.patience) == ("adamw", 2e-6, 1e-5, "cosine", 20, 5)
    assert c.stage2.lr * c.stage2.min_lr_fraction == pytest.approx(2e-7)
    assert c.stage3.lr == 5e-7 and not c.stage3.enabled
    assert (c.loss.verification, c.loss.margin, c.loss.verification_weight,
            c.loss.gender_weight, c.loss.gender_backprop) == ("contrastive", 1.0, 0.5, 1.0, True)
    assert (c.model.gender_dropout, c.model.flip_average) == (0.6, False)
    assert c.stage1.monitor == c.stage2.monitor == c.stage3.monitor == "val_total"


def test_default_config_file_equals_builtin_defaults():
    from siamface.train.config import config_to_dict

    file = config_to_dict(load_config(REPO / "configs" / "default.yaml"))
    builtin = config_to_dict(TrainConfig())
    file["run"]["out_dir"] = builtin["run"]["out_dir"]
    assert file == builtin


def test_overrides_and_types():
    c = apply_overrides(TrainConfig(), ["stage2.lr=1e-6", "data.views=[orig]",
                                        "run.max_steps_per_epoch=3", "stage3.enabled=true"])
    assert c.stage2.lr == 1e-6 and c.data.views == ("orig",)
    assert c.run.max_steps_per_epoch == 3 and c.stage3.enabled
    with pytest.raises(ConfigError, match="must be a number"):
        apply_overrides(c, ["stage2.lr=fast"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(c, ["stage2.lr"])


@pytest.mark.parametrize("override, hint", [
    ("stage2.lrr=1", "did you mean 'stage2.lr'"),
    ("stag2.lr=1", "did you mean 'stage2'"),
    ("loss.verificaton=triplet", "did you mean 'loss.verification'"),
    ("stage1.optimizer=adamm", "did you mean 'adam'"),
])
def test_unknown_keys_suggest(override, hint):
    with pytest.raises(ConfigError, match=hint):
        apply_overrides(TrainConfig(), [override])


def test_yaml_unknown_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage1:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'stage1.epochs'"):
        load_config(bad)


def test_stages_only_unlock_more():
    with pytest.raises(ConfigError, match="only unlock more"):
        apply_overrides(TrainConfig(), ["stage2.unlocked_groups=0", "stage1.unlocked_groups=1"])


# --- group runner and gradients ---------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    from siamface.train.config import ModelConfig
    from siamface.train.run import build_model

    return build_model(TrainConfig(model=ModelConfig(projection=True)))


def test_group_runner_matches_forward(model):
    from siamface.train.features import GroupRunner, advance

    runner = GroupRunner(model.backbone)  # checks run(x) == backbone(x) itself
    x = torch.randn(2, 3, 150, 150, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        full = model.backbone(x)
        mid = runner.run(x, 0, runner.boundary(2))
        top = runner.run(mid, runner.boundary(2))
        moved = advance(runner, mid.unsqueeze(1), runner.boundary(2), len(runner))[:, 0]
    torch.testing.assert_close(top, full, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(moved, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("unlocked", [0, 2])
def test_gradients_reach_exactly_the_unlocked_parameters(model, unlocked):
    from siamface.train.config import StageConfig
    from siamface.train.features import GroupRunner, TopModel
    from siamface.train.stages import trainable_parameters, unlock, unlocked_group_names

    unlock(model, StageConfig(unlocked_groups=unlocked))
    model.train()
    names = unlocked_group_names(model, unlocked)
    expected = {n for n, _ in model.named_parameters()
                if not n.startswith("backbone.") or n.split(".")[1] in names}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert len(trainable_parameters(model)) == len(expected)

    # through the whole model
    model.zero_grad(set_to_none=True)
    x = torch.randn(2, 3, 150, 150, generator=torch.Generator().manual_seed(2))
    distance, la, lb = model(x[:1], x[1:])
    (distance.sum() + la.sum() + lb.sum()).backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got == expected

    # through the cached-trunk path
    model.zero_grad(set_to_none=True)
    runner = GroupRunner(model.backbone, check=False)
    start = runner.boundary(unlocked)
    with torch.no_grad():
        acts = runner.run(x, 0, start)
    emb, logit = TopModel(model, runner, start)(acts)
    (emb.sum() + logit.sum()).backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got == expected

    # gender_backprop=False: the gender loss trains the gender head and nothing else
    model.zero_grad(set_to_none=True)
    _, logit = TopModel(model, runner, start, gender_backprop=False)(acts)
    logit.sum().backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got == {n for n in expected if n.startswith("gender_head.")}
    model.zero_grad(set_to_none=True)


def test_validation_embeddings_average_the_views(model):
    from siamface.train.features import GroupRunner, TopModel
    from siamface.train.loop import embed_cached

    runner = GroupRunner(model.backbone, check=False)
    top = TopModel(model, runner, len(runner))
    feats = torch.randn(5, 2, 128, generator=torch.Generator().manual_seed(4))
    emb, logit = embed_cached(top, feats, batch_size=2)
    model.eval()
    with torch.no_grad():
        e0, l0 = model.heads(feats[:, 0])
        e1, l1 = model.heads(feats[:, 1])
    torch.testing.assert_close(emb, (e0 + e1) / 2)
    torch.testing.assert_close(logit, (l0 + l1) / 2)


def test_multitask_loss_parts():
    from siamface.train.config import LossConfig
    from siamface.train.objective import MultiTaskLoss, gender_class_weights

    w = gender_class_weights(LossConfig(), [0, 0, 0, 1, -1])
    assert w == pytest.approx([4 / 6, 4 / 2])
    loss = MultiTaskLoss(LossConfig(verification="contrastive"), w)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    parts = loss(a, b, torch.randn(4), torch.randn(4), torch.tensor([1., 0, 1, 0]),
                 torch.tensor([0, 1, -1, 0]), torch.tensor([-1, -1, -1, -1]))
    assert set(parts) == {"verification", "gender_a", "gender_b", "total"}
    assert float(parts["gender_b"]) == 0.0  # every label unknown: masked out
    total = 0.5 * parts["verification"] + parts["gender_a"] + parts["gender_b"]
    torch.testing.assert_close(parts["total"], total)
    triplet = MultiTaskLoss(LossConfig(verification="triplet", gender="focal"), w)
    out = triplet(a, b, torch.randn(4), torch.randn(4), torch.ones(4), torch.zeros(4).long(),
                  torch.zeros(4).long(), torch.arange(4), torch.arange(4))
    assert torch.isfinite(out["total"])
    hinge = MultiTaskLoss(LossConfig(), w)  # the default: pair hinge over the 8 images
    persons = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 4, 2, 5])
    out = hinge(a, b, torch.randn(4), torch.randn(4), torch.tensor([1., 0, 1, 0]),
                torch.zeros(4).long(), torch.zeros(4).long(), *persons)
    from siamface.losses import pair_hinge_loss

    torch.testing.assert_close(out["verification"],
                               pair_hinge_loss(torch.cat([a, b]), torch.cat(persons)))
    with pytest.raises(ValueError, match="person labels"):
        hinge(a, b, torch.randn(4), torch.randn(4), torch.ones(4), torch.zeros(4).long(),
              torch.zeros(4).long())


# --- end to end ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def facecom(lfw_dir, tmp_path_factory):
    return build_facecom(lfw_dir, tmp_path_factory.mktemp("facecom") / "FACECOM")


@pytest.mark.lfw
@pytest.mark.slow
def test_main_trains_both_stages(facecom, tmp_path, capsys):
    import siamface
    from siamface.checkpoint import read_checkpoint_info
    from siamface.cli.main import main

    assert any((facecom / "Task_B" / "train").glob("*/distortion/*_fog.jpg"))
    out = tmp_path / "run"
    rc = main(["train", "--config", TINY, "--data", str(facecom), "--out", str(out),
               "--set", "stage2.epochs=1", "--set", "stage3.enabled=true",
               "--set", "stage3.epochs=1"])
    assert rc == 0, capsys.readouterr().err
    for name in ("config.yaml", "metrics.csv", "metrics.json", "curves.png", "train_state.pt",
                 "stage1.safetensors", "stage2.safetensors", "stage3.safetensors",
                 "model.safetensors"):
        assert (out / name).is_file(), name
    import json

    history = json.loads((out / "metrics.json").read_text())
    assert [r["stage"] for r in history].count("stage2") == 1
    assert [r["stage"] for r in history][-1] == "stage3"
    assert read_checkpoint_info(out / "stage1.safetensors").stored_groups == []
    assert read_checkpoint_info(out / "stage2.safetensors").stored_groups == ["level256b", "fc"]
    info = read_checkpoint_info(out / "model.safetensors")
    assert info.stored_groups == ["level256a", "level256b", "fc"] and info.gender_trained
    assert info.threshold_source.startswith("youden")
    assert info.training["config"]["stage2"]["epochs"] == 1
    import yaml

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["stage2"]["epochs"] == 1 and resolved["stage1"]["epochs"] == 3
    service = siamface.load(out / "model.safetensors")
    assert service.gender_available and service.threshold == pytest.approx(info.threshold)
    # calibrated on flip-averaged faces (the default), so the service averages too
    assert info.preprocessing["flip_average"] is True and service.flip is True
    # its chips were restored as the service restores them, and the service follows it
    assert info.preprocessing["chip_restore"] == ["denoise", "derain"]
    assert service.pipeline.chip_restore == ("denoise", "derain")
    face = service.analyze(next((facecom / "Task_B" / "val").glob("*/*.jpg")))[0]
    # the reported probability is the trained head's sigmoid on this face's embedding (the
    # embedding is the backbone feature here: no projection, no normalisation)
    assert not info.head.projection and not info.head.normalize
    head = service.model.gender_head[1]
    logit = (head.weight.detach().numpy()[0] @ face.embedding).item() + head.bias.item()
    p_second = 1.0 / (1.0 + np.exp(-logit))
    first, second = service.gender_classes
    assert face.gender.probabilities[second] == pytest.approx(p_second, abs=1e-4)
    assert face.gender.label == (second if p_second >= 0.5 else first)
    assert "validation: verification accuracy" in capsys.readouterr().out


@pytest.mark.lfw
def test_unmeasurable_monitor_fails_before_training(facecom, tmp_path, capsys):
    from siamface.cli.main import main

    out = tmp_path / "run"
    rc = main(["train", "--config", TINY, "--data", str(facecom), "--out", str(out),
               "--set", "stage2.monitor=val_accuracy_cv"])
    assert rc == 2
    assert "needs at least 50 validation pairs" in capsys.readouterr().err
    assert not (out / "stage1.safetensors").exists()


@pytest.mark.lfw
def test_unreadable_images_are_skipped_and_listed(facecom, tmp_path, capsys):
    from siamface.cli.main import main

    data = tmp_path / "data"
    shutil.copytree(facecom, data)
    person = next(p for p in sorted((data / "Task_B" / "train").iterdir()) if p.is_dir())
    (person / "broken_0009.jpg").write_bytes(b"not a jpeg at all")
    (person / "empty_0010.jpg").write_bytes(b"")
    out = tmp_path / "run"
    args = ["train", "--config", TINY, "--data", str(data), "--out", str(out),
            "--cache-dir", str(tmp_path / "crops"), "--set", "stage2.enabled=false",
            "--set", "stage1.epochs=1"]
    for _ in range(2):  # the second run reads the chips and the errors from the crop cache
        rc = main(args)
        err = capsys.readouterr().err
        assert rc == 3, err  # finished, with some inputs skipped
        skipped = (out / "skipped.txt").read_text()
        assert "broken_0009.jpg" in skipped and "empty_0010.jpg" in skipped
        assert "skipped 2 unreadable image(s)" in err and "broken_0009.jpg" in err
    assert any((tmp_path / "crops").rglob("*.png"))


def _person_folders(root: Path, persons: dict[str, int], lfw: Path) -> Path:
    for name, n in persons.items():
        (root / name).mkdir(parents=True)
        for i in range(1, n + 1):
            shutil.copyfile(lfw / "images" / name / f"{name}_{i:04d}.jpg",
                            root / name / f"{name}_{i:04d}.jpg")
    return root


@pytest.mark.lfw
def test_single_person_fails_before_training(lfw_dir, tmp_path, capsys):
    from siamface.cli.main import main
    from siamface.train.config import DataConfig
    from siamface.train.data import load_datasets

    root = _person_folders(tmp_path / "one", {"Abdullah_Gul": 3}, lfw_dir)
    with pytest.raises(DatasetError, match="single person .*at least 2 persons"):
        load_datasets(DataConfig(root=str(root), layout="folders"))
    out = tmp_path / "run"
    rc = main(["train", "--config", TINY, "--data", str(root), "--out", str(out)])
    assert rc == 2
    assert "single person" in capsys.readouterr().err
    assert not (out / "train_state.pt").exists()


def test_empty_dataset_fails_before_training(tmp_path, capsys):
    from siamface.cli.main import main

    (tmp_path / "empty" / "nobody").mkdir(parents=True)
    rc = main(["train", "--config", TINY, "--data", str(tmp_path / "empty"),
               "--layout", "folders", "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err and ("no images" in err or "empty" in err)


@pytest.mark.lfw
def test_no_genuine_pairs_fails(lfw_dir, tmp_path):
    from siamface.train.config import DataConfig
    from siamface.train.data import load_datasets

    root = _person_folders(tmp_path / "singles", {"Abdullah_Gul": 1, "Adrien_Brody": 1,
                                                  "Al_Sharpton": 1}, lfw_dir)
    with pytest.raises(DatasetError, match="none with 2 or more images"):
        load_datasets(DataConfig(root=str(root), layout="folders"))


def test_pair_sampler_draws_valid_balanced_pairs():
    import numpy as np

    from siamface.data import PairSampler

    labels = np.array([0, 0, 1, 2, 2, 2, 3])
    a, b, same = PairSampler(labels).draw(2001, np.random.default_rng(0))
    assert same[0::2].all() and not same[1::2].any()
    assert (labels[a[0::2]] == labels[b[0::2]]).all() and (a[0::2] != b[0::2]).all()
    assert (labels[a[1::2]] != labels[b[1::2]]).all()
    again = PairSampler(labels).draw(2001, np.random.default_rng(0))
    assert all(np.array_equal(x, y) for x, y in zip((a, b, same), again))
    with pytest.raises(DatasetError, match="no genuine pairs"):
        PairSampler(np.array([0, 1, 2]))


def test_same_image_pairs_pair_two_views_of_one_image():
    from siamface.data import PairSampler
    from siamface.train.loop import StageInputs, _epoch_pairs

    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    empty = torch.zeros(0)

    def inputs(share: float) -> StageInputs:
        return StageInputs(torch.zeros(len(labels), 4, 3), empty, torch.from_numpy(labels),
                           PairSampler(labels), 4000, empty, empty, empty, empty, empty,
                           empty, same_image_share=share)

    off = _epoch_pairs(inputs(0.0), seed=3, stage_index=1, epoch=2)
    a, b, same, va, vb = _epoch_pairs(inputs(0.25), seed=3, stage_index=1, epoch=2)
    # the pair and view draws are those of share 0; only the chosen genuine pairs change
    assert all(np.array_equal(x, y) for x, y in zip((a, same, va), (off[0], off[2], off[3])))
    one_image = a == b
    assert not (one_image & (same == 0)).any()
    assert 0.2 < one_image.sum() / (same > 0).sum() < 0.3
    assert (va[one_image] != vb[one_image]).all()
    assert np.array_equal(b[~one_image], off[1][~one_image])
    assert np.array_equal(vb[~one_image], off[4][~one_image])
    assert (labels[a[same > 0]] == labels[b[same > 0]]).all()
    with pytest.raises(ConfigError, match="same_image_pairs must be in"):
        apply_overrides(TrainConfig(), ["data.same_image_pairs=1.5"])
    with pytest.raises(ConfigError, match="at least two views"):
        apply_overrides(TrainConfig(), ["data.views=[orig]", "data.same_image_pairs=0.5"])


def test_same_image_pairs_reach_the_trainer(facecom, tmp_path, capsys):
    import json

    from siamface.cli.main import main

    def first_epoch(share: float, run: str = "") -> dict:
        out = tmp_path / f"share{share}{run}"
        rc = main(["train", "--config", TINY, "--data", str(facecom), "--out", str(out),
                   "--set", "stage2.enabled=false", "--set", "stage1.epochs=1",
                   "--set", f"data.same_image_pairs={share}", "--no-progress"])
        assert rc == 0, capsys.readouterr().err
        return json.loads((out / "metrics.json").read_text())[0]

    plain = first_epoch(0.0)
    # a rerun repeats the losses exactly, so a difference comes from the option alone
    assert first_epoch(0.0, "again")["train_verification"] == plain["train_verification"]
    assert first_epoch(1.0)["train_verification"] != pytest.approx(plain["train_verification"])


def test_no_gender_labels_means_no_trained_gender_head(lfw_dir, tmp_path):
    from siamface.checkpoint import read_checkpoint_info
    from siamface.cli.main import main

    root = _person_folders(tmp_path / "people",
                           {"Aaron_Peirsol": 3, "Adrien_Brody": 3, "Abdullah_Gul": 3,
                            "Ahmed_Chalabi": 3, "Al_Sharpton": 3}, lfw_dir)
    out = tmp_path / "run"
    rc = main(["train", "--config", TINY, "--data", str(root), "--layout", "folders",
               "--out", str(out), "--set", "stage2.enabled=false", "--set", "stage1.epochs=1",
               "--set", "data.val_fraction=0.4", "--no-progress"])
    assert rc == 0
    info = read_checkpoint_info(out / "model.safetensors")
    assert info.gender_trained is False


@pytest.mark.lfw
@pytest.mark.slow
def test_training_on_distorted_views_calibrates_on_distorted_pairs(facecom, tmp_path, capsys):
    from siamface.checkpoint import read_checkpoint_info
    from siamface.cli.main import main
    from siamface.train import apply_overrides, load_config
    from siamface.train.run import distorted_pairs

    out = tmp_path / "run"
    rc = main(["train", "--config", TINY, "--data", str(facecom), "--out", str(out),
               "--set", "stage2.epochs=1", "--set", "data.augment=distortions",
               "--set", "data.augment_views=1", "--set", "data.distortion_severities=[4]",
               "--set", "data.val_distorted=0.5"])
    assert rc == 0, capsys.readouterr().err
    info = read_checkpoint_info(out / "model.safetensors")
    assert info.threshold_source == ("youden on validation pairs (50% with a distorted second "
                                     "image)")
    assert info.training["config"]["data"]["augment"] == "distortions"
    config = apply_overrides(load_config(TINY), ["data.val_distorted=0.25"])
    chosen = distorted_pairs(400, config)
    assert len(chosen) == 100 and np.array_equal(chosen, distorted_pairs(400, config))
    assert len(np.unique(chosen)) == 100 and chosen.max() < 400

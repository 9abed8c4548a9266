"""FaceNet: facenet-pytorch state dicts load into our Inception-ResNet-v1 and give the same
outputs (reference module built from facenet-pytorch's own source, test-only)."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest
import torch

from siamface.backbones import create_backbone
from siamface.errors import CheckpointError

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def reference_module(facenet_pytorch_dir) -> types.ModuleType:
    """facenet-pytorch's inception_resnet_v1.py, executed with its download imports removed
    (they need ``requests`` and a relative package; the architecture needs only torch)."""
    path = facenet_pytorch_dir / "models" / "inception_resnet_v1.py"
    source = path.read_text()
    source = re.sub(r"^(import requests|from requests\S* import .*|from \.\S* import .*)$",
                    "", source, flags=re.MULTILINE)
    module = types.ModuleType("facenet_pytorch_reference")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 (test-only reference)
    return module


@pytest.fixture(scope="module")
def reference_state(reference_module) -> dict[str, torch.Tensor]:
    """A random state dict in the layout of 20180402-114759-vggface2.pt (with logits)."""
    torch.manual_seed(0)
    ref = reference_module.InceptionResnetV1(classify=True, num_classes=8631).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return ref.state_dict()


def test_published_layout_loads_without_missing_or_unexpected(reference_state, tmp_path):
    assert "logits.weight" in reference_state and reference_state["logits.weight"].shape[0] == 8631
    ours = create_backbone("facenet", pretrained=False)
    kept = {k: v for k, v in reference_state.items() if not k.startswith("logits.")}
    own = ours.state_dict()
    assert set(kept) == set(own)
    assert all(kept[k].shape == own[k].shape for k in own)
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(reference_state, path)
    create_backbone("facenet", weights=path)  # raises on any mismatch


def test_same_weights_same_outputs(reference_module, reference_state, tmp_path):
    ref = reference_module.InceptionResnetV1(classify=False).eval()
    ref.load_state_dict({k: v for k, v in reference_state.items()
                         if not k.startswith("logits.")})
    path = tmp_path / "vggface2.pt"
    torch.save(reference_state, path)
    ours = create_backbone("facenet", weights=path)
    chips = np.random.default_rng(0).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    x = ours.preprocess(chips)
    manual = (torch.from_numpy(chips).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    assert torch.allclose(x, manual)
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    assert got.shape == (2, 512)
    assert (got - expected).abs().max() < 1e-5
    assert torch.allclose(got.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(ours.embed(chips), expected, atol=1e-5)


def test_safetensors_weights(reference_state, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "facenet.safetensors"
    save_file({k: v.contiguous() for k, v in reference_state.items()}, str(path))
    net = create_backbone("facenet", weights=path)
    assert torch.equal(net.last_linear.weight, reference_state["last_linear.weight"])


def test_foreign_state_dict_refused(reference_state, tmp_path):
    broken = dict(reference_state)
    del broken["last_linear.weight"]
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="last_linear.weight"):
        create_backbone("facenet", weights=path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        create_backbone("facenet", weights=junk)

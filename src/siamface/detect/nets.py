"""The three MTCNN networks (P-Net, R-Net, O-Net) and their weights.

The weights are the original MTCNN ones (Zhang et al. 2016) as shipped, MIT-licensed, by the
``mtcnn`` package in ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``. Each file is a joblib
pickle of a list of numpy arrays in Keras layout: conv kernels HWIO, PReLU alphas (1, 1, C),
dense matrices (in, out), and in every list the box-regression output comes before the
face-probability output (O-Net's landmark output sits between them).

:func:`keras_to_state_dict` turns such a list into a state dict in the layout of the Caffe
model that facenet-pytorch also uses (``conv1.weight`` OIHW, ``dense4.weight`` (out, in) with
the Caffe flatten order width, height, channel). The networks here then fold that layout into
a faster but equivalent form: the two softmax logits become one sigmoid logit, the output
heads are one layer each, and the first dense layer reads a channels-last (NHWC) flatten
directly. The networks run fastest on channels-last inputs (oneDNN), which is the memory
format :func:`load_networks` gives them.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siamface.errors import WeightsNotFoundError

__all__ = [
    "ONet",
    "PNet",
    "RNet",
    "keras_to_state_dict",
    "load_keras_weights",
    "load_networks",
    "mtcnn_weights_path",
]

NET_NAMES = ("pnet", "rnet", "onet")

# Layer names of the Caffe/facenet-pytorch layout, in the order of the Keras lists.
_KERAS_ORDER: dict[str, tuple[str, ...]] = {
    "pnet": (
        "conv1.weight", "conv1.bias", "prelu1.weight",
        "conv2.weight", "conv2.bias", "prelu2.weight",
        "conv3.weight", "conv3.bias", "prelu3.weight",
        "conv4_2.weight", "conv4_2.bias",  # box regression
        "conv4_1.weight", "conv4_1.bias",  # face / background logits
    ),
    "rnet": (
        "conv1.weight", "conv1.bias", "prelu1.weight",
        "conv2.weight", "conv2.bias", "prelu2.weight",
        "conv3.weight", "conv3.bias", "prelu3.weight",
        "dense4.weight", "dense4.bias", "prelu4.weight",
        "dense5_2.weight", "dense5_2.bias",  # box regression
        "dense5_1.weight", "dense5_1.bias",  # face / background logits
    ),
    "onet": (
        "conv1.weight", "conv1.bias", "prelu1.weight",
        "conv2.weight", "conv2.bias", "prelu2.weight",
        "conv3.weight", "conv3.bias", "prelu3.weight",
        "conv4.weight", "conv4.bias", "prelu4.weight",
        "dense5.weight", "dense5.bias", "prelu5.weight",
        "dense6_2.weight", "dense6_2.bias",  # box regression
        "dense6_3.weight", "dense6_3.bias",  # landmarks (5 x, then 5 y)
        "dense6_1.weight", "dense6_1.bias",  # face / background logits
    ),
}


def mtcnn_weights_path(name: str) -> Path:
    """Path of ``name`` (``pnet``, ``rnet`` or ``onet``) in the installed ``mtcnn`` package.

    The package is located without importing it (importing it would import TensorFlow).
    """
    if name not in NET_NAMES:
        raise ValueError(f"unknown MTCNN network {name!r}; valid: {', '.join(NET_NAMES)}")
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            "the MTCNN weights come from the 'mtcnn' package, which is not installed; "
            "install it with: pip install 'mtcnn>=1.0.0'"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "assets" / "weights" / f"{name}.lz4"
        if path.is_file():
            return path
    raise WeightsNotFoundError(
        f"{name}.lz4 not found under {list(spec.submodule_search_locations)}/assets/weights; "
        "reinstall the package with: pip install --force-reinstall 'mtcnn>=1.0.0'"
    )


def load_keras_weights(name: str) -> list[np.ndarray]:
    """The Keras-layout arrays of one network, read from the ``mtcnn`` package."""
    import joblib  # imported here: only weight loading needs it

    arrays = joblib.load(mtcnn_weights_path(name))
    expected = len(_KERAS_ORDER[name])
    if not isinstance(arrays, list) or len(arrays) != expected:
        raise WeightsNotFoundError(
            f"{mtcnn_weights_path(name)} is not the expected list of {expected} arrays; "
            "the installed 'mtcnn' package may be an incompatible version (need >=1.0.0)"
        )
    return arrays


def keras_to_state_dict(name: str, arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Convert Keras-layout arrays to the Caffe/facenet-pytorch state dict of ``name``.

    Conv kernels HWIO become OIHW, dense matrices (in, out) become (out, in), PReLU alphas
    are flattened. The first dense layers of R-Net and O-Net already expect the Caffe flatten
    order (width, height, channel), so no reordering of their inputs is needed.
    """
    state: dict[str, torch.Tensor] = {}
    for key, array in zip(_KERAS_ORDER[name], arrays, strict=True):
        a = np.asarray(array, dtype=np.float32)
        if a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)
        elif a.ndim == 2:
            a = a.T
        else:
            a = a.reshape(-1)
        state[key] = torch.from_numpy(np.ascontiguousarray(a))
    return state


def _logit_difference(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Fold a 2-way softmax layer into one logit: softmax(a)[1] == sigmoid(a[1] - a[0])."""
    return weight[1:2] - weight[0:1], bias[1:2] - bias[0:1]


def _caffe_dense_to_nhwc(weight: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Reorder a dense weight from the Caffe flatten order (W, H, C) to NHWC's (H, W, C)."""
    c, h, w = shape
    return weight.reshape(-1, w, h, c).permute(0, 2, 1, 3).reshape(weight.shape[0], -1)


def _flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
    """Flatten (N, C, H, W) in (H, W, C) order: free for channels-last tensors."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling, stride 2, ceil mode; as two strided maxima, several times faster
    than ``F.max_pool2d`` on few channels."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
    rows = torch.maximum(x[:, :, 0::2], x[:, :, 1::2])
    return torch.maximum(rows[:, :, :, 0::2], rows[:, :, :, 1::2])


class PNet(nn.Module):
    """Proposal network: fully convolutional, a 12x12 window per output cell (stride 2).

    ``forward`` takes normalised images (N, 3, H, W) and returns the box regression
    (N, 4, H', W') and the face probability (N, H', W'); ``logits`` the face logit instead
    (what the detector thresholds and ranks: near 1 a float32 probability ties).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.head = nn.Conv2d(32, 5, 1)  # 4 regression channels, then the face logit

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = _max_pool_2x2(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        out = self.head(x)
        return out[:, :4], out[:, 4]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, logit = self.logits(x)
        return reg, torch.sigmoid(logit)

    def load_caffe_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict in the Caffe/facenet-pytorch layout."""
        w, b = _logit_difference(state["conv4_1.weight"], state["conv4_1.bias"])
        own = {k: v for k, v in state.items() if not k.startswith("conv4")}
        own["head.weight"] = torch.cat([state["conv4_2.weight"], w])
        own["head.bias"] = torch.cat([state["conv4_2.bias"], b])
        self.load_state_dict(own)


class RNet(nn.Module):
    """Refinement network on 24x24 crops: returns box regression (N, 4) and face probability
    (N,) (``logits``: the face logit)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.head = nn.Linear(128, 5)  # 4 regression outputs, then the face logit

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu2(self.conv2(x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_nhwc(x)))
        out = self.head(x)
        return out[:, :4], out[:, 4]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, logit = self.logits(x)
        return reg, torch.sigmoid(logit)

    def load_caffe_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict in the Caffe/facenet-pytorch layout."""
        w, b = _logit_difference(state["dense5_1.weight"], state["dense5_1.bias"])
        own = {k: v for k, v in state.items() if not k.startswith("dense5")}
        own["dense4.weight"] = _caffe_dense_to_nhwc(state["dense4.weight"], (64, 3, 3))
        own["head.weight"] = torch.cat([state["dense5_2.weight"], w])
        own["head.bias"] = torch.cat([state["dense5_2.bias"], b])
        self.load_state_dict(own)


class ONet(nn.Module):
    """Output network on 48x48 crops: returns box regression (N, 4), landmarks (N, 10) as
    five x then five y relative to the box, and face probability (N,) (``logits``: the face
    logit)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.head = nn.Linear(256, 15)  # 4 regression, 10 landmark outputs, the face logit

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu2(self.conv2(x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_nhwc(x)))
        out = self.head(x)
        return out[:, :4], out[:, 4:14], out[:, 14]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reg, marks, logit = self.logits(x)
        return reg, marks, torch.sigmoid(logit)

    def load_caffe_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict in the Caffe/facenet-pytorch layout."""
        w, b = _logit_difference(state["dense6_1.weight"], state["dense6_1.bias"])
        own = {k: v for k, v in state.items() if not k.startswith("dense6")}
        own["dense5.weight"] = _caffe_dense_to_nhwc(state["dense5.weight"], (128, 3, 3))
        own["head.weight"] = torch.cat([state["dense6_2.weight"], state["dense6_3.weight"], w])
        own["head.bias"] = torch.cat([state["dense6_2.bias"], state["dense6_3.bias"], b])
        self.load_state_dict(own)


@functools.lru_cache(maxsize=1)
def load_networks() -> tuple[PNet, RNet, ONet]:
    """The three networks with the ``mtcnn`` package's weights, in eval mode, gradients off,
    in channels-last memory format.

    Cached: every detector shares one set (they are only ever used for inference).
    """
    nets = (PNet(), RNet(), ONet())
    for name, net in zip(NET_NAMES, nets, strict=True):
        net.load_caffe_state(keras_to_state_dict(name, load_keras_weights(name)))
        net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    return nets

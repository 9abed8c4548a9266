"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in torch.

The network is the one in dlib's ``dnn_face_recognition_ex.cpp``: a 7x7/2 stem and max pool,
residual levels of 32, 64, 128, 256 and 256 filters, global average pool and a 256 -> 128
linear map without bias. Input is RGB ``(pixel - mean[c]) / 256``; the output is the raw 128-d
descriptor (not L2-normalised), compared with Euclidean distance 0.6.

Each ``affine`` layer (frozen batch norm) is folded into the preceding convolution when the
published weights are loaded, which is exact to float rounding and faster; the folded
convolutions remain ordinary trainable parameters.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siamface.backbones.base import Backbone
from siamface.backbones.config import PretrainedConfig
from siamface.backbones.dlib_dat import DlibLayer, DlibNetwork, parse_dlib_dat
from siamface.backbones.pretrained import DLIB_RESNET_CONFIG
from siamface.backbones.registry import register_backbone
from siamface.backbones.weights import load_state_dict_file
from siamface.errors import CheckpointError

__all__ = ["DLIB_RESNET_CONFIG", "DlibResNet", "dlib_network_to_state_dict", "load_dlib_state_dict"]

# (out_channels, number of plain blocks after an optional downsampling block) per level.
_LEVELS = (
    ("level32", 32, False, 3),
    ("level64", 64, True, 3),
    ("level128", 128, True, 2),
    ("level256a", 256, True, 2),
    ("level256b", 256, True, 0),
)


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum has the larger size in every dimension, with the smaller
    operand zero-padded on the high side (channels, rows, columns)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """conv3x3/s + relu + conv3x3/1 (affines folded), plus the identity or, when
    downsampling, a parameter-free 2x2/2 average pool of the input; relu of the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1 if stride == 1 else 0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.downsample = stride != 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x), inplace=True))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(_add_padded(y, shortcut), inplace=True)


class DlibResNet(Backbone):
    """The dlib ResNet as a :class:`Backbone` (128-d raw descriptors)."""

    def __init__(self, config: PretrainedConfig = DLIB_RESNET_CONFIG):
        super().__init__(config)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 7, 2, 0), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 0)
        )
        channels = 32
        for name, width, down, plain in _LEVELS:
            blocks = [ResidualBlock(channels, width, 2)] if down else []
            blocks += [ResidualBlock(width, width, 1) for _ in range(plain)]
            setattr(self, name, nn.Sequential(*blocks))
            channels = width
        self.fc = nn.Linear(channels, config.embedding_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name, *_ in _LEVELS:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return [(name, [getattr(self, name)]) for name in self.config.layer_groups]

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a dlib ``.dat`` file (parsed, affines folded) or a saved state dict."""
        path = Path(path)
        if path.suffix == ".dat":
            state = _shared_dlib_state(path)  # load_state_dict copies: no need to clone
        else:
            state = load_state_dict_file(path)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{path} does not fit backbone {self.config.name!r}: missing keys "
                f"{missing[:5]}, unexpected keys {unexpected[:5]}"
            )


class _RecordCursor:
    def __init__(self, net: DlibNetwork, source: str):
        self.layers = net.layers
        self.i = 0
        self.source = source

    def take(self, kind: str, **fields: int) -> DlibLayer:
        if self.i >= len(self.layers):
            raise CheckpointError(f"{self.source}: network ends early, expected {kind}")
        layer = self.layers[self.i]
        wrong = {k: (layer.fields.get(k), v) for k, v in fields.items()
                 if layer.fields.get(k) != v}
        if layer.kind != kind or wrong:
            raise CheckpointError(
                f"{self.source}: layer record {self.i} is {layer.kind} {layer.fields}, "
                f"expected {kind} with {fields} (not dlib's face recognition ResNet v1)"
            )
        self.i += 1
        return layer


def _fold(conv: DlibLayer, affine: DlibLayer) -> tuple[torch.Tensor, torch.Tensor]:
    w = conv.tensors["weight"].astype(np.float64)
    b = conv.tensors["bias"].astype(np.float64)
    gamma = affine.tensors["gamma"].astype(np.float64)
    beta = affine.tensors["beta"].astype(np.float64)
    if gamma.size != w.shape[0]:
        raise CheckpointError(f"affine of {gamma.size} channels after a {w.shape[0]}-filter conv")
    w = w * gamma[:, None, None, None]
    b = b * gamma + beta
    return torch.from_numpy(w.astype(np.float32)), torch.from_numpy(b.astype(np.float32))


def dlib_network_to_state_dict(net: DlibNetwork, source: str = "<dlib>") -> dict[str,
                                                                                  torch.Tensor]:
    """Map parsed dlib records onto :class:`DlibResNet` parameter names (affines folded).

    Stream order within a downsampling block is conv, affine, relu, conv, affine, avg_pool
    (the shortcut's pool is recorded after the branch), add_prev, relu.
    """
    cur = _RecordCursor(net, source)
    state: dict[str, torch.Tensor] = {}

    def conv_affine(prefix: str, out: int, k: int, stride: int, pad: int) -> None:
        conv = cur.take("con_4", num_filters=out, nr=k, nc=k, stride_y=stride,
                        stride_x=stride, padding_y=pad, padding_x=pad)
        state[prefix + ".weight"], state[prefix + ".bias"] = _fold(conv, cur.take("affine_"))

    conv_affine("stem.0", 32, 7, 2, 0)
    cur.take("relu_")
    cur.take("max_pool_2", nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
    for name, width, down, plain in _LEVELS:
        for j in range(int(down) + plain):
            stride = 2 if (down and j == 0) else 1
            conv_affine(f"{name}.{j}.conv1", width, 3, stride, 1 if stride == 1 else 0)
            cur.take("relu_")
            conv_affine(f"{name}.{j}.conv2", width, 3, 1, 1)
            if stride == 2:
                cur.take("avg_pool_2", nr=2, nc=2, stride_y=2, stride_x=2, padding_y=0,
                         padding_x=0)
            cur.take("add_prev_")
            cur.take("relu_")
    cur.take("avg_pool_2", nr=0, nc=0)
    fc = cur.take("fc_2", num_outputs=128, num_inputs=256, bias_mode=1)
    state["fc.weight"] = torch.from_numpy(np.ascontiguousarray(fc.tensors["weight"].T))
    if cur.i != len(net.layers):
        raise CheckpointError(f"{source}: {len(net.layers) - cur.i} unexpected extra layers")
    if net.input.get("mean") is not None:
        means = np.asarray(net.input["mean"])
        if not np.allclose(means, DLIB_RESNET_CONFIG.mean, atol=1e-3) or net.input["nr"] != 150:
            raise CheckpointError(f"{source}: input layer {net.input} differs from the config")
    return state


@functools.lru_cache(maxsize=4)
def _cached_state(path: str, size: int, mtime_ns: int) -> dict[str, torch.Tensor]:
    return dlib_network_to_state_dict(parse_dlib_dat(path), path)


def _shared_dlib_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    p = Path(path).resolve()
    st = p.stat()
    return _cached_state(str(p), st.st_size, st.st_mtime_ns)


def load_dlib_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Parse a dlib ``.dat`` into a :class:`DlibResNet` state dict (parsed once per file in
    the process; callers get their own copies)."""
    return {k: v.clone() for k, v in _shared_dlib_state(path).items()}


@register_backbone("dlib-resnet", DLIB_RESNET_CONFIG)
def _dlib_resnet(config: PretrainedConfig) -> DlibResNet:
    return DlibResNet(config)

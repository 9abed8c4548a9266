"""FaceNet (Inception-ResNet-v1) with parameter names compatible with facenet-pytorch's
published state dicts (``20180402-114759-vggface2.pt``, ``20180408-102900-casia-webface.pt``).

Input: 160x160 RGB, ``(x - 127.5) / 128``; output: L2-normalised 512-d embedding. The
classifier ``logits.*`` tensors of the published files are dropped on load.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from siamface.backbones.base import Backbone
from siamface.backbones.config import PretrainedConfig
from siamface.backbones.pretrained import FACENET_CASIA_CONFIG, FACENET_VGGFACE2_CONFIG
from siamface.backbones.registry import register_backbone
from siamface.backbones.weights import load_state_dict_file
from siamface.errors import CheckpointError

__all__ = ["FACENET_CASIA_CONFIG", "FACENET_VGGFACE2_CONFIG", "InceptionResNetV1"]

class BasicConv2d(nn.Module):
    """conv (no bias) + batch norm (eps 1e-3, as in TensorFlow) + relu."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _branch(*convs: tuple) -> nn.Module:
    layers = [BasicConv2d(*c) for c in convs]
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


class InceptionResidual(nn.Module):
    """Parallel branches, concatenated, projected by a 1x1 conv (``conv2d``), scaled and added
    to the input; relu unless ``relu=False`` (Block35 / Block17 / Block8)."""

    def __init__(self, channels: int, branches: list[list[tuple]], scale: float,
                 relu: bool = True):
        super().__init__()
        width = 0
        for i, convs in enumerate(branches):
            setattr(self, f"branch{i}", _branch(*convs))
            width += convs[-1][1]
        self.num_branches = len(branches)
        self.conv2d = nn.Conv2d(width, channels, 1)
        self.scale = scale
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], 1)
        out = self.conv2d(out) * self.scale + x
        return F.relu(out) if self.relu else out


class Reduction(nn.Module):
    """Strided conv branches plus a 3x3/2 max pool, concatenated (Mixed_6a / Mixed_7a)."""

    def __init__(self, branches: list[list[tuple]]):
        super().__init__()
        for i, convs in enumerate(branches):
            setattr(self, f"branch{i}", _branch(*convs))
        setattr(self, f"branch{len(branches)}", nn.MaxPool2d(3, stride=2))
        self.num_branches = len(branches) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], 1)


def block35(scale: float = 0.17) -> InceptionResidual:
    return InceptionResidual(256, [
        [(256, 32, 1)],
        [(256, 32, 1), (32, 32, 3, 1, 1)],
        [(256, 32, 1), (32, 32, 3, 1, 1), (32, 32, 3, 1, 1)],
    ], scale)


def block17(scale: float = 0.10) -> InceptionResidual:
    return InceptionResidual(896, [
        [(896, 128, 1)],
        [(896, 128, 1), (128, 128, (1, 7), 1, (0, 3)), (128, 128, (7, 1), 1, (3, 0))],
    ], scale)


def block8(scale: float = 0.20, relu: bool = True) -> InceptionResidual:
    return InceptionResidual(1792, [
        [(1792, 192, 1)],
        [(1792, 192, 1), (192, 192, (1, 3), 1, (0, 1)), (192, 192, (3, 1), 1, (1, 0))],
    ], scale, relu)


class InceptionResNetV1(Backbone):
    """Inception-ResNet-v1 FaceNet (512-d, L2-normalised)."""

    def __init__(self, config: PretrainedConfig = FACENET_VGGFACE2_CONFIG,
                 dropout: float = 0.6):
        super().__init__(config)
        self.conv2d_1a = BasicConv2d(3, 32, 3, 2)
        self.conv2d_2a = BasicConv2d(32, 32, 3, 1)
        self.conv2d_2b = BasicConv2d(32, 64, 3, 1, 1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.conv2d_4b = BasicConv2d(192, 256, 3, 2)
        self.repeat_1 = nn.Sequential(*[block35() for _ in range(5)])
        self.mixed_6a = Reduction([
            [(256, 384, 3, 2)],
            [(256, 192, 1), (192, 192, 3, 1, 1), (192, 256, 3, 2)],
        ])
        self.repeat_2 = nn.Sequential(*[block17() for _ in range(10)])
        self.mixed_7a = Reduction([
            [(896, 256, 1), (256, 384, 3, 2)],
            [(896, 256, 1), (256, 256, 3, 2)],
            [(896, 256, 1), (256, 256, 3, 1, 1), (256, 256, 3, 2)],
        ])
        self.repeat_3 = nn.Sequential(*[block8() for _ in range(5)])
        self.block8 = block8(scale=1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, config.embedding_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(config.embedding_dim, eps=1e-3, momentum=0.1)

    def _stem(self) -> list[nn.Module]:
        return [self.conv2d_1a, self.conv2d_2a, self.conv2d_2b, self.maxpool_3a,
                self.conv2d_3b, self.conv2d_4a, self.conv2d_4b]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self._stem():
            x = m(x)
        x = self.block8(self.repeat_3(self.mixed_7a(self.repeat_2(self.mixed_6a(
            self.repeat_1(x))))))
        x = self.dropout(self.avgpool_1a(x).flatten(1))
        return F.normalize(self.last_bn(self.last_linear(x)), p=2, dim=1)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return [
            ("stem", self._stem()),
            ("repeat_1", [self.repeat_1]),
            ("mixed_6a", [self.mixed_6a]),
            ("repeat_2", [self.repeat_2]),
            ("mixed_7a", [self.mixed_7a]),
            ("repeat_3", [self.repeat_3]),
            ("block8", [self.block8]),
            ("head", [self.last_linear, self.last_bn]),
        ]

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a facenet-pytorch state dict (``.pt``, ``weights_only``) or ``.safetensors``;
        classifier ``logits.*`` tensors are ignored, anything else must match exactly."""
        state = {k: v for k, v in load_state_dict_file(path).items()
                 if not k.startswith("logits.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise CheckpointError(
                f"{Path(path)} is not an Inception-ResNet-v1 (facenet-pytorch) state dict: "
                f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
                f"{unexpected[:5]}"
            )


@register_backbone("facenet", FACENET_VGGFACE2_CONFIG)
def _facenet(config: PretrainedConfig) -> InceptionResNetV1:
    return InceptionResNetV1(config)


@register_backbone("facenet-casia-webface", FACENET_CASIA_CONFIG)
def _facenet_casia(config: PretrainedConfig) -> InceptionResNetV1:
    return InceptionResNetV1(config)

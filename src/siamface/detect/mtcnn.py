"""The MTCNN face detector (Zhang et al. 2016): P-Net over an image pyramid, then R-Net and
O-Net over the surviving candidates, batched over images; the networks in PyTorch.

The algorithm follows facenet-pytorch's ``detect_face`` (itself a port of the Matlab code):
the same pyramid, thresholds, regression and non-maximum suppression conventions, with two
differences: crops that reach past the image border are padded with zeros as in the Matlab
original (facenet-pytorch clips them, which distorts them), and everything after P-Net is
vectorised: the crops of all images are resampled at once from integral images, and
classified in cache-sized chunks. Everything but the network calls is the numpy code of
:mod:`siamface.detect.cascade`, which the ONNX runtime shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from siamface.detect.cascade import (
    CROPS_PER_CALL,
    PNET_PIXELS_PER_CALL,
    Cascade,
    Detections,
    in_chunks,
    pyramid_scales,
)
from siamface.detect.nets import ONet, PNet, RNet, load_networks

__all__ = ["MTCNN", "Detections", "numpy_logits", "pyramid_scales"]


def numpy_logits(logits: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
                 ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A torch network's ``logits`` as a function of float32 numpy crops (channels-last
    tensors inside, inference mode), for :func:`siamface.detect.cascade.in_chunks`."""
    def run(x: np.ndarray) -> list[np.ndarray]:
        t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return [o.numpy() for o in logits(t)]
    return run


class MTCNN(Cascade):
    """Multi-task cascaded CNN face detector with the original MTCNN weights, in PyTorch.

    ``min_face_size`` is the smallest face (pixels) searched for, ``factor`` the ratio
    between pyramid levels, ``thresholds`` the face-probability thresholds of P-Net, R-Net and
    O-Net, and images whose long side exceeds ``max_side`` are shrunk to it for detection
    (results are mapped back to the original pixels). The networks are loaded once per
    process and shared by all instances.
    """

    def __init__(
        self,
        min_face_size: float = 20,
        factor: float = 0.709,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        max_side: int = 1024,
    ) -> None:
        super().__init__(min_face_size, factor, thresholds, max_side)
        self.pnet: PNet
        self.rnet: RNet
        self.onet: ONet
        self.pnet, self.rnet, self.onet = load_networks()

    def run_pnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_call = max(1, PNET_PIXELS_PER_CALL // (x.shape[2] * x.shape[3]))
        return in_chunks(numpy_logits(self.pnet.logits), x, per_call)  # type: ignore[return-value]

    def run_rnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return in_chunks(numpy_logits(self.rnet.logits), x, CROPS_PER_CALL[0])  # type: ignore[return-value]

    def run_onet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return in_chunks(numpy_logits(self.onet.logits), x, CROPS_PER_CALL[1])  # type: ignore[return-value]

"""Tests of siamface.detect: weight conversion, the three networks against reference modules
loaded with facenet-pytorch's state dicts, the box math against slow reference loops, and the
whole detector on real LFW faces (also against a port of facenet-pytorch's detect_face)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import lfw_image
from siamface.detect import MTCNN, Detections, cascade
from siamface.detect.boxes import (
    crop_windows,
    integral_images,
    nms,
    pairwise_overlap,
    resample_crops,
    square_boxes,
)
from siamface.detect.mtcnn import pyramid_scales
from siamface.detect.nets import NET_NAMES, keras_to_state_dict, load_keras_weights, load_networks
from siamface.errors import ConfigError, ImageDecodeError

# --------------------------------------------------------------------------------------------
# Reference networks: the Caffe layout and forward of facenet-pytorch's models/mtcnn.py
# (two-way softmax heads, dense inputs flattened in width, height, channel order).


class RefPNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RefRNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class RefONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


REFERENCE_CLASSES = {"pnet": RefPNet, "rnet": RefRNet, "onet": RefONet}


@pytest.fixture(scope="module")
def reference_state(facenet_pytorch_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: torch.load(facenet_pytorch_dir / "data" / f"{name}.pt", weights_only=True)
        for name in NET_NAMES
    }


@pytest.fixture(scope="module")
def reference_nets(reference_state) -> dict[str, nn.Module]:
    nets = {}
    for name, cls in REFERENCE_CLASSES.items():
        net = cls()
        net.load_state_dict(reference_state[name])
        nets[name] = net.eval()
    return nets


# --------------------------------------------------------------------------------------------
# Weights and networks


@pytest.mark.weights
@pytest.mark.parametrize("name", NET_NAMES)
def test_keras_weights_convert_to_facenet_state_dict(name, reference_state):
    ours = keras_to_state_dict(name, load_keras_weights(name))
    theirs = reference_state[name]
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
        assert torch.equal(ours[key], value.float()), key


@pytest.mark.weights
def test_networks_match_reference(reference_nets):
    pnet, rnet, onet = load_networks()
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        x = torch.rand(3, 3, 37, 53, generator=gen) * 2 - 1
        reg, prob = pnet(x)
        ref_reg, ref_prob = reference_nets["pnet"](x)
        assert reg.shape == ref_reg.shape == (3, 4, 14, 22)
        assert (reg - ref_reg).abs().max() < 1e-4
        assert (prob - ref_prob[:, 1]).abs().max() < 1e-4

        x = torch.rand(17, 3, 24, 24, generator=gen) * 2 - 1
        reg, prob = rnet(x)
        ref_reg, ref_prob = reference_nets["rnet"](x)
        assert (reg - ref_reg).abs().max() < 1e-4
        assert (prob - ref_prob[:, 1]).abs().max() < 1e-4

        x = torch.rand(9, 3, 48, 48, generator=gen) * 2 - 1
        reg, marks, prob = onet(x)
        ref_reg, ref_marks, ref_prob = reference_nets["onet"](x)
        assert (reg - ref_reg).abs().max() < 1e-4
        assert (marks - ref_marks).abs().max() < 1e-4
        assert (prob - ref_prob[:, 1]).abs().max() < 1e-4
        # Random inputs alone could hide a swapped head; the outputs must really vary.
        assert prob.std() > 1e-3 and marks.std() > 1e-3


def test_networks_are_loaded_once():
    assert MTCNN().pnet is MTCNN().pnet
    assert not any(p.requires_grad for p in MTCNN().onet.parameters())


# --------------------------------------------------------------------------------------------
# Box math against slow reference loops


def reference_nms(boxes, scores, threshold, mode="union", plus_one=False):
    """Textbook greedy NMS, one box at a time."""
    boxes = boxes.tolist()
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    one = 1.0 if plus_one else 0.0
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + one)
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + one)
            inter = iw * ih
            area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)
            area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
            denom = min(area_a, area_b) if mode == "min" else area_a + area_b - inter
            if inter / denom > threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def random_boxes(n, gen, spread=60.0):
    xy = torch.rand(n, 2, generator=gen) * spread
    wh = torch.rand(n, 2, generator=gen) * 30 + 5
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("mode,plus_one", [("union", False), ("min", True), ("union", True)])
def test_nms_matches_greedy_loop(mode, plus_one):
    gen = torch.Generator().manual_seed(1)
    for trial in range(20):
        boxes = random_boxes(60, gen)
        scores = torch.rand(60, generator=gen)
        groups = torch.randint(0, 3, (60,), generator=gen)
        for threshold in (0.3, 0.5, 0.7):
            got = nms(boxes, scores, threshold, groups=groups, mode=mode, plus_one=plus_one)
            for g in range(3):
                members = (groups == g).nonzero().flatten()
                want = members[reference_nms(boxes[members], scores[members], threshold, mode,
                                             plus_one)]
                mine = got[groups[got] == g]
                assert mine.tolist() == want.tolist(), (trial, threshold, g)


def test_nms_edge_cases():
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.long
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.1]), 0.5).tolist() == [1, 2]
    # A chain: 0 suppresses 1, so 2 (overlapping only 1) survives.
    chain = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]])
    assert nms(chain, torch.tensor([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]


def test_pairwise_overlap_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [0, 0, 5, 5]])
    assert torch.allclose(pairwise_overlap(a, b), torch.tensor([[50 / 150, 25 / 100]]))
    assert torch.allclose(pairwise_overlap(a, b, "min"), torch.tensor([[0.5, 1.0]]))


def test_square_boxes_keeps_centre():
    boxes = torch.tensor([[10.0, 20, 30, 60], [0, 0, 8, 2]])
    sq = square_boxes(boxes)
    assert torch.allclose(sq[:, 2] - sq[:, 0], torch.tensor([40.0, 8]))
    assert torch.allclose(sq[:, 3] - sq[:, 1], torch.tensor([40.0, 8]))
    assert torch.allclose((sq[:, :2] + sq[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)


def test_resample_crops_matches_area_interpolation_with_zero_padding():
    gen = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (3, 41, 57), generator=gen, dtype=torch.uint8),
              torch.randint(0, 256, (3, 30, 25), generator=gen, dtype=torch.uint8)]
    windows = torch.tensor([[3, 4, 40, 39], [-5, -7, 20, 9], [10, 20, 33, 45], [0, 0, 57, 41],
                            [20, 25, 26, 30]])
    index = torch.tensor([0, 0, 1, 0, 1])
    table, meta = integral_images(images)
    sizes = torch.tensor([[41, 57], [30, 25]])
    for size in (24, 48):
        got = resample_crops(table, meta, index, windows, size, sizes, 127.5, 1 / 128)
        assert got.shape == (5, 3, size, size)
        got = got * 128 + 127.5
        for k, (x0, y0, x1, y1) in enumerate(windows.tolist()):
            image = images[int(index[k])].float()
            pad = F.pad(image, (max(0, -x0), max(0, x1 - image.shape[2]),
                                max(0, -y0), max(0, y1 - image.shape[1])))
            crop = pad[:, y0 - min(0, y0):y1 - min(0, y0), x0 - min(0, x0):x1 - min(0, x0)]
            assert crop.shape[1:] == (y1 - y0, x1 - x0)
            want = F.interpolate(crop[None], size=(size, size), mode="area")[0]
            assert (got[k] - want).abs().max() < 1e-3, (k, size)


def test_resample_crops_in_steps_equals_one_window_at_a_time():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (90, 70, 3), dtype=np.uint8),
              rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    table, meta = cascade.integral_images(images)
    sizes = np.array([[90, 70], [64, 64]])
    corner = rng.integers(-20, 60, (300, 2))
    side = rng.integers(5, 80, (300, 1))
    windows = np.concatenate([corner, corner + side], axis=1)
    index = rng.integers(0, 2, 300)
    for size in (24, 48):  # several steps of the chunked loop at both sizes
        many = cascade.resample_crops(table, meta, index, windows, size, sizes, 127.5, 1 / 128)
        assert many.shape == (300, 3, size, size)
        for k in (0, 1, 68, 69, 150, 299):
            one = cascade.resample_crops(table, meta, index[k:k + 1], windows[k:k + 1], size,
                                         sizes, 127.5, 1 / 128)
            assert np.array_equal(many[k:k + 1], one), (size, k)


def test_summed_area_tables_are_exact_in_both_integer_widths():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
    want = np.zeros((3, 38, 54, 3), np.int64)
    want[:, 1:, 1:] = images.astype(np.int64).cumsum(axis=1).cumsum(axis=2)
    for dtype in (np.int32, np.int64):
        got = cascade.stacked_integral(images, dtype)
        assert got.dtype == dtype and np.array_equal(got, want)
    mirrored = images[:, :, ::-1]  # a view that is not contiguous
    want[:, 1:, 1:] = mirrored.astype(np.int64).cumsum(axis=1).cumsum(axis=2)
    assert np.array_equal(cascade.stacked_integral(mirrored), want)


def test_area_pool_matches_adaptive_average_pooling():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (40, 61, 47, 3), dtype=np.uint8)
    table = cascade.stacked_integral(images)
    for height, width in ((40, 31), (13, 13), (61, 47)):  # several images per step, or one
        got = cascade.area_pool(table, height, width, 127.5, 1 / 128)
        assert got.shape == (40, 3, height, width)
        want = F.adaptive_avg_pool2d(torch.from_numpy(images).permute(0, 3, 1, 2).double(),
                                     (height, width)).numpy()
        assert np.abs(got * 128 + 127.5 - want).max() < 1e-3, (height, width)


def test_nms_with_groups_of_very_different_sizes():
    gen = torch.Generator().manual_seed(6)
    counts = [1, 2, 3, 7, 16, 40, 130]  # several size classes of the padded blocks
    groups = torch.cat([torch.full((c,), g) for g, c in enumerate(counts)])
    groups = groups[torch.randperm(len(groups), generator=gen)]
    boxes = random_boxes(len(groups), gen)
    scores = torch.rand(len(groups), generator=gen)
    got = nms(boxes, scores, 0.4, groups=groups)
    want = []
    for g in range(len(counts)):
        members = (groups == g).nonzero().flatten()
        want += members[reference_nms(boxes[members], scores[members], 0.4)].tolist()
    assert got.tolist() == want


def test_crop_windows_follow_matlab_convention():
    boxes = torch.tensor([[10.7, 20.2, 40.9, 50.5], [-3.5, -0.5, 12.0, 15.2]])
    assert crop_windows(boxes).tolist() == [[9, 19, 40, 50], [-4, -1, 12, 15]]


def test_pyramid_scales():
    scales = pyramid_scales(250, 250, 20, 0.709)
    assert len(scales) == 8 and math.isclose(scales[0], 0.6)
    assert all(math.isclose(b / a, 0.709) for a, b in itertools.pairwise(scales))
    assert min(250, 250) * scales[-1] >= 12 > min(250, 250) * scales[-1] * 0.709
    assert pyramid_scales(10, 300, 20, 0.709) == []


# --------------------------------------------------------------------------------------------
# A plain port of facenet-pytorch's detect_face (one image; crops clipped to the image, as
# there), on the reference networks, used to check the whole vectorised detector.


def reference_detect(image: np.ndarray, nets, minsize=20, thresholds=(0.6, 0.7, 0.7),
                     factor=0.709):
    def grouped_nms(boxes, scores, threshold, mode="union", plus_one=False):
        return torch.tensor(reference_nms(boxes, scores, threshold, mode, plus_one),
                            dtype=torch.long)

    def bbreg(boxes, reg):
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        return boxes + reg * torch.stack([w, h, w, h], dim=1)

    def rerec(boxes):
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        side = torch.maximum(w, h)
        x1, y1 = boxes[:, 0] + w * 0.5 - side * 0.5, boxes[:, 1] + h * 0.5 - side * 0.5
        return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)

    def crops(img, boxes, size):
        h, w = img.shape[1:]
        out = []
        for x1, y1, x2, y2 in torch.trunc(boxes).int().tolist():
            x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
            out.append(F.interpolate(img[None, :, y1 - 1:y2, x1 - 1:x2], size=(size, size),
                                     mode="area"))
        return (torch.cat(out) - 127.5) * 0.0078125

    img = torch.from_numpy(image).permute(2, 0, 1).float()
    h, w = img.shape[1:]
    all_boxes, all_reg, all_scores = [], [], []
    scale = 12.0 / minsize
    short = min(h, w) * scale
    while short >= 12:
        im = F.interpolate(img[None], size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
        reg, probs = nets["pnet"]((im - 127.5) * 0.0078125)
        prob = probs[0, 1]
        ys, xs = (prob >= thresholds[0]).nonzero(as_tuple=True)
        bb = torch.stack([xs, ys], dim=1).float()
        boxes = torch.cat([((2 * bb + 1) / scale).floor(), ((2 * bb + 12) / scale).floor()], 1)
        scores, regs = prob[ys, xs], reg[0][:, ys, xs].T
        pick = grouped_nms(boxes, scores, 0.5)
        all_boxes.append(boxes[pick]), all_reg.append(regs[pick]), all_scores.append(scores[pick])
        scale, short = scale * factor, short * factor
    boxes, reg, scores = torch.cat(all_boxes), torch.cat(all_reg), torch.cat(all_scores)
    pick = grouped_nms(boxes, scores, 0.7)
    boxes, reg = boxes[pick], reg[pick]
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    boxes = rerec(boxes + reg * wh)

    reg, probs = nets["rnet"](crops(img, boxes, 24))
    ok = probs[:, 1] > thresholds[1]
    boxes, scores, reg = boxes[ok], probs[ok, 1], reg[ok]
    pick = grouped_nms(boxes, scores, 0.7)
    boxes = rerec(bbreg(boxes[pick], reg[pick]))

    reg, marks, probs = nets["onet"](crops(img, boxes, 48))
    ok = probs[:, 1] > thresholds[2]
    boxes, scores, reg, marks = boxes[ok], probs[ok, 1], reg[ok], marks[ok]
    wh = boxes[:, 2:] - boxes[:, :2] + 1
    points = torch.stack([wh[:, None, 0] * marks[:, :5] + boxes[:, None, 0] - 1,
                          wh[:, None, 1] * marks[:, 5:] + boxes[:, None, 1] - 1], dim=2)
    boxes = bbreg(boxes, reg)
    pick = grouped_nms(boxes, scores, 0.7, "min", True)
    return boxes[pick].numpy(), scores[pick].numpy(), points[pick].numpy()


LFW_SAMPLES = [("Aaron_Peirsol", 1), ("George_W_Bush", 10), ("Serena_Williams", 3),
               ("Colin_Powell", 5), ("Jennifer_Aniston", 2), ("Tony_Blair", 7)]


def load_lfw(lfw_dir: Path, name: str, index: int) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(lfw_image(lfw_dir, name, index)))
    assert bgr is not None, f"cannot read {name}_{index:04d}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="module")
def lfw_images(lfw_dir) -> list[np.ndarray]:
    return [load_lfw(lfw_dir, name, i) for name, i in LFW_SAMPLES]


@pytest.mark.lfw
def test_detects_centred_face_with_plausible_landmarks(lfw_images):
    detector = MTCNN()
    for (name, _), image in zip(LFW_SAMPLES, lfw_images):
        found = detector.detect(image)
        assert isinstance(found, Detections) and len(found) >= 1, name
        assert found.boxes.dtype == found.scores.dtype == found.landmarks.dtype == np.float32
        assert found.boxes.shape[1:] == (4,) and found.landmarks.shape[1:] == (5, 2)
        assert np.all(np.diff(found.scores) <= 0)
        # The LFW face is the one nearest the centre; it is large and confident.
        centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
        k = int(np.argmin(np.linalg.norm(centres - 125, axis=1)))
        (x1, y1, x2, y2), marks = found.boxes[k], found.landmarks[k]
        assert np.linalg.norm(centres[k] - 125) < 30, name
        assert 60 < x2 - x1 < 160 and 60 < y2 - y1 < 200, name
        assert found.scores[k] > 0.95, name
        assert np.all((marks >= found.boxes[k, :2]) & (marks <= found.boxes[k, 2:])), name
        left_eye, right_eye, nose, mouth_left, mouth_right = marks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], name
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1]), name


@pytest.mark.lfw
@pytest.mark.weights
def test_matches_facenet_pytorch_algorithm(lfw_images, reference_nets):
    detector = MTCNN()
    with torch.inference_mode():
        for (name, _), image in zip(LFW_SAMPLES, lfw_images):
            ours = detector.detect(image)
            boxes, scores, points = reference_detect(image, reference_nets)
            # Crops past the border differ on purpose (zero-padded here, clipped there), so
            # compare the detections that lie inside the image; they must be the same.
            inside = np.all((boxes[:, :2] >= 1) & (boxes[:, 2:] <= 249), axis=1)
            mine = np.all((ours.boxes[:, :2] >= 1) & (ours.boxes[:, 2:] <= 249), axis=1)
            assert inside.sum() == mine.sum() >= 1, name
            np.testing.assert_allclose(ours.boxes[mine], boxes[inside], atol=0.05, err_msg=name)
            np.testing.assert_allclose(ours.scores[mine], scores[inside], atol=1e-4)
            np.testing.assert_allclose(ours.landmarks[mine], points[inside], atol=0.05)


@pytest.mark.lfw
def test_batch_equals_single_and_handles_mixed_sizes(lfw_images):
    detector = MTCNN()
    mixed = list(lfw_images) + [lfw_images[0][20:200, 10:240], np.zeros((30, 30, 3), np.uint8)]
    batched = detector.detect_batch(mixed)
    assert len(batched) == len(mixed)
    for image, got in zip(mixed, batched):
        single = detector.detect(image)
        assert len(single) == len(got)
        np.testing.assert_allclose(got.boxes, single.boxes, atol=1e-3)
        np.testing.assert_allclose(got.landmarks, single.landmarks, atol=1e-3)
    assert len(batched[-1]) == 0 and batched[-1].landmarks.shape == (0, 5, 2)
    # The cropped copy finds the same face, shifted by the crop offset.
    shift = np.array([10, 20, 10, 20], np.float32)
    assert np.abs(batched[-2].boxes[0] + shift - batched[0].boxes[0]).max() < 3
    assert detector.detect(mixed[:2])[1].boxes.shape == batched[1].boxes.shape


@pytest.mark.lfw
def test_large_images_are_shrunk_and_mapped_back(lfw_images):
    import cv2

    image = lfw_images[1]
    big = cv2.resize(image, (1000, 1000), interpolation=cv2.INTER_CUBIC)
    detector = MTCNN(max_side=250)
    small = detector.detect(image)
    large = detector.detect(big)
    assert len(large) >= 1
    np.testing.assert_allclose(large.boxes[0], small.boxes[0] * 4, atol=8)
    np.testing.assert_allclose(large.landmarks[0], small.landmarks[0] * 4, atol=8)


def test_empty_and_tiny_images():
    detector = MTCNN()
    assert len(detector.detect(np.zeros((5, 400, 3), np.uint8))) == 0
    assert len(detector.detect(np.full((120, 90, 3), 128, np.uint8))) == 0
    assert detector.detect_batch([]) == []


def test_invalid_input_errors():
    detector = MTCNN()
    with pytest.raises(ImageDecodeError, match="uint8"):
        detector.detect(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ImageDecodeError, match=r"\(H, W, 3\)"):
        detector.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(ImageDecodeError, match="numpy array"):
        detector.detect_batch(["face.jpg"])
    with pytest.raises(ConfigError, match="thresholds"):
        MTCNN(thresholds=(0.6, 0.7))
    with pytest.raises(ConfigError, match="factor"):
        MTCNN(factor=1.5)
    with pytest.raises(ConfigError, match="min_face_size"):
        MTCNN(min_face_size=5)

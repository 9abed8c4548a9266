"""Derive the MTCNN 5-point template of dlib's 150 px face chips, and check it.

dlib's face-recognition ResNet expects ``dlib.get_face_chip(img, shape, size=150,
padding=0.25)`` of dlib's 5-point landmarks. Our pipeline has MTCNN landmarks instead, so the
template they must be sent to is measured: take dlib's chips of LFW faces (frontal detector +
shape_predictor_5 + get_face_chip), run our MTCNN on each chip, and take the per-coordinate
median of the landmarks. The fit's point weights (dlib aligns on eyes and nose only) are then
chosen on the same faces by a small grid search minimising the chip-corner distance below.

The check (``--check N``) runs on other LFW images: for each face, where do the four chip
corners land in the original image under dlib's chip (``get_face_chip_details``: ``rect``
rotated by ``angle`` about its centre) and under the inverse of our similarity transform
(MTCNN landmarks on the original image -> template)? It reports the median distance.

Usage (from the repository root):
    PYTHONPATH=src .venv/bin/python scripts/derive_dlib_template.py --faces 400 --check 500
Needs dlib (dlib-bin, dev extra) and face_recognition_models (shape_predictor_5).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siamface.align import (
    DLIB_150_TEMPLATE,
    FaceTemplate,
    invert_affine,
    similarity_transform,
    transform_points,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"
CHIP_SIZE = 150
CHIP_PADDING = 0.25
BATCH = 32


@dataclass
class DlibFace:
    """One LFW image with the face dlib sees nearest its centre."""

    path: Path
    image: np.ndarray
    shape: object  # dlib.full_object_detection
    center: np.ndarray  # centre of dlib's detection rectangle


class DlibReference:
    """dlib's frontal detector, 5-point shape predictor and face chips."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )

    def face(self, path: Path) -> DlibFace | None:
        """The detected face nearest the image centre, or None when dlib finds none."""
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        rects = self.detector(image, 1)
        if len(rects) == 0:
            return None
        h, w = image.shape[:2]
        centres = np.array([[(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2] for r in rects])
        best = int(np.argmin(np.hypot(centres[:, 0] - (w - 1) / 2, centres[:, 1] - (h - 1) / 2)))
        shape = self.predictor(image, rects[best])
        return DlibFace(path, image, shape, centres[best])

    def chip(self, face: DlibFace) -> np.ndarray:
        return self.dlib.get_face_chip(face.image, face.shape, size=CHIP_SIZE, padding=CHIP_PADDING)

    def chip_corners(self, face: DlibFace) -> np.ndarray:
        """Where the chip's corner pixels (0,0), (S-1,0), (0,S-1), (S-1,S-1) lie in the image."""
        d = self.dlib.get_face_chip_details(face.shape, CHIP_SIZE, CHIP_PADDING)
        r = d.rect
        cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
        rect = np.array(
            [[r.left(), r.top()], [r.right(), r.top()], [r.left(), r.bottom()], [r.right(), r.bottom()]]
        )
        c, s = np.cos(d.angle), np.sin(d.angle)
        rel = rect - [cx, cy]
        return np.stack([cx + c * rel[:, 0] - s * rel[:, 1], cy + s * rel[:, 0] + c * rel[:, 1]], 1)


CHIP_CORNERS = np.array(
    [[0, 0], [CHIP_SIZE - 1, 0], [0, CHIP_SIZE - 1], [CHIP_SIZE - 1, CHIP_SIZE - 1]], dtype=float
)


def lfw_sample(lfw_dir: Path, count: int, seed: int = 0, skip: int = 0) -> list[Path]:
    """``count`` LFW images in a fixed random order, after the first ``skip`` of that order (so
    the derivation and the check can use disjoint images)."""
    paths = sorted((lfw_dir / "images").glob("*/*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no LFW images under {lfw_dir / 'images'}")
    order = np.random.default_rng(seed).permutation(len(paths))
    return [paths[i] for i in order[skip : skip + count]]


def _nearest(detections, point: np.ndarray) -> int | None:
    boxes = np.asarray(detections.boxes, dtype=float).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return int(np.argmin(np.hypot(*(centres - point).T)))


def _detect(mtcnn, images: list[np.ndarray]) -> list:
    out = []
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        if hasattr(mtcnn, "detect_batch"):
            out.extend(mtcnn.detect_batch(batch))
        else:
            out.extend(mtcnn.detect(batch))
    return out


def collect_faces(reference: DlibReference, paths: list[Path], count: int) -> list[DlibFace]:
    """The first ``count`` of ``paths`` in which dlib finds a face."""
    faces = []
    for path in paths:
        face = reference.face(path)
        if face is not None:
            faces.append(face)
            if len(faces) == count:
                break
    return faces


def chip_landmarks(reference: DlibReference, mtcnn, faces: list[DlibFace]) -> np.ndarray:
    """MTCNN landmarks (M, 5, 2) on dlib's chips of ``faces`` (faces MTCNN misses are dropped)."""
    chips = [reference.chip(f) for f in faces]
    centre = np.array([(CHIP_SIZE - 1) / 2] * 2)
    found = []
    for det in _detect(mtcnn, chips):
        k = _nearest(det, centre)
        if k is not None:
            found.append(np.asarray(det.landmarks, dtype=float)[k])
    return np.asarray(found).reshape(-1, 5, 2)


def derive_template(reference: DlibReference, mtcnn, faces: list[DlibFace]) -> tuple[np.ndarray, int]:
    """Per-coordinate median of the chip landmarks, and how many faces it rests on."""
    landmarks = chip_landmarks(reference, mtcnn, faces)
    if len(landmarks) == 0:
        raise RuntimeError("MTCNN found no face in any dlib chip")
    return np.median(landmarks, axis=0), len(landmarks)


def image_landmarks(
    reference: DlibReference, mtcnn, faces: list[DlibFace]
) -> tuple[np.ndarray, np.ndarray]:
    """MTCNN landmarks (M, 5, 2) on the original images (the face nearest dlib's) and dlib's
    chip corners (M, 4, 2) there; faces MTCNN misses are dropped."""
    landmarks, corners = [], []
    for face, det in zip(faces, _detect(mtcnn, [f.image for f in faces])):
        k = _nearest(det, face.center)
        if k is not None:
            landmarks.append(np.asarray(det.landmarks, dtype=float)[k])
            corners.append(reference.chip_corners(face))
    return np.asarray(landmarks).reshape(-1, 5, 2), np.asarray(corners).reshape(-1, 4, 2)


def corner_errors(
    landmarks: np.ndarray, corners: np.ndarray, points: np.ndarray, weights=None
) -> np.ndarray:
    """(M, 4) distances in original-image pixels between dlib's chip corners and where the
    inverse of our similarity (landmarks -> template points) sends the chip's corners."""
    out = []
    for lm, dlib_corners in zip(landmarks, corners):
        to_chip = similarity_transform(lm, points, weights)
        ours = transform_points(invert_affine(to_chip), CHIP_CORNERS)
        out.append(np.hypot(*(ours - dlib_corners).T))
    return np.asarray(out).reshape(-1, 4)


def corner_distances(
    reference: DlibReference, mtcnn, faces: list[DlibFace], template: FaceTemplate
) -> np.ndarray:
    """(M, 4) chip-corner distances of ``template`` (with its weights) on ``faces``."""
    landmarks, corners = image_landmarks(reference, mtcnn, faces)
    tmpl = template.scaled(CHIP_SIZE)
    return corner_errors(landmarks, corners, tmpl.as_array(), tmpl.weights)


NOSE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
MOUTH_WEIGHTS = (0.0, 0.05, 0.1, 0.2)


def fit_weights(landmarks: np.ndarray, corners: np.ndarray, points: np.ndarray) -> tuple:
    """Point weights (eyes 1, nose n, mouth m each) with the least median corner distance."""
    best = None
    for n in NOSE_WEIGHTS:
        for m in MOUTH_WEIGHTS:
            weights = (1.0, 1.0, n, m, m)
            err = float(np.median(corner_errors(landmarks, corners, points, weights)))
            if best is None or err < best[0]:
                best = (err, weights)
    return best[1]


def format_template(points: np.ndarray, faces: int, weights: tuple) -> str:
    rows = "\n".join(f"        ({x:.2f}, {y:.2f})," for x, y in points)
    return (f"    points=(\n{rows}\n    ),  # per-point median over {faces} faces\n"
            f"    weights={tuple(float(w) for w in weights)},")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder")
    parser.add_argument("--faces", type=int, default=400, help="faces to derive from (0: skip)")
    parser.add_argument("--check", type=int, default=500, help="faces to check on (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from siamface.detect import MTCNN

    mtcnn = MTCNN()
    reference = DlibReference()
    template = DLIB_150_TEMPLATE
    pool = lfw_sample(args.lfw, 4 * (args.faces + args.check) + 100, seed=args.seed)
    derive_pool, check_pool = pool[: 2 * args.faces + 50], pool[2 * args.faces + 50 :]
    if args.faces:
        faces = collect_faces(reference, derive_pool, args.faces)
        points, used = derive_template(reference, mtcnn, faces)
        landmarks = chip_landmarks(reference, mtcnn, faces)
        spread = np.median(np.hypot(*(landmarks - points).transpose(2, 0, 1)), axis=0)
        print(f"dlib faces: {len(faces)}, MTCNN found a face in {used} chips")
        print("median distance of each face's landmark to the template (px):",
              np.round(spread, 2).tolist())
        weights = fit_weights(*image_landmarks(reference, mtcnn, faces), points)
        print(format_template(points, used, weights))
        template = FaceTemplate(
            "derived", CHIP_SIZE, tuple(map(tuple, points)), "this run", weights=weights
        )
    if args.check:
        faces = collect_faces(reference, check_pool, args.check)
        dist = corner_distances(reference, mtcnn, faces, template)
        per_face = dist.mean(axis=1)
        print(f"template {template.name}: check on {len(dist)} faces (of {len(faces)} dlib faces, images disjoint from "
              f"the derivation): chip-corner distance median {np.median(dist):.2f} px, "
              f"per-face mean-corner median {np.median(per_face):.2f} px, "
              f"90th percentile {np.percentile(per_face, 90):.2f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())

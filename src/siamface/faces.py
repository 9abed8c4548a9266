"""The face pipeline: detect, select one face, crop it to a chip, fall back when none is found.

``FacePipeline(crop=..., select=...)`` names its crop mode and selection rule; ``.params()``
describes everything that changes the chips, so caches can key on it.

Crop modes:
    ``aligned``  similarity transform from the face's 5 landmarks to a template (default).
    ``padded``   the face box grown by ``pad`` on each side, clipped, resized (no rotation).
    ``center``   no detection at all: the centred square of ``center_fraction`` of the short
                 side. Chips have ``detected=False`` and ``fallback=None`` (nothing failed).

Whatever the mode, an image in which no face is found gets the centre crop with
``detected=False`` and ``fallback="center-crop"``. Whether that crop is used as a face is the
``fallback_policy``'s call (no face, no verdict):
    ``auto``    (default) only when a face-presence check (MTCNN's three networks on the
                crop's region, ``siamface.detect.presence``) scores it at or above
                ``face_cutoff``; otherwise
                the face is absent (``no_face`` says why). ``crop="center"`` chips are checked
                the same way.
    ``always``  always, as for datasets of pre-cropped faces the detector may miss.
    ``never``   never: no detection, no face (``crop="center"`` chips are checked as in auto).
Every crop records ``face_score``: the detector's score for a detected face, the presence
check's for a fallback or centre crop.

``chip_restore`` (default ``siamface.chip_restore.DEFAULT_CHIP_RESTORE``) restores a chip a
gate finds damaged (a noisy one: a Gaussian blur as wide as the noise is strong; a rainy
one: a grey opening) before anyone embeds it; ``restored`` says so.

Selection rules (which face :meth:`FacePipeline.crop` keeps when there are several):
    ``largest``  the largest box.
    ``central``  the box whose centre is closest to the image centre.
    ``score``    area * exp(-d^2 / (2 sigma^2)), d the distance from the box centre to the image
                 centre and sigma = ``SCORE_SIGMA`` times the image diagonal: the largest of the
                 faces near the middle; a big face far off-centre loses to a central one.
    ``all``      every face; only :meth:`FacePipeline.crop_all` accepts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from siamface.align import (
    DLIB_150_TEMPLATE,
    TEMPLATES,
    FaceTemplate,
    center_crop,
    padded_crop,
    warp_affine,
)
from siamface.chip_restore import DEFAULT_CHIP_RESTORE, check_chip_restore, restore_chip
from siamface.detect.restore import DEFAULT_RETRIES, RETRIES
from siamface.errors import ConfigError, UnknownNameError
from siamface.io import DEFAULT_MAX_PIXELS, load_image

__all__ = [
    "CROP_MODES",
    "DEFAULT_FALLBACK_POLICY",
    "DEFAULT_SELECT",
    "FALLBACK_POLICIES",
    "SCORE_SIGMA",
    "SELECT_RULES",
    "FaceCrop",
    "FacePipeline",
    "rank_faces",
]

CROP_MODES = ("aligned", "padded", "center")
FALLBACK_POLICIES = ("auto", "always", "never")
DEFAULT_FALLBACK_POLICY = "auto"
SELECT_RULES = ("largest", "central", "score", "all")
# Chosen by benchmarks/bench_select.py (LFW View 2, 6,000 pairs, 10-fold, MTCNN + aligned
# dlib-resnet chips; 1,246 of the 7,701 images have 2+ faces): largest 97.93% +- 0.68,
# central 98.98% +- 0.41, score 98.98% +- 0.41 (score and central differ on 2 images).
# dlib's own pipeline on LFW: largest 98.25%, central 98.98%. "central" is the simpler winner.
DEFAULT_SELECT = "central"
SCORE_SIGMA = 0.15
CENTER_FALLBACK = "center-crop"
# What a detection retry must find to count (see _plausible): measured on LFW faces missed at
# severity 3-4 and 599 non-faces, retries found 285 faces (median box 35% of the short side)
# and 32 "faces" in non-faces (median 5%); these limits keep 143 of the faces and 1 non-face.
RETRY_MIN_SCORE = 0.9
RETRY_MIN_SIZE = 0.15


@dataclass(frozen=True)
class FaceCrop:
    """One chip and how it was made.

    ``box`` (x1, y1, x2, y2), ``landmarks`` (5, 2) and ``score`` are in the original image's
    pixels and are ``None`` when no face was used. ``crop`` and ``select`` are the pipeline's
    mode and rule; ``fallback`` names what was done instead when detection found nothing.
    ``face_score`` is the detector's score, or the face-presence check's for a fallback or
    centre crop. ``no_face`` is ``None`` when the chip is a face to use, else the reason it is
    not (the face is absent: no embedding, no gender, no verdict). ``detected_by`` is
    ``"detector"`` for a face the first detection found, the retry's name (``"clahe"``,
    ``"dehaze"``, ...: :mod:`siamface.detect.restore`) for one
    found on a restored copy, and ``None`` when no face was detected. ``restored`` names the
    chip restoration that changed the chip (:mod:`siamface.chip_restore`), or is ``None``.
    """

    chip: np.ndarray
    box: np.ndarray | None
    landmarks: np.ndarray | None
    score: float | None
    detected: bool
    crop: str
    select: str
    fallback: str | None = None
    face_score: float | None = None
    no_face: str | None = None
    detected_by: str | None = None
    restored: str | None = None

    @property
    def has_face(self) -> bool:
        return self.no_face is None


def _box_geometry(boxes: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Areas and distances from box centres to the image centre (pixel-centre convention)."""
    h, w = shape
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    heights = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 - (w - 1) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 - (h - 1) / 2
    return widths * heights, np.hypot(cx, cy)


def _rank_largest(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return _box_geometry(boxes, shape)[0]


def _rank_central(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return -_box_geometry(boxes, shape)[1]


def _rank_score(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    area, dist = _box_geometry(boxes, shape)
    sigma = SCORE_SIGMA * math.hypot(*shape)
    return area * np.exp(-(dist**2) / (2 * sigma**2))


_RANKERS: dict[str, Callable[[np.ndarray, tuple[int, int]], np.ndarray]] = {
    "largest": _rank_largest,
    "central": _rank_central,
    "score": _rank_score,
}


def rank_faces(boxes: np.ndarray, image_shape: tuple[int, ...], rule: str) -> np.ndarray:
    """Indices of ``boxes`` (K, 4) from the best face to the worst under ``rule``
    (``all`` keeps detector order). Ties keep the detector's order."""
    if rule not in SELECT_RULES:
        raise UnknownNameError("selection rule", rule, SELECT_RULES)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if rule == "all" or len(boxes) == 0:
        return np.arange(len(boxes))
    keys = _RANKERS[rule](boxes, (int(image_shape[0]), int(image_shape[1])))
    return np.argsort(-keys, kind="stable")


class FacePipeline:
    """Detect, select, crop. The detector (``siamface.detect.MTCNN()`` unless one is given) is
    only built on first use, and never for ``crop="center"``."""

    def __init__(
        self,
        crop: str = "aligned",
        select: str = DEFAULT_SELECT,
        chip_size: int = 150,
        template: FaceTemplate = DLIB_150_TEMPLATE,
        pad: float = 0.2,
        center_fraction: float = 0.8,
        detector: Any | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        fallback_policy: str = DEFAULT_FALLBACK_POLICY,
        face_cutoff: float | None = None,
        presence: Any | None = None,
        retries: Sequence[str] | None = None,
        chip_restore: Sequence[str] | None = None,
    ):
        if crop not in CROP_MODES:
            raise UnknownNameError("crop mode", crop, CROP_MODES)
        if select not in SELECT_RULES:
            raise UnknownNameError("selection rule", select, SELECT_RULES)
        if int(chip_size) <= 0:
            raise ConfigError(f"chip_size must be a positive integer, got {chip_size!r}")
        if not pad >= 0:
            raise ConfigError(f"pad must be >= 0 (a fraction of the box size), got {pad!r}")
        if not 0 < center_fraction <= 1:
            raise ConfigError(f"center_fraction must be in (0, 1], got {center_fraction!r}")
        if fallback_policy not in FALLBACK_POLICIES:
            raise UnknownNameError("fallback policy", fallback_policy, FALLBACK_POLICIES)
        if face_cutoff is not None and not 0.0 <= face_cutoff <= 1.0:
            raise ConfigError(f"face_cutoff must be in [0, 1], got {face_cutoff!r}")
        if int(max_pixels) <= 0:
            raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        retries = DEFAULT_RETRIES if retries is None else tuple(retries)
        for name in retries:
            if name not in RETRIES:
                raise UnknownNameError("detection retry", name, RETRIES)
        if len(set(retries)) != len(retries):
            raise ConfigError(f"detection retries must not repeat, got {list(retries)}")
        self.crop_mode = crop
        self.select = select
        self.chip_size = int(chip_size)
        self.template = template.scaled(self.chip_size)
        self.pad = float(pad)
        self.center_fraction = float(center_fraction)
        self.max_pixels = int(max_pixels)  # larger images are refused (not part of params())
        self._detector = detector
        self.fallback_policy = fallback_policy
        self._face_cutoff = face_cutoff
        self._presence = presence
        self.retries: tuple[str, ...] = tuple(retries)
        self.chip_restore: tuple[str, ...] = check_chip_restore(
            DEFAULT_CHIP_RESTORE if chip_restore is None else chip_restore)

    def __repr__(self) -> str:
        return (
            f"FacePipeline(crop={self.crop_mode!r}, select={self.select!r}, "
            f"chip_size={self.chip_size}, template={self.template.name!r}, "
            f"fallback_policy={self.fallback_policy!r}, retries={list(self.retries)}, "
            f"chip_restore={list(self.chip_restore)})"
        )

    @classmethod
    def for_backbone(cls, config: Any, *, crop: str | None = None,
                     select: str = DEFAULT_SELECT, **kwargs: Any) -> FacePipeline:
        """The pipeline a backbone's pretrained config asks for: its chip size, alignment
        template and crop mode (``crop`` overrides the mode)."""
        if config.template not in TEMPLATES:
            raise UnknownNameError("alignment template", config.template, sorted(TEMPLATES))
        return cls(crop=crop or config.crop, select=select, chip_size=config.input_size,
                   template=TEMPLATES[config.template], **kwargs)

    @property
    def detector(self) -> Any:
        """The face detector, built on first use."""
        if self._detector is None:
            from siamface.detect import MTCNN

            self._detector = MTCNN()
        return self._detector

    @property
    def presence(self) -> Any:
        """The face-presence check of fallback crops, built on first use."""
        if self._presence is None:
            from siamface.detect.presence import FacePresence

            self._presence = FacePresence()
        return self._presence

    @property
    def face_cutoff(self) -> float:
        """The presence score a fallback or centre crop needs to count as a face."""
        if self._face_cutoff is None:
            from siamface.detect.presence import DEFAULT_CUTOFF

            return float(DEFAULT_CUTOFF)
        return float(self._face_cutoff)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable description of everything that changes the chips."""
        out: dict[str, Any] = {
            "crop": self.crop_mode,
            "select": self.select,
            "chip_size": self.chip_size,
            "center_fraction": self.center_fraction,
        }
        if self.crop_mode == "aligned":
            out["template"] = self.template.to_dict()
        if self.crop_mode == "padded":
            out["pad"] = self.pad
        if self.crop_mode != "center":
            if self._detector is None:  # the default MTCNN, described without building it
                from siamface.detect.cascade import Cascade

                out["detector"] = {**_describe_detector(Cascade()), "name": "MTCNN"}
            else:
                out["detector"] = _describe_detector(self.detector)
            if self.retries:  # no key without retries: the same chips as before they existed
                from siamface.detect.restore import VERSION

                out["retries"] = list(self.retries)
                out["retries_version"] = VERSION
        if self.chip_restore:  # no key without: the same chips as before it existed
            from siamface.chip_restore import VERSION as CHIP_RESTORE_VERSION

            out["chip_restore"] = list(self.chip_restore)
            out["chip_restore_version"] = CHIP_RESTORE_VERSION
        out["fallback_policy"] = self.fallback_policy
        if self.fallback_policy != "always":
            out["face_cutoff"] = self.face_cutoff
        if self.fallback_policy != "never":  # the scores a fallback's face_score reports
            out["face_check"] = self.presence.describe()
        return out

    def crop(self, image: Any) -> FaceCrop:
        """Chip of the face chosen by the selection rule in one image source."""
        self._refuse_all()
        img = load_image(image, max_pixels=self.max_pixels)
        if self.crop_mode == "center":
            return self._center(img)
        (detections, by), = self.detect_with_retries([img])
        return self.crops_from_detections(img, detections, detected_by=by)[0]

    def crop_batch(self, images: Sequence[Any]) -> list[FaceCrop]:
        """:meth:`crop` for many image sources, detecting them as one batch."""
        self._refuse_all()
        imgs = [load_image(image, max_pixels=self.max_pixels) for image in images]
        if self.crop_mode == "center":
            return [self._center(img) for img in imgs]
        found = self.detect_with_retries(imgs)
        return [self.crops_from_detections(img, det, detected_by=by)[0]
                for img, (det, by) in zip(imgs, found)]

    def crop_all(self, image: Any) -> list[FaceCrop]:
        """Chips of every face, best first under the selection rule (detector order for
        ``all``); a single fallback chip when no face is found."""
        img = load_image(image, max_pixels=self.max_pixels)
        if self.crop_mode == "center":
            return [self._center(img)]
        (detections, by), = self.detect_with_retries([img])
        return self.crops_from_detections(img, detections, select="all", detected_by=by)

    def detect_with_retries(self, images: Sequence[np.ndarray]) -> list[tuple[Any, str | None]]:
        """(detections, detected_by) of each uint8 RGB image: the detector on all of them as
        one batch, then each retry of ``retries`` (in order) on a restored copy of those still
        without a face, batched too; ``detected_by`` is ``"detector"``, the retry's name, or
        None when no face was found. A retry costs nothing where the first pass found one."""
        from siamface.detect.restore import restore, retry_scale

        detections = _detect_many(self.detector, list(images))
        found_by: list[str | None] = ["detector" if len(_boxes(d)) else None
                                      for d in detections]
        for name in self.retries:
            missing = [i for i, by in enumerate(found_by) if by is None]
            copies = {i: restore(images[i], name) for i in missing}
            todo = [i for i in missing if copies[i] is not None]
            if not todo:
                continue
            scale = retry_scale(name)
            for i, det in zip(todo, _detect_many(self.detector, [copies[i] for i in todo])):
                det = _plausible(det, copies[i].shape)
                if len(_boxes(det)):
                    detections[i] = det if scale == 1.0 else _rescaled(det, scale)
                    found_by[i] = name
        return list(zip(detections, found_by))

    def crops_from_detections(
        self, image: np.ndarray, detections: Any, select: str | None = None,
        detected_by: str | None = "detector",
    ) -> list[FaceCrop]:
        """Chips from detections already made on ``image`` (an (H, W, 3) uint8 array): the
        selected face only, or every face ranked when ``select="all"``; ``detected_by``
        names what found them (see :class:`FaceCrop`)."""
        rule = self.select if select is None else select
        if rule not in SELECT_RULES:
            raise UnknownNameError("selection rule", rule, SELECT_RULES)
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return [self._center(image, select=rule)]
        if rule == "all":
            order = rank_faces(boxes, image.shape, self.select if self.select != "all" else "all")
        else:
            order = rank_faces(boxes, image.shape, rule)[:1]
        landmarks = np.asarray(detections.landmarks, dtype=np.float64).reshape(-1, 5, 2)
        scores = np.asarray(detections.scores, dtype=np.float64).reshape(-1)
        return [self._face(image, boxes[i], landmarks[i], float(scores[i]), rule, detected_by)
                for i in order]

    def _face(
        self, img: np.ndarray, box: np.ndarray, landmarks: np.ndarray, score: float, rule: str,
        detected_by: str | None,
    ) -> FaceCrop:
        if self.crop_mode == "aligned":
            matrix = self.template.transform_from(landmarks)
            chip = warp_affine(img, matrix, self.chip_size)
        else:
            chip = padded_crop(img, box, self.chip_size, pad=self.pad)
        chip, restored = restore_chip(chip, self.chip_restore)
        return FaceCrop(
            chip=chip, box=box.astype(np.float32), landmarks=landmarks.astype(np.float32),
            score=score, detected=True, crop=self.crop_mode, select=rule, fallback=None,
            face_score=score, detected_by=detected_by, restored=restored,
        )

    def _center(self, img: np.ndarray, select: str | None = None) -> FaceCrop:
        """The centre crop: a fallback when detection found nothing, or the ``center`` mode's
        chip; scored by the presence check, and a face only if the policy says so."""
        chip, restored = restore_chip(
            center_crop(img, self.chip_size, fraction=self.center_fraction), self.chip_restore)
        fallback = None if self.crop_mode == "center" else CENTER_FALLBACK
        face_score = float(self.presence.score(img))
        no_face = None
        if self.fallback_policy == "never" and fallback is not None:
            no_face = "no face found (fallback_policy never)"
        elif self.fallback_policy != "always" and face_score < self.face_cutoff:
            what = "no face found and the" if fallback else "the"
            no_face = (f"{what} centre crop does not look like a face (face score "
                       f"{face_score:.3f} < {self.face_cutoff:.3f})")
        return FaceCrop(
            chip=chip, box=None, landmarks=None, score=None, detected=False,
            crop=self.crop_mode, select=self.select if select is None else select,
            fallback=fallback, face_score=face_score, no_face=no_face, restored=restored,
        )

    def _refuse_all(self) -> None:
        if self.select == "all":
            raise ConfigError(
                "select='all' gives every face, not one: call crop_all(image), or choose one of "
                f"{', '.join(r for r in SELECT_RULES if r != 'all')} for crop()"
            )


def _detect_many(detector: Any, images: list[np.ndarray]) -> list[Any]:
    if not images:
        return []
    if hasattr(detector, "detect_batch"):
        return list(detector.detect_batch(images))
    return list(detector.detect(images))


def _boxes(detections: Any) -> np.ndarray:
    return np.asarray(detections.boxes).reshape(-1, 4)


def _plausible(detections: Any, shape: tuple[int, ...]) -> Any:
    """The faces a retry may report: score >= RETRY_MIN_SCORE and the box's short side at
    least RETRY_MIN_SIZE of the image's. Restored copies of non-faces (noise, photo crops)
    give small, weaker boxes (benchmarks/bench_detect_retries.py)."""
    from siamface.detect.cascade import Detections

    boxes = _boxes(detections)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    keep = ((np.asarray(detections.scores).reshape(-1) >= RETRY_MIN_SCORE)
            & (side >= RETRY_MIN_SIZE * min(shape[:2])))
    if keep.all():
        return detections
    return Detections(np.asarray(detections.boxes)[keep], np.asarray(detections.scores)[keep],
                      np.asarray(detections.landmarks)[keep])


def _rescaled(detections: Any, scale: float) -> Any:
    """Detections made on a copy resized by ``scale``, in the original image's pixels (pixel
    centres: x = (x' + 0.5) / scale - 0.5, as cv2.resize maps them)."""
    from siamface.detect.cascade import Detections

    def back(v: Any) -> np.ndarray:
        return ((np.asarray(v, np.float64) + 0.5) / scale - 0.5).astype(np.float32)

    return Detections(back(detections.boxes), np.asarray(detections.scores, np.float32),
                      back(detections.landmarks))


def _describe_detector(detector: Any) -> dict[str, Any]:
    """Name and settings of a detector, JSON-serialisable."""
    describe = getattr(detector, "params", None)
    if callable(describe):
        return {"name": type(detector).__name__, **dict(describe())}
    settings = {}
    for key in ("version", "min_face_size", "factor", "thresholds", "max_side"):
        if hasattr(detector, key):
            value = getattr(detector, key)
            settings[key] = list(value) if isinstance(value, tuple) else value
    return {"name": type(detector).__name__, **settings}

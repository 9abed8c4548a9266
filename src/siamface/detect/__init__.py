"""MTCNN face detection in PyTorch: ``MTCNN(...).detect(image) -> Detections``."""

from siamface.detect.mtcnn import MTCNN, Detections

__all__ = ["MTCNN", "Detections"]

"""Decoding any image source (path, bytes, PIL image, numpy array) to one RGB uint8 array.

Every way in ends in the same place: ``load_image`` returns a C-contiguous (H, W, 3) uint8 RGB
array that owns its memory. Rules, so that every caller sees the same pixels:

- EXIF orientation is applied (a phone photo taken upright comes out upright).
- Transparency is composited on white (a transparent background reads as white paper, which
  is what viewers show; dropping alpha would expose whatever colour the hidden pixels hold).
- 16-bit images are scaled to 8 bit (``round(v / 257)``), never clipped; Pillow's 32-bit
  "I" images are read as 16-bit data when they fit (else stretched), "F" images as [0, 1] when
  they fit (else [0, 255], else stretched).
- CMYK JPEGs are inverted back when they carry no Adobe APP14 marker (Pillow always assumes
  Adobe's inverted polarity); colour profiles (ICC) are ignored, as OpenCV and LFW do.
- Only common raster formats are decoded (``SUPPORTED_FORMATS``): no EPS/PDF/PSD plugins.
- The pixel limit is checked from the header, before any pixel is decoded, so a
  decompression bomb never allocates; truncated files are refused, never padded with grey.
- numpy arrays are taken as RGB (not OpenCV's BGR): (H, W), (H, W, 1), (H, W, 3) or (H, W, 4),
  dtype uint8, uint16 or float in [0, 1].
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from siamface.errors import DatasetError, ImageDecodeError, ImageTooLargeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SUPPORTED_FORMATS",
    "ImageSource",
    "describe_source",
    "find_images",
    "image_sha256",
    "is_image_file",
    "load_image",
]

logger = logging.getLogger(__name__)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray
"""Anything ``load_image`` accepts."""

DEFAULT_MAX_PIXELS = 40_000_000
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Pillow format names that are decoded; anything else is refused as unsupported."""
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""File name endings that dataset walkers treat as images."""

_HASH_CHUNK = 1 << 20
_truncated_lock = threading.Lock()


def is_image_file(name: str | os.PathLike) -> bool:
    """True for a visible file name with an image extension (:data:`IMAGE_EXTENSIONS`)."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def find_images(folder: str | os.PathLike, *, recursive: bool = True,
                skip_dirs: tuple[str, ...] = ()) -> list[Path]:
    """The image files under ``folder``, sorted: the one folder walker of siamface.

    Hidden files and folders are left out, and so are sub-folders named in ``skip_dirs``;
    ``recursive=False`` lists only the files directly inside. A missing folder, or a path that
    is a file, raises :class:`DatasetError`.
    """
    root = Path(folder)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"image folder {root} {state}; pass the folder that holds the images")
    found: list[str] = []
    _scan(os.fspath(root), recursive, skip_dirs, found)
    found.sort(key=lambda p: p.split(os.sep))  # Path order (part by part), without 10^5 Paths
    return [Path(p) for p in found]


def _scan(folder: str, recursive: bool, skip_dirs: tuple[str, ...], found: list[str]) -> None:
    # os.scandir knows each entry's type without a stat per file (LFW: 5,749 folders)
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):  # as os.walk: no symlinked folders
                if recursive and entry.name not in skip_dirs:
                    _scan(entry.path, recursive, skip_dirs, found)
            elif is_image_file(entry.name) and entry.is_file():
                found.append(entry.path)


def describe_source(source: object) -> str:
    """A short human name for an image source, for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes {memoryview(source).nbytes}>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.width}x{source.height} {source.mode}>"
    if isinstance(source, np.ndarray):
        return f"<array {'x'.join(str(n) for n in source.shape) or 'scalar'}>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` to a (H, W, 3) uint8 RGB array (see the module docstring for rules).

    Raises ``ImageDecodeError`` naming the source and the reason, or ``ImageTooLargeError``
    when the image has more than ``max_pixels`` pixels.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, name, max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(source.size, name, max_pixels)
        with _decode_errors(name):
            with _no_truncated_images():
                source.load()  # a lazily opened image may still need decoding
            return _to_rgb_array(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if memoryview(source).nbytes == 0:
            raise ImageDecodeError(name, "no data (0 bytes)")
        return _decode_stream(io.BytesIO(source), name, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        _check_file(path, name)
        try:
            with open(path, "rb") as fh:
                return _decode_stream(fh, name, max_pixels)
        except OSError as exc:  # raised by open() itself: permissions, vanished file...
            raise ImageDecodeError(name, f"cannot open file: {exc.strerror or exc}") from exc
    raise ImageDecodeError(
        name,
        f"unsupported source type {type(source).__name__}; "
        "expected a path (str or Path), bytes, a PIL.Image.Image or a numpy array",
    )


def image_sha256(source: ImageSource) -> str:
    """Hex sha256 of an image's content: the file's bytes for a path or bytes (so a path and
    its bytes hash alike); shape, dtype or mode and the pixels for arrays and PIL images."""
    digest = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        name = describe_source(source)
        _check_file(os.fspath(source), name, allow_empty=True)
        try:
            with open(source, "rb") as fh:
                for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise ImageDecodeError(name, f"cannot read file: {exc.strerror or exc}") from exc
    elif isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
    elif isinstance(source, np.ndarray):
        digest.update(f"array:{source.dtype.str}:{source.shape}:".encode())
        digest.update(np.ascontiguousarray(source).tobytes())
    elif isinstance(source, Image.Image):
        digest.update(f"pil:{source.mode}:{source.size}:".encode())
        digest.update(source.tobytes())
    else:
        raise ImageDecodeError(
            describe_source(source), f"unsupported source type {type(source).__name__}"
        )
    return digest.hexdigest()


# --- files and streams -----------------------------------------------------------------------


def _check_file(path: str, name: str, *, allow_empty: bool = False) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise ImageDecodeError(name, "file not found") from exc
    except OSError as exc:
        raise ImageDecodeError(name, f"cannot access file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageDecodeError(name, "is a directory, expected an image file")
    if st.st_size == 0 and not allow_empty:
        raise ImageDecodeError(name, "file is empty (0 bytes)")


def _decode_stream(fh: io.BufferedIOBase, name: str, max_pixels: int) -> np.ndarray:
    img = _open_header(fh, name)
    try:
        _check_pixels(img.size, name, max_pixels)
        with _decode_errors(name):
            with _no_truncated_images():
                img.load()  # full decode now: a truncated file fails here, not later
            return _to_rgb_array(img, name)
    finally:
        img.close()


@functools.cache
def _register_plugins() -> None:
    """Register the plugins of ``SUPPORTED_FORMATS`` (with ``formats=``, Image.open only
    knows registered ones); Pillow's ``Image.init`` would import all forty (45 ms)."""
    Image.preinit()  # BMP, GIF, JPEG, PNG, PPM
    from PIL import TiffImagePlugin, WebPImagePlugin  # noqa: F401


def _open_header(fh: io.BufferedIOBase, name: str) -> Image.Image:
    """Image.open reads only the header; the pixel limit is checked before ``load``."""
    start = fh.tell()
    _register_plugins()
    try:
        with warnings.catch_warnings():
            # our own limit (checked next) reports the size; PIL's error is converted below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fh, formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(name, f"header announces too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        fh.seek(start)
        raise ImageDecodeError(name, _unidentified_reason(fh)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageDecodeError(name, f"corrupt image header: {exc}") from exc


def _unidentified_reason(fh: io.BufferedIOBase) -> str:
    """Tell 'a format we do not decode' from 'not an image at all', reading headers only."""
    head = fh.read(16)
    fh.seek(-len(head), os.SEEK_CUR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(fh) as other:  # header only; never .load() a foreign format
                fmt = other.format
    except Exception:  # noqa: BLE001 - any failure here just means "not an image"
        fmt = None
    if fmt:
        return f"unsupported format {fmt} (supported: {', '.join(SUPPORTED_FORMATS)})"
    return f"not an image: content is not a recognised image format (starts with {head!r})"


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            name,
            f"{width}x{height} = {width * height:,} pixels is over the limit of "
            f"{max_pixels:,} (raise the limit with --max-pixels N, or max_pixels= in Python)",
        )
    if width == 0 or height == 0:
        raise ImageDecodeError(name, f"image has no pixels ({width}x{height})")


@contextmanager
def _decode_errors(name: str) -> Iterator[None]:
    try:
        yield
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(name, str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason:
            reason = f"truncated file ({reason})"
        raise ImageDecodeError(name, f"cannot decode: {reason}") from exc


@contextmanager
def _no_truncated_images() -> Iterator[None]:
    """Decode with ``LOAD_TRUNCATED_IMAGES`` off even if another library switched it on."""
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield
        return
    with _truncated_lock:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


# --- modes and arrays ------------------------------------------------------------------------


def _to_rgb_array(img: Image.Image, name: str) -> np.ndarray:
    if img.mode == "CMYK" and img.format in ("JPEG", "MPO") and "adobe" not in img.info:
        # Pillow inverts every CMYK JPEG (Adobe polarity); without the Adobe APP14 marker the
        # data was stored plain, so undo that inversion.
        img = Image.eval(img, lambda v: 255 - v)
    img = _exif_upright(img, name)
    mode = img.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return _from_array(_wide_to_uint8(np.asarray(img)), name, None)
    if mode == "RGB":
        return np.array(img, dtype=np.uint8, order="C")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info:
        return _composite_on_white(np.array(img.convert("RGBA"), dtype=np.uint8))
    try:
        rgb = img.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError(name, f"unsupported image mode {mode}") from exc
    return np.array(rgb, dtype=np.uint8, order="C")


def _exif_upright(img: Image.Image, name: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not lose the pixels
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
        return img


def _from_array(array: np.ndarray, name: str, max_pixels: int | None) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        height, width, channels = array.shape
    elif array.ndim == 2:
        (height, width), channels = array.shape, 1
    else:
        raise ImageDecodeError(
            name, f"array shape {array.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if max_pixels is not None:
        _check_pixels((width, height), name, max_pixels)
    pixels = _to_uint8(array, name)
    if channels == 1:
        pixels = np.repeat(pixels.reshape(height, width, 1), 3, axis=2)
    elif channels == 4:
        return _composite_on_white(pixels)
    return np.array(pixels, dtype=np.uint8, order="C")  # always a fresh, owned copy


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        return _rescale(array.astype(np.float64), 65535.0)
    if array.dtype.kind == "f":
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageDecodeError(name, "float array contains NaN or infinity")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageDecodeError(
                name, f"float values must lie in [0, 1]; got [{low:g}, {high:g}]"
            )
        return _rescale(values, 1.0)
    raise ImageDecodeError(
        name,
        f"array dtype {array.dtype} is not supported; expected uint8, uint16 or float in [0, 1]",
    )


def _wide_to_uint8(values: np.ndarray) -> np.ndarray:
    """Pillow's 32-bit modes: "I" holds 16-bit PNG/TIFF data (scaled from 0..65535 when it
    fits, else stretched min..max); "F" is taken as [0, 1] when it fits, else [0, 255]."""
    wide = values.astype(np.float64)
    if not np.isfinite(wide).all():
        wide = np.nan_to_num(wide, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(wide.min()), float(wide.max())) if wide.size else (0.0, 0.0)
    if values.dtype.kind == "f":
        if low >= 0.0 and high <= 1.0:
            return _rescale(wide, 1.0)
        if low >= 0.0 and high <= 255.0:
            return _rescale(wide, 255.0)
    elif low >= 0.0 and high <= 65535.0:
        return _rescale(wide, 65535.0)
    return _stretch(wide)


def _rescale(values: np.ndarray, full_scale: float) -> np.ndarray:
    return np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high == low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _rescale(values - low, high - low)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(out, dtype=np.uint8)

"""siamface.io: every image source decodes to the same RGB uint8 array, and every bad one is
refused with the source and the reason."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageFile

from siamface.errors import ImageDecodeError, ImageTooLargeError
from siamface.io import describe_source, image_sha256, load_image

LFW_PERSON = "Aaron_Eckhart"


def lfw_photo(lfw_dir: Path) -> Path:
    return lfw_dir / "images" / LFW_PERSON / f"{LFW_PERSON}_0001.jpg"


def stripes() -> np.ndarray:
    """A 32x48 RGB image: red, green and blue vertical stripes."""
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16] = (230, 20, 20)
    rgb[:, 16:32] = (20, 200, 40)
    rgb[:, 32:] = (30, 60, 220)
    return rgb


def forged_png(width: int, height: int) -> bytes:
    """A valid PNG header (correct CRCs) that claims width x height, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def file_mode(path: Path) -> str:
    with Image.open(path) as img:
        return img.mode


def assert_refused(source, reason_part: str, error=ImageDecodeError) -> ImageDecodeError:
    with pytest.raises(error) as info:
        load_image(source)
    assert info.value.source == describe_source(source)
    assert reason_part in info.value.reason
    assert describe_source(source) in str(info.value)
    return info.value


# --- refusals --------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert_refused(tmp_path / "nope.jpg", "file not found")


def test_directory(tmp_path):
    assert_refused(tmp_path, "is a directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert_refused(path, "empty")


def test_empty_bytes():
    assert_refused(b"", "no data")


@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_jpeg(tmp_path, load_truncated, monkeypatch):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, format="JPEG", quality=90
    )
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    # even when another library switched truncated loading on, we refuse truncated files
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    assert_refused(path, "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated


def test_text_renamed_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my holiday notes, not a photo\n")
    assert_refused(path, "not an image")


def test_unsupported_format(tmp_path):
    path = tmp_path / "icon.ico"
    Image.new("RGB", (16, 16), "red").save(path)
    assert_refused(path, "unsupported format ICO")


def test_every_supported_format_decodes_in_a_new_process(tmp_path):
    # A new process: Pillow registers only the plugins siamface imports, not all of them.
    files = {}
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"), ("GIF", "gif"),
                     ("TIFF", "tif"), ("WEBP", "webp"), ("PPM", "ppm")):
        files[fmt] = tmp_path / f"x.{ext}"
        Image.new("RGB", (12, 10), "blue").save(files[fmt], fmt)
    Image.new("RGB", (16, 16), "red").save(tmp_path / "icon.ico")
    script = (
        "import sys\n"
        "from siamface.errors import ImageDecodeError\n"
        "from siamface.io import load_image\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        print(path, load_image(path).shape)\n"
        "    except ImageDecodeError as exc:\n"
        "        print(path, 'refused:', exc.reason)\n"
    )
    paths = [str(p) for p in files.values()] + [str(tmp_path / "icon.ico")]
    out = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    for line in out[:-1]:
        assert line.endswith("(10, 12, 3)"), line
    assert "unsupported format ICO" in out[-1]


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((8, 8, 2), np.uint8), "array shape (8, 8, 2)"),
        (np.zeros((2, 8, 8, 3), np.uint8), "array shape (2, 8, 8, 3)"),
        (np.zeros((8, 8, 3), np.int64), "dtype int64"),
        (np.zeros((8, 8, 3), bool), "dtype bool"),
        (np.full((8, 8, 3), 2.0), "[0, 1]"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_arrays(array, reason):
    assert_refused(array, reason)


def test_unsupported_source_type():
    assert_refused(12345, "unsupported source type int")


@pytest.mark.parametrize("side", [100_000, 10_000, 7_000])
def test_forged_huge_png_is_refused_from_the_header(tmp_path, side):
    """100000 and 10000 trip Pillow's own bomb error and warning, 7000 only our limit; none
    may decode (or allocate) the pixels."""
    path = tmp_path / "bomb.png"
    path.write_bytes(forged_png(side, side))
    Image.init()  # plugin imports are not what we measure
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with no_warnings():
            error = assert_refused(path, "pixels", ImageTooLargeError)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 5_000_000, f"peak {peak} bytes: pixels were allocated"
    assert "limit" in error.reason


@pytest.mark.lfw
def test_pixel_limit_is_a_parameter(lfw_dir):
    with pytest.raises(ImageTooLargeError, match="62,500 pixels"):
        load_image(lfw_photo(lfw_dir), max_pixels=250 * 250 - 1)
    assert load_image(lfw_photo(lfw_dir), max_pixels=250 * 250).shape == (250, 250, 3)


@contextmanager
def no_warnings() -> Iterator[None]:
    """Fail if a warning (e.g. Pillow's DecompressionBombWarning) leaks out."""
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        yield
    assert not log, [str(w.message) for w in log]


# --- modes -----------------------------------------------------------------------------------


def assert_rgb(array: np.ndarray, shape: tuple[int, int]) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (*shape, 3)
    assert array.flags.c_contiguous and array.flags.owndata


@pytest.mark.lfw
def test_lfw_photo(lfw_dir):
    import cv2

    array = load_image(lfw_photo(lfw_dir))
    assert_rgb(array, (250, 250))
    # an independent decoder (OpenCV's libjpeg, BGR order) gives the same pixels, in RGB order
    reference = cv2.cvtColor(cv2.imread(str(lfw_photo(lfw_dir))), cv2.COLOR_BGR2RGB)
    assert np.abs(array.astype(int) - reference).max() <= 2
    assert np.abs(array.astype(float) - reference).mean() < 0.5
    assert not np.array_equal(array, reference[..., ::-1])  # the channel order matters here


def test_grayscale(tmp_path):
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    array = load_image(path)
    assert_rgb(array, gray.shape)
    for channel in range(3):
        np.testing.assert_array_equal(array[..., channel], gray)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere...
    rgba[0, 0, 3] = 255  # ...opaque in one corner
    rgba[0, 1, 3] = 0  # fully transparent: white
    rgba[0, 2, 3] = 128  # half: between red and white
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    array = load_image(path)
    assert_rgb(array, (4, 4))
    assert tuple(array[0, 0]) == (200, 0, 0)
    assert tuple(array[0, 1]) == (255, 255, 255)
    assert tuple(array[0, 2]) == (227, 127, 127)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    gray16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray16).save(path)
    assert file_mode(path).startswith("I")
    array = load_image(path)
    assert_rgb(array, (64, 64))
    expected = np.rint(gray16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(array[..., 1], expected)
    assert (array == 255).mean() < 0.01 and len(np.unique(array)) > 200  # clipping: all 255


def test_uint16_and_float_arrays():
    gray16 = np.array([[0, 257, 65535]], np.uint16)
    np.testing.assert_array_equal(load_image(gray16)[..., 0], [[0, 1, 255]])
    floats = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(load_image(floats)[..., 2], [[0, 128, 255]])


def test_palette(tmp_path):
    rgb = stripes()
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(path)
    assert file_mode(path) == "P"
    np.testing.assert_array_equal(load_image(path), rgb)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    path = tmp_path / "transparent.gif"
    img.save(path, transparency=1)
    np.testing.assert_array_equal(load_image(path)[0], [[255, 0, 0], [255, 255, 255]])


def _strip_app14(jpeg: bytes) -> bytes:
    start = jpeg.index(b"\xff\xee")
    length = int.from_bytes(jpeg[start + 2 : start + 4], "big")
    return jpeg[:start] + jpeg[start + 2 + length :]


@pytest.mark.parametrize("adobe", [True, False], ids=["adobe-inverted", "plain"])
def test_cmyk_jpeg_colours(tmp_path, adobe):
    rgb = stripes()
    cmyk = Image.fromarray(rgb).convert("CMYK")
    buf = io.BytesIO()
    if adobe:  # Pillow (libjpeg) writes an Adobe APP14 marker and inverted data
        cmyk.save(buf, format="JPEG", quality=95)
        data = buf.getvalue()
        assert b"Adobe" in data
    else:  # plain CMYK values and no marker
        ImageChops.invert(cmyk).save(buf, format="JPEG", quality=95)
        data = _strip_app14(buf.getvalue())
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(data)
    assert file_mode(path) == "CMYK"
    array = load_image(path)
    assert_rgb(array, (32, 48))
    for column in (8, 24, 40):
        np.testing.assert_allclose(array[16, column], rgb[16, column], atol=6)
    if adobe:  # OpenCV's decoder agrees with ours
        cv2 = pytest.importorskip("cv2")
        reference = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert np.abs(reference.astype(int) - array).max() <= 2


def test_exif_orientation(tmp_path):
    rgb = np.full((40, 60, 3), 128, np.uint8)  # 60 wide, 40 high as stored
    rgb[:8, :8] = (255, 0, 0)  # red marker top-left as stored
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, quality=95, exif=exif)
    array = load_image(path)
    assert array.shape == (60, 40, 3)  # displayed upright: 40 wide, 60 high
    assert array[3, 36].astype(int).tolist() == pytest.approx((255, 0, 0), abs=30)  # marker now top-right
    assert array[3, 3].astype(int).tolist() == pytest.approx((128, 128, 128), abs=30)


# --- every source type gives the same pixels -------------------------------------------------


@pytest.mark.lfw
def test_all_source_types_agree(lfw_dir):
    path = lfw_photo(lfw_dir)
    expected = load_image(path)
    data = path.read_bytes()
    sources = [
        str(path),
        data,
        bytearray(data),
        memoryview(data),
        Image.open(path),
        np.array(Image.open(path)),
        np.array(Image.open(path).convert("L"))[..., None].repeat(3, axis=2),
    ]
    for source in sources[:-1]:
        np.testing.assert_array_equal(load_image(source), expected)
    assert_rgb(load_image(sources[-1]), (250, 250))


def test_array_input_is_copied():
    array = np.zeros((4, 4, 3), np.uint8)
    out = load_image(array)
    out[0, 0] = 255
    assert array.max() == 0


@pytest.mark.lfw
def test_image_sha256(tmp_path, lfw_dir):
    path = lfw_photo(lfw_dir)
    digest = image_sha256(path)
    assert digest == image_sha256(path.read_bytes()) == image_sha256(str(path))
    assert len(digest) == 64
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(path.read_bytes() + b"\0")
    assert image_sha256(copy) != digest
    with pytest.raises(ImageDecodeError, match="file not found"):
        image_sha256(tmp_path / "missing.jpg")


def test_describe_source(tmp_path):
    assert describe_source(tmp_path / "a.jpg") == str(tmp_path / "a.jpg")
    assert describe_source(b"123") == "<bytes 3>"
    assert describe_source(np.zeros((250, 250, 3))) == "<array 250x250x3>"
    assert describe_source(Image.new("RGB", (4, 3))) == "<PIL image 4x3 RGB>"

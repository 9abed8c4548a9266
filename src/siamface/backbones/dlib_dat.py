"""Reader for dlib's serialised DNN files (``dlib_face_recognition_resnet_model_v1.dat``).

dlib is never needed: this module decodes dlib's stream format directly.

Encodings (dlib ``serialize.h``): an integer is a control byte (bit 0x80 = negative, low
nibble = number of magnitude bytes) then the magnitude little-endian; a string is an integer
length then raw bytes; a float is an integer mantissa then an integer exponent; a bool is the
ASCII byte ``'1'`` or ``'0'``; a tensor is version 2, then num_samples, k, nr, nc and raw
little-endian float32 (NCHW); an alias tensor is version 1 and four integers.

Stream order for a network ``loss<add_layer<...<input>>>``: the loss layer, one version integer
per wrapper from the outermost inwards, the input layer, then each layer's details from input to
output followed by its wrapper trailer. Tag and skip wrappers have no details, so the wiring is
not stored; :mod:`siamface.backbones.dlib_resnet` supplies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamface.errors import CheckpointError

__all__ = ["DatReader", "DlibLayer", "DlibNetwork", "parse_dlib_dat", "parse_dlib_dat_bytes"]

# Records this reader understands (the versions found in dlib's face recognition model).
_KNOWN_RECORDS = ("con_4", "affine_", "relu_", "max_pool_2", "avg_pool_2", "add_prev_", "fc_2")


@dataclass
class DlibLayer:
    """One computational layer record: its version string, integer/float fields and tensors."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """A parsed dlib network: loss layer, input layer and layer records from input to output."""

    loss: dict[str, Any]
    input: dict[str, Any]
    wrapper_versions: list[int]
    layers: list[DlibLayer]
    num_bytes: int
    num_floats: int


class DatReader:
    """Cursor over the bytes of a dlib stream; every read checks bounds and raises
    :class:`CheckpointError` on malformed data."""

    def __init__(self, data: bytes, source: str = "<bytes>"):
        self.data = memoryview(data)
        self.pos = 0
        self.source = source
        self.num_floats = 0

    def error(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.source}: not a valid dlib network file: {what} at byte {self.pos} "
            f"of {len(self.data)}"
        )

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"truncated (wanted {n} more bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.error(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        length = self.int()
        if length < 0 or length > 1 << 20:
            raise self.error(f"bad string length {length}")
        raw = bytes(self._take(length))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.error(f"non-ASCII string {raw[:20]!r}") from exc

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if abs(exponent) > 1100:
            raise self.error(f"bad float exponent {exponent}")
        return float(mantissa) * 2.0 ** exponent

    def bool(self) -> bool:
        byte = bytes(self._take(1))
        if byte not in (b"0", b"1"):
            raise self.error(f"bad boolean byte {byte!r}")
        return byte == b"1"

    def expect_string(self, expected: str) -> None:
        start = self.pos
        got = self.string()
        if got != expected:
            self.pos = start
            raise self.error(f"expected record {expected!r}, found {got!r}")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.error(f"tensor version {version}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.error(f"negative tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._take(4 * count)
        self.num_floats += count
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise self.error(f"alias tensor version {version}, expected 1")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _read_record(r: DatReader) -> DlibLayer:
    start = r.pos
    kind = r.string()
    if kind == "con_4":
        params = r.tensor()
        f = {k: r.int() for k in ("num_filters", "nr", "nc", "stride_y", "stride_x",
                                  "padding_y", "padding_x")}
        r.alias_tensor()
        r.alias_tensor()
        for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[name] = r.float()
        n, kh, kw = f["num_filters"], f["nr"], f["nc"]
        flat = params.reshape(-1)
        per_in = n * kh * kw
        if per_in <= 0 or (flat.size - n) % per_in:
            raise r.error(f"con_4 params of size {flat.size} do not fit {n} filters {kh}x{kw}")
        k = (flat.size - n) // per_in
        f["in_channels"] = k
        weight = flat[: n * k * kh * kw].reshape(n, k, kh, kw)
        bias = flat[n * k * kh * kw:]
        return DlibLayer(kind, f, {"weight": weight, "bias": bias})
    if kind == "affine_":
        params = r.tensor().reshape(-1)
        r.alias_tensor()
        r.alias_tensor()
        mode = r.int()
        if mode != 0:
            raise r.error(f"affine_ mode {mode} (only per-channel mode 0 is supported)")
        half = params.size // 2
        return DlibLayer(kind, {"mode": mode}, {"gamma": params[:half], "beta": params[half:]})
    if kind in ("relu_", "add_prev_"):
        return DlibLayer(kind)
    if kind in ("max_pool_2", "avg_pool_2"):
        f = {k: r.int() for k in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
        return DlibLayer(kind, f)
    if kind == "fc_2":
        f = {"num_outputs": r.int(), "num_inputs": r.int()}
        params = r.tensor().reshape(-1)
        r.alias_tensor()
        r.alias_tensor()
        f["bias_mode"] = r.int()
        for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[name] = r.float()
        n_in, n_out = f["num_inputs"], f["num_outputs"]
        has_bias = f["bias_mode"] == 0
        expected = (n_in + int(has_bias)) * n_out
        if params.size != expected:
            raise r.error(f"fc_2 params of size {params.size}, expected {expected}")
        weight = params[: n_in * n_out].reshape(n_in, n_out)  # stored (in, out)
        tensors = {"weight": weight}
        if has_bias:
            tensors["bias"] = params[n_in * n_out:]
        return DlibLayer(kind, f, tensors)
    r.pos = start
    raise r.error(f"unsupported layer record {kind!r} (known: {', '.join(_KNOWN_RECORDS)})")


def _read_trailer(r: DatReader, innermost: bool) -> None:
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()
    if innermost:
        r.int()  # sample expansion factor


def parse_dlib_dat_bytes(data: bytes, source: str = "<bytes>") -> DlibNetwork:
    """Parse a dlib ``loss_metric`` network serialised by ``dlib::serialize``; the whole
    stream must be consumed."""
    r = DatReader(data, source)
    if r.int() != 1:
        raise r.error("unsupported loss wrapper version")
    r.expect_string("loss_metric_2")
    loss = {"margin": r.float(), "distance_threshold": r.float()}
    versions: list[int] = []
    while True:
        if r.pos >= len(r.data):
            raise r.error("truncated in wrapper versions")
        start = r.pos
        v = r.int()
        if v not in (1, 2, 3):
            r.pos = start
            raise r.error(f"unexpected wrapper version {v}")
        versions.append(v)
        if v == 3:  # innermost add_layer, followed by the input layer
            break
    r.expect_string("input_rgb_image_sized")
    means = (r.float(), r.float(), r.float())
    inp = {"mean": means, "nr": r.int(), "nc": r.int()}
    num_records = sum(1 for v in versions if v in (2, 3))
    layers = []
    for i in range(num_records):
        layers.append(_read_record(r))
        _read_trailer(r, innermost=(i == 0))
    if r.pos != len(r.data):
        raise r.error(f"{len(r.data) - r.pos} unexpected bytes after the last layer")
    return DlibNetwork(loss, inp, versions, layers, len(r.data), r.num_floats)


def parse_dlib_dat(path: str | Path) -> DlibNetwork:
    """Read and parse a dlib network file."""
    path = Path(path)
    return parse_dlib_dat_bytes(path.read_bytes(), str(path))

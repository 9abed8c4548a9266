"""Checkpoint copies with a changed description, for the tests that check how a reader
treats a foreign, newer or inconsistent checkpoint."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def rewrite_checkpoint(source: Path, target: Path, change) -> Path:
    """A copy of the checkpoint ``source`` at ``target`` whose siamface metadata (a dict)
    went through ``change``; the tensors are kept byte for byte."""
    data = source.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = json.loads(header["__metadata__"]["siamface"])
    change(meta)
    header["__metadata__"]["siamface"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    target.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    return target

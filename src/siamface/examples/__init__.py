"""A few example photos shipped inside the package, for the demo and for first tries:
``siamface.examples.path("kofi_annan_1")`` is a file path any command accepts. Their
sources, licences and credits are in README.md beside them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from siamface.errors import UnknownNameError

__all__ = ["names", "path"]

_SUFFIX = ".jpg"


def _folder() -> Path:
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """The example photos' names, sorted (``path(name)`` takes them)."""
    return sorted(p.stem for p in _folder().glob(f"*{_SUFFIX}"))


def path(name: str) -> Path:
    """The file of the example photo ``name`` (with or without ``.jpg``)."""
    stem = name.removesuffix(_SUFFIX)
    if stem not in names():
        raise UnknownNameError("example photo", name, names())
    return _folder() / f"{stem}{_SUFFIX}"

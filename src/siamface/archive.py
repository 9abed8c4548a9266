"""Reading images out of a zip file someone else made, safely.

A zip is a list of names and sizes that its author chose. :func:`extract_images_zip` trusts
none of it: every member is checked from the central directory *before* a single byte is
written, and a zip that fails any check is refused as a whole (nothing is extracted). It
defends against:

- **Path traversal** ("zip slip"): names with ``..`` components, absolute names (leading
  ``/`` or ``\\``, drive letters such as ``C:``), backslashes used as separators and NUL
  bytes are refused, so nothing can land outside the extraction folder.
- **Links and special files**: members whose Unix mode (``external_attr >> 16``) is a
  symlink, device, FIFO or socket are refused; only regular files and folders are accepted.
- **Zip bombs**: too many members (``max_members``; counted from the end-of-central-directory
  record before the central directory is even parsed), a total uncompressed size over
  ``max_total_bytes``, a member over ``max_member_bytes``, and an expansion ratio
  (uncompressed / compressed) over ``max_ratio`` for the whole archive and for each member
  (members and archives under :data:`RATIO_FLOOR_BYTES` are exempt: they cannot expand into
  anything harmful). While extracting, a bounded copy loop enforces each member's declared
  size again, so a member whose data inflates beyond (or falls short of) its header is an
  error, never a larger file.
- **Ambiguous names**: duplicate names, also after case folding and Unicode normalisation
  (they would overwrite each other on macOS or Windows), and a name that is both a file and
  a folder.
- **Encrypted members** (no password can be asked for) and corrupt archives.

Only image files (:func:`siamface.io.is_image_file`) are extracted; ``__MACOSX/`` folders and
hidden files or folders are skipped. Extraction goes to a private temporary folder (mode
0700, files 0600), created with :func:`tempfile.mkdtemp` and removed when the ``with`` block
ends, also on an exception. ``ZipFile.extractall`` is never used.

::

    from siamface.archive import extract_images_zip
    from siamface.io import find_images

    with extract_images_zip("faces.zip") as folder:
        for path in find_images(folder):
            ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from siamface.errors import DatasetError
from siamface.io import is_image_file

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma cannot read such members anyway
    LZMAError = zlib.error

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_MEMBER_BYTES",
    "DEFAULT_MAX_RATIO",
    "DEFAULT_MAX_TOTAL_BYTES",
    "RATIO_FLOOR_BYTES",
    "UnsafeArchiveError",
    "check_zip",
    "extract_images_zip",
]

DEFAULT_MAX_MEMBERS = 20_000
DEFAULT_MAX_TOTAL_BYTES = 2 << 30  # 2 GiB uncompressed, all members together
DEFAULT_MAX_MEMBER_BYTES = 256 << 20  # 256 MiB for one member
DEFAULT_MAX_RATIO = 100.0
RATIO_FLOOR_BYTES = 1 << 20
"""Members (and archives) whose uncompressed size is at most this are not ratio-checked: a
tiny file of zeros compresses 1000:1 and is still harmless."""

_COPY_CHUNK = 1 << 16
_SUPPORTED_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_SKIPPED_FOLDERS = {"__macosx"}
_REMAKE = "re-create the zip from the image folder itself (e.g. `cd faces && zip -r ../faces.zip .`)"


class UnsafeArchiveError(DatasetError):
    """A zip was refused: ``archive`` names the file, ``member`` the entry (``None`` for the
    archive as a whole) and ``reason`` says why. Nothing was extracted."""

    def __init__(self, archive: str | os.PathLike, member: str | None, reason: str):
        self.archive = str(archive)
        self.member = member
        self.reason = reason
        where = f"member {member!r}" if member is not None else "archive"
        super().__init__(f"refusing zip {self.archive}: {where}: {reason}; nothing was kept")


@dataclass(frozen=True)
class _Planned:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # the path inside the extraction folder

    @property
    def name(self) -> str:
        return "/".join(self.parts)


# --- checks ---------------------------------------------------------------------------------


def _declared_member_count(fh) -> int | None:
    """The member count announced by the end-of-central-directory record (ZIP64 too), read
    before ``zipfile`` parses the whole central directory into memory; ``None`` when the record
    cannot be found this way (``zipfile`` then decides)."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_len = min(size, 22 + 0xFFFF)  # the record plus the longest comment
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    total = struct.unpack("<H", tail[at + 10:at + 12])[0]
    if total != 0xFFFF:
        return total
    locator = at - 20  # ZIP64: the locator sits just before the classic record
    if locator < 0 or tail[locator:locator + 4] != b"PK\x06\x07":
        return None
    offset = struct.unpack("<Q", tail[locator + 8:locator + 16])[0]
    fh.seek(offset)
    record = fh.read(56)
    if len(record) < 56 or record[:4] != b"PK\x06\x06":
        return None
    return struct.unpack("<Q", record[32:40])[0]


def _name_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path components; UnsafeArchiveError for a name that could escape the
    extraction folder or means different things on different systems."""
    raw = info.orig_filename  # zipfile cuts ``filename`` at a NUL byte; the original has it

    def refuse(reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(archive, raw, f"{reason}; {_REMAKE}")

    if "\x00" in raw:
        raise refuse("the name contains a NUL byte")
    if "\\" in raw:
        raise refuse("the name uses backslashes (Windows separators), which could hide '..' "
                     "or an absolute path")
    if raw.startswith("/"):
        raise refuse("the name is an absolute path")
    if len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha():
        raise refuse("the name starts with a drive letter")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if ".." in parts:
        raise refuse("the name has a '..' component, which would write outside the folder")
    if any(":" in p for p in parts):
        raise refuse("the name contains ':' (a drive or an NTFS stream on Windows)")
    if not parts:
        raise refuse("the name is empty")
    return parts


def _check_kind(archive: Path, info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    if info.flag_bits & 0x1:
        raise UnsafeArchiveError(archive, info.orig_filename,
                                 "the member is encrypted; re-create the zip without a password")
    if stat.S_IFMT(mode) == 0:  # no Unix file type recorded (made on Windows, or only the
        return  # permission bits, as zipfile.writestr does): a file or, by its name, a folder
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(archive, info.orig_filename,
                                 f"the member is a symbolic link; {_REMAKE} without links "
                                 "(zip -r follows them by default)")
    if info.is_dir():
        if not stat.S_ISDIR(mode):
            raise UnsafeArchiveError(archive, info.orig_filename,
                                     f"a name ending in '/' is not a folder (mode {mode:o})")
        return
    if not stat.S_ISREG(mode):
        kind = "a folder without a trailing '/'" if stat.S_ISDIR(mode) else (
            f"not a regular file (mode {mode:o}: a device, FIFO or socket)")
        raise UnsafeArchiveError(archive, info.orig_filename, f"the member is {kind}")


def _ratio(uncompressed: int, compressed: int) -> float:
    return float("inf") if compressed <= 0 else uncompressed / compressed


def _key(parts: tuple[str, ...]) -> str:
    """What a case-insensitive, normalising file system would make of the name."""
    return unicodedata.normalize("NFC", "/".join(parts)).casefold()


def _wanted(parts: tuple[str, ...]) -> bool:
    """An image file that is not hidden and not in a ``__MACOSX`` (resource fork) folder."""
    if any(p.startswith(".") or p.casefold() in _SKIPPED_FOLDERS for p in parts):
        return False
    return is_image_file(parts[-1])


def _plan(archive: Path, zf: zipfile.ZipFile, *, max_members: int, max_total_bytes: int,
          max_ratio: float, max_member_bytes: int) -> list[_Planned]:
    """Check every member from the central directory; the image members to extract."""
    infos = zf.infolist()
    if len(infos) > max_members:
        raise UnsafeArchiveError(archive, None,
                                 f"it has {len(infos):,} members, more than the limit "
                                 f"{max_members:,}; raise max_members or split the archive")
    total = compressed = 0
    seen: dict[str, str] = {}
    folders: dict[str, str] = {}  # key of every parent folder -> a member that implies it
    planned: list[_Planned] = []
    for info in infos:
        parts = _name_parts(archive, info)
        _check_kind(archive, info)
        name = info.orig_filename
        if info.file_size > max_member_bytes:
            raise UnsafeArchiveError(archive, name,
                                     f"it expands to {info.file_size:,} bytes, more than the "
                                     f"limit {max_member_bytes:,}; raise max_member_bytes")
        ratio = _ratio(info.file_size, info.compress_size)
        if info.file_size > RATIO_FLOOR_BYTES and ratio > max_ratio:
            raise UnsafeArchiveError(archive, name,
                                     f"it expands {ratio:,.0f} times ({info.compress_size:,} -> "
                                     f"{info.file_size:,} bytes), more than max_ratio "
                                     f"{max_ratio:g}: a zip bomb, or raise max_ratio")
        total += info.file_size
        compressed += info.compress_size
        key = _key(parts)
        if key in seen:
            other = seen[key]
            same = "the same name" if other == name else f"the same name as {other!r} on a " \
                "case-insensitive file system"
            raise UnsafeArchiveError(archive, name,
                                     f"{same}: one would overwrite the other; rename one")
        seen[key] = name
        for depth in range(1, len(parts)):
            folders.setdefault(_key(parts[:depth]), name)
        if info.is_dir() or not _wanted(parts):
            continue
        if info.compress_type not in _SUPPORTED_METHODS:
            raise UnsafeArchiveError(archive, name,
                                     f"it uses compression method {info.compress_type}, which "
                                     f"cannot be read; use one of "
                                     f"{', '.join(_SUPPORTED_METHODS.values())}")
        planned.append(_Planned(info, parts))
    if total > max_total_bytes:
        raise UnsafeArchiveError(archive, None,
                                 f"its members expand to {total:,} bytes, more than the limit "
                                 f"{max_total_bytes:,}; raise max_total_bytes or split the "
                                 "archive")
    ratio = _ratio(total, compressed)
    if total > RATIO_FLOOR_BYTES and ratio > max_ratio:
        raise UnsafeArchiveError(archive, None,
                                 f"it expands {ratio:,.0f} times ({compressed:,} -> {total:,} "
                                 f"bytes), more than max_ratio {max_ratio:g}: a zip bomb, or "
                                 "raise max_ratio")
    for item in planned:
        if _key(item.parts) in folders:
            raise UnsafeArchiveError(archive, item.info.orig_filename,
                                     "the name is both a file and a folder (of "
                                     f"{folders[_key(item.parts)]!r}); rename one")
    return planned


@contextlib.contextmanager
def _open_zip(path: str | os.PathLike, max_members: int) -> Iterator[tuple[Path, zipfile.ZipFile]]:
    archive = Path(path)
    if not archive.is_file():
        state = "is not a file" if archive.exists() else "does not exist"
        raise DatasetError(f"zip file {archive} {state}")
    try:
        with open(archive, "rb") as fh:
            declared = _declared_member_count(fh)
            if declared is not None and declared > max_members:
                raise UnsafeArchiveError(archive, None,
                                         f"it announces {declared:,} members, more than the "
                                         f"limit {max_members:,}; raise max_members or split "
                                         "the archive")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                yield archive, zf
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive} is not a readable zip file ({exc}); check that it is "
                           "a .zip and was downloaded completely") from None
    except (EOFError, struct.error) as exc:  # a central directory cut short
        raise DatasetError(f"{archive} is a corrupt zip file ({exc or 'truncated'}); check "
                           "that it was downloaded completely") from None


def check_zip(path: str | os.PathLike, *, max_members: int = DEFAULT_MAX_MEMBERS,
              max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, max_ratio: float = DEFAULT_MAX_RATIO,
              max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> list[str]:
    """Validate ``path`` as :func:`extract_images_zip` does, without extracting; the members
    that would be extracted (their relative paths with ``/``), in archive order. Raises
    :class:`UnsafeArchiveError` for a refused archive, ``DatasetError`` for a missing or
    unreadable one."""
    with _open_zip(path, max_members) as (archive, zf):
        plan = _plan(archive, zf, max_members=max_members, max_total_bytes=max_total_bytes,
                     max_ratio=max_ratio, max_member_bytes=max_member_bytes)
    return [item.name for item in plan]


# --- extraction -----------------------------------------------------------------------------


def _copy_member(archive: Path, zf: zipfile.ZipFile, item: _Planned, dest: Path) -> None:
    """Write one member below ``dest`` with a bounded copy: never more bytes than declared."""
    target = dest.joinpath(*item.parts)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    resolved = os.path.realpath(target.parent)
    if os.path.commonpath([resolved, os.path.realpath(dest)]) != os.path.realpath(dest):
        raise UnsafeArchiveError(archive, item.info.orig_filename,
                                 "its folder resolves outside the extraction folder")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
        os, "O_BINARY", 0)
    declared = item.info.file_size
    written = 0
    try:
        with zf.open(item.info) as src, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
            while True:
                chunk = src.read(min(_COPY_CHUNK, declared - written + 1))
                if not chunk:
                    break
                written += len(chunk)
                if written > declared:
                    raise UnsafeArchiveError(archive, item.info.orig_filename,
                                             f"its data inflates beyond its declared size of "
                                             f"{declared:,} bytes; the header lies")
                out.write(chunk)
    except UnsafeArchiveError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise  # our own write failed (disk full, permissions): not the archive's fault
        raise UnsafeArchiveError(archive, item.info.orig_filename,
                                 f"its data is corrupt ({exc})") from None  # bz2's bad data
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error, LZMAError) as exc:
        raise UnsafeArchiveError(archive, item.info.orig_filename,
                                 f"its data is corrupt or does not match its header ({exc})"
                                 ) from None
    if written != declared:
        raise UnsafeArchiveError(archive, item.info.orig_filename,
                                 f"its data holds {written:,} bytes but the header declares "
                                 f"{declared:,}")


@contextlib.contextmanager
def extract_images_zip(path: str | os.PathLike, *, max_members: int = DEFAULT_MAX_MEMBERS,
                       max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                       max_ratio: float = DEFAULT_MAX_RATIO,
                       max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
                       dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """Extract the images of the zip ``path`` into a private temporary folder and yield it;
    the folder (mode 0700, under ``dir`` or the system temp folder) is removed when the
    ``with`` block ends, also on an exception.

    The whole archive is checked first (see the module docstring and :func:`check_zip`);
    :class:`UnsafeArchiveError` refuses it before anything is written. Images keep their
    relative layout; other files, ``__MACOSX/`` and hidden files are skipped.
    """
    with _open_zip(path, max_members) as (archive, zf):
        plan = _plan(archive, zf, max_members=max_members, max_total_bytes=max_total_bytes,
                     max_ratio=max_ratio, max_member_bytes=max_member_bytes)
        dest = Path(tempfile.mkdtemp(prefix="siamface-zip-", dir=dir))
        try:
            os.chmod(dest, 0o700)
            for item in plan:
                _copy_member(archive, zf, item, dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    try:
        yield dest
    finally:
        shutil.rmtree(dest, ignore_errors=True)

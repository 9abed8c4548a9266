"""siamface.archive: real zips built here, crafted ones included; a refused zip writes nothing."""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from siamface.archive import UnsafeArchiveError, check_zip, extract_images_zip
from siamface.errors import DatasetError, SiamfaceError
from siamface.io import find_images

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "siamface" / "examples"
PHOTOS = sorted(EXAMPLES.glob("*.jpg"))


def _zip(path: Path, members: dict[str, bytes], *,
         compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _crafted(path: Path, name: str, data: bytes = b"\xff\xd8 not really a jpeg",
             external_attr: int | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """A zip with one member whose ZipInfo we write ourselves (zipfile would not sanitise it
    on writing), beside an ordinary image. A NUL byte is patched into both headers afterwards
    (ZipInfo cuts a name at NUL)."""
    written = name.replace("\x00", "\x01")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.jpg", PHOTOS[0].read_bytes())
        info = zipfile.ZipInfo(written)
        info.compress_type = zipfile.ZIP_DEFLATED
        if external_attr is not None:
            info.external_attr = external_attr
        zf.writestr(info, data)
        for other, payload in (extra or {}).items():
            zf.writestr(other, payload)
    if written != name:
        raw = path.read_bytes()
        assert raw.count(written.encode()) == 2
        path.write_bytes(raw.replace(written.encode(), name.encode()))
    return path


@pytest.fixture
def scratch(tmp_path) -> Path:
    """The folder extraction folders are made in: must be empty again after every call."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _extract_fails(zip_path: Path, scratch: Path, match: str, **limits) -> UnsafeArchiveError:
    """extract_images_zip raises before its with block runs; no extraction folder is left."""
    block = pytest.raises(UnsafeArchiveError, match=match)
    with block, extract_images_zip(zip_path, dir=scratch, **limits):
        pytest.fail("the with block must not run for a refused zip")
    assert list(scratch.iterdir()) == []
    return block.excinfo.value


def _refused(zip_path: Path, scratch: Path, match: str, **limits) -> UnsafeArchiveError:
    """Both entry points refuse ``zip_path``; nothing is written anywhere under tmp_path."""
    root = zip_path.parent
    before = _snapshot(root)
    with pytest.raises(UnsafeArchiveError, match=match) as info:
        check_zip(zip_path, **limits)
    _extract_fails(zip_path, scratch, match, **limits)
    assert list(scratch.iterdir()) == []  # no extraction folder left behind
    assert _snapshot(root) == before  # and nothing written beside it (no ../evil.jpg)
    assert not (root.parent / "evil.jpg").exists() and not Path("/abs.jpg").exists()
    return info.value


# --- a good zip ---------------------------------------------------------------------------


def test_good_zip_extracts_images_in_their_layout_and_is_removed(tmp_path, scratch):
    members = {
        "people/kofi/one.jpg": PHOTOS[0].read_bytes(),
        "people/kofi/deeper/two.JPG": PHOTOS[1].read_bytes(),
        "people/serena/three.jpg": PHOTOS[2].read_bytes(),
        "top.jpg": PHOTOS[3].read_bytes(),
        "people/notes.txt": b"not an image",
        "__MACOSX/people/._one.jpg": b"resource fork",
        "people/.hidden.jpg": PHOTOS[0].read_bytes(),
        ".git/thumb.jpg": PHOTOS[0].read_bytes(),
        "empty-folder/": b"",
    }
    path = _zip(tmp_path / "faces.zip", members)
    wanted = ["people/kofi/one.jpg", "people/kofi/deeper/two.JPG", "people/serena/three.jpg",
              "top.jpg"]
    assert check_zip(path) == wanted
    with extract_images_zip(path, dir=scratch) as folder:
        assert folder.parent == scratch and stat.S_IMODE(folder.stat().st_mode) == 0o700
        found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert found == sorted(wanted)
        for name in wanted:
            assert (folder / name).read_bytes() == members[name]
        assert len(find_images(folder)) == 4
    assert not folder.exists() and list(scratch.iterdir()) == []


def test_the_default_temp_folder_is_private_and_removed(tmp_path):
    path = _zip(tmp_path / "faces.zip", {"a.jpg": PHOTOS[0].read_bytes()},
                compression=zipfile.ZIP_STORED)
    with extract_images_zip(path) as folder:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "a.jpg").stat().st_mode) == 0o600
    assert not folder.exists()


def test_the_folder_is_removed_when_the_block_raises(tmp_path, scratch):
    path = _zip(tmp_path / "faces.zip", {"a/b.jpg": PHOTOS[0].read_bytes()})
    with pytest.raises(RuntimeError), extract_images_zip(path, dir=scratch) as folder:
        assert (folder / "a" / "b.jpg").is_file()
        raise RuntimeError("boom")
    assert list(scratch.iterdir()) == []


def test_bzip2_and_lzma_members_are_read(tmp_path, scratch):
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("b.jpg", PHOTOS[0].read_bytes(), compress_type=zipfile.ZIP_BZIP2)
        zf.writestr("l.jpg", PHOTOS[1].read_bytes(), compress_type=zipfile.ZIP_LZMA)
    with extract_images_zip(path, dir=scratch) as folder:
        assert (folder / "b.jpg").read_bytes() == PHOTOS[0].read_bytes()
        assert (folder / "l.jpg").read_bytes() == PHOTOS[1].read_bytes()


# --- not a zip ----------------------------------------------------------------------------


def test_not_a_zip_and_missing_files_are_dataset_errors(tmp_path, scratch):
    text = tmp_path / "faces.zip"
    text.write_text("this is not a zip file\n")
    truncated = tmp_path / "cut.zip"
    whole = _zip(tmp_path / "whole.zip", {"a.jpg": PHOTOS[0].read_bytes()}).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    for path, words in ((text, "not a readable zip"), (truncated, "zip"),
                        (tmp_path / "missing.zip", "does not exist")):
        with pytest.raises(DatasetError, match=words) as info:
            check_zip(path)
        assert str(path) in str(info.value) and isinstance(info.value, SiamfaceError)
        with pytest.raises(DatasetError), extract_images_zip(path, dir=scratch):
            pass
    assert list(scratch.iterdir()) == []


# --- crafted names and entries --------------------------------------------------------------


@pytest.mark.parametrize("name, words", [
    ("../evil.jpg", "'..' component"),
    ("faces/../../evil.jpg", "'..' component"),
    ("/abs.jpg", "absolute path"),
    ("C:/evil.jpg", "drive letter"),
    ("C:evil.jpg", "drive letter"),
    ("faces\\..\\..\\evil.jpg", "backslashes"),
    ("\\abs.jpg", "backslashes"),
    ("evil.jpg\x00.txt", "NUL byte"),
    ("faces/evil.jpg:stream", "':'"),
])
def test_unsafe_names_are_refused(tmp_path, scratch, name, words):
    path = _crafted(tmp_path / "bad.zip", name)
    error = _refused(path, scratch, words)
    assert error.member == name and str(path) in str(error)
    assert repr(name) in str(error) and "re-create the zip" in str(error)


def test_a_symlink_entry_is_refused(tmp_path, scratch):
    path = _crafted(tmp_path / "link.zip", "faces/link.jpg", data=b"/etc/passwd",
                    external_attr=0o120777 << 16)
    error = _refused(path, scratch, "symbolic link")
    assert error.member == "faces/link.jpg" and "link.zip" in str(error)


@pytest.mark.parametrize("mode, words", [
    (stat.S_IFIFO | 0o644, "not a regular file"),
    (stat.S_IFCHR | 0o644, "not a regular file"),
    (stat.S_IFDIR | 0o755, "folder without a trailing"),
])
def test_special_entries_are_refused(tmp_path, scratch, mode, words):
    path = _crafted(tmp_path / "special.zip", "faces/x.jpg", external_attr=mode << 16)
    _refused(path, scratch, words)


def test_an_encrypted_member_is_refused(tmp_path, scratch):
    path = _zip(tmp_path / "enc.zip", {"a.jpg": PHOTOS[0].read_bytes()})
    data = bytearray(path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set bit 0 of the flags
        at = data.find(signature) + flag_at
        data[at] |= 0x1
    path.write_bytes(bytes(data))
    _refused(path, scratch, "encrypted")


@pytest.mark.parametrize("names, words", [
    (["faces/a.jpg", "faces/a.jpg"], "the same name"),
    (["faces/A.jpg", "faces/a.jpg"], "case-insensitive"),
    (["Faces/a.jpg", "faces/b.jpg", "FACES/B.JPG"], "case-insensitive"),
    (["caf\u00e9.jpg", "cafe\u0301.jpg"], "case-insensitive"),  # NFC vs NFD
    (["faces/./a.jpg", "faces//a.jpg"], "case-insensitive"),
    (["faces.jpg", "faces.jpg/inner.jpg"], "both a file and a folder"),
])
def test_ambiguous_names_are_refused(tmp_path, scratch, names, words):
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name
        for name in names:
            zf.writestr(name, PHOTOS[0].read_bytes())
    _refused(path, scratch, words)


# --- limits -------------------------------------------------------------------------------


def test_too_many_members_is_refused_before_parsing(tmp_path, scratch, monkeypatch):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(20_001):
            zf.writestr(f"m/{i}.txt", b"x")
    # the end record's count refuses it before zipfile reads 20,001 central-directory entries
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents",
                        lambda self: pytest.fail("the central directory was parsed"))
    error = _refused(path, scratch, "20,001 members, more than the limit 20,000")
    assert error.member is None and "max_members" in str(error)
    monkeypatch.undo()
    assert check_zip(path, max_members=20_001) == []  # .txt members: nothing to extract
    small = _zip(tmp_path / "three.zip", {f"{i}.jpg": b"x" for i in range(3)})
    _refused(small, scratch, "3 members, more than the limit 2", max_members=2)


def test_the_parsed_count_is_checked_too(tmp_path, scratch, monkeypatch):
    """A lying end record (or one this reader cannot find) still meets the parsed count."""
    from siamface import archive

    path = _zip(tmp_path / "three.zip", {f"{i}.jpg": b"x" for i in range(3)})
    monkeypatch.setattr(archive, "_declared_member_count", lambda fh: None)
    _refused(path, scratch, "has 3 members", max_members=2)


def test_a_zip64_end_record_is_counted(tmp_path):
    from siamface import archive

    path = tmp_path / "z64.zip"
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for i in range(3):
            zf.writestr(f"{i}.jpg", b"x")
    data = bytearray(path.read_bytes())
    # rewrite the classic end record as a ZIP64 one would look: counts 0xFFFF + a locator
    at = data.rfind(b"PK\x05\x06")
    entries, cd_size, cd_offset = struct.unpack("<HLL", data[at + 10:at + 20])
    z64 = struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries,
                      cd_size, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    end = bytearray(data[at:])
    end[8:12] = struct.pack("<HH", 0xFFFF, 0xFFFF)
    path.write_bytes(bytes(data[:at]) + z64 + locator + bytes(end))
    with open(path, "rb") as fh:
        assert archive._declared_member_count(fh) == 3
    assert check_zip(path) == ["0.jpg", "1.jpg", "2.jpg"]


def test_a_50mb_member_of_zeros_is_a_zip_bomb(tmp_path, scratch):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("bomb.jpg", bytes(50 << 20))
    assert path.stat().st_size < 1 << 20
    error = _refused(path, scratch, "expands .* times")
    assert error.member == "bomb.jpg" and "max_ratio" in str(error)


def test_the_whole_archive_ratio_is_checked(tmp_path, scratch):
    """Many members each under the ratio floor, together a bomb."""
    members = {f"{i}.txt": bytes(512 << 10) for i in range(8)}  # 4 MiB of zeros
    path = _zip(tmp_path / "spread.zip", members)
    error = _refused(path, scratch, "expands .* times")
    assert error.member is None
    assert check_zip(path, max_ratio=10_000) == []


def test_a_small_compressible_member_is_not_a_bomb(tmp_path, scratch):
    path = _zip(tmp_path / "small.zip", {"flat.bmp": bytes(100_000)})  # ~1000:1, but 100 KB
    with extract_images_zip(path, dir=scratch) as folder:
        assert (folder / "flat.bmp").stat().st_size == 100_000


def test_size_limits(tmp_path, scratch):
    path = _zip(tmp_path / "big.zip", {"a.jpg": PHOTOS[0].read_bytes(),
                                       "b.jpg": PHOTOS[1].read_bytes()},
                compression=zipfile.ZIP_STORED)
    sizes = [p.stat().st_size for p in PHOTOS[:2]]
    error = _refused(path, scratch, "more than the limit 1,000; raise max_member_bytes",
                     max_member_bytes=1_000)
    assert error.member == "a.jpg"
    error = _refused(path, scratch, "raise max_total_bytes", max_total_bytes=sum(sizes) - 1)
    assert error.member is None and f"{sum(sizes):,} bytes" in str(error)
    assert check_zip(path, max_total_bytes=sum(sizes)) == ["a.jpg", "b.jpg"]


# --- headers that lie ---------------------------------------------------------------------


def _set_sizes(path: Path, file_size: int) -> None:
    """Rewrite the declared uncompressed size of the only member, in both headers."""
    data = bytearray(path.read_bytes())
    local = data.find(b"PK\x03\x04")
    data[local + 22:local + 26] = struct.pack("<L", file_size)
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<L", file_size)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_a_member_larger_than_declared_is_refused_while_copying(tmp_path, scratch, compression):
    payload = PHOTOS[0].read_bytes()
    path = _zip(tmp_path / "liar.zip", {"a.jpg": payload}, compression=compression)
    _set_sizes(path, 1000)  # the data holds far more
    assert check_zip(path) == ["a.jpg"]  # the central directory alone looks fine
    before = _snapshot(tmp_path)
    error = _extract_fails(path, scratch, "'a.jpg'")
    assert "corrupt" in str(error) or "declared" in str(error)
    assert list(scratch.iterdir()) == [] and _snapshot(tmp_path) == before


def test_a_member_shorter_than_declared_is_refused(tmp_path, scratch):
    payload = PHOTOS[0].read_bytes()
    path = _zip(tmp_path / "short.zip", {"a.jpg": payload})
    _set_sizes(path, len(payload) + 5000)
    _extract_fails(path, scratch, "'a.jpg'")


def test_corrupt_member_data_is_refused_and_cleaned_up(tmp_path, scratch):
    """The first member extracts, the second is corrupt: the partial folder is removed."""
    path = _zip(tmp_path / "rot.zip", {"a.jpg": PHOTOS[0].read_bytes(),
                                       "b.jpg": PHOTOS[1].read_bytes()})
    data = bytearray(path.read_bytes())
    second = data.find(b"PK\x03\x04", 4)
    name_len, extra_len = struct.unpack("<HH", data[second + 26:second + 30])
    start = second + 30 + name_len + extra_len
    data[start + 100:start + 400] = bytes(300)  # damage the deflate stream
    path.write_bytes(bytes(data))
    _extract_fails(path, scratch, "'b.jpg'.*corrupt")


def test_extractall_is_never_used(tmp_path, scratch, monkeypatch):
    monkeypatch.setattr(zipfile.ZipFile, "extractall",
                        lambda *a, **k: pytest.fail("extractall called"))
    monkeypatch.setattr(zipfile.ZipFile, "extract",
                        lambda *a, **k: pytest.fail("extract called"))
    path = _zip(tmp_path / "faces.zip", {"x/a.jpg": PHOTOS[0].read_bytes()})
    with extract_images_zip(path, dir=scratch) as folder:
        assert (folder / "x" / "a.jpg").is_file()


def test_nothing_outside_even_with_a_symlinked_scratch(tmp_path):
    """The extraction folder is fresh: an attacker cannot pre-plant links inside it."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    os.symlink(real, link)
    path = _zip(tmp_path / "faces.zip", {"a/b.jpg": PHOTOS[0].read_bytes()})
    with extract_images_zip(path, dir=link) as folder:
        assert (folder / "a" / "b.jpg").is_file()
    assert list(real.iterdir()) == []


def test_the_copy_loop_itself_bounds_the_size(tmp_path, scratch, monkeypatch):
    """zipfile already stops at the declared size (then fails the CRC); the copy loop does
    not rely on it: a reader that yields more than declared is refused after one extra byte."""
    import io

    payload = PHOTOS[0].read_bytes()
    path = _zip(tmp_path / "faces.zip", {"a.jpg": payload})
    reads: list[int] = []

    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def read(self, n=-1):
            reads.append(n)
            return b"\0" * n

    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *a, **k: Endless())
    _extract_fails(path, scratch, f"inflates beyond its declared size of {len(payload):,} bytes")
    assert sum(reads) <= len(payload) + 1 + (1 << 16)

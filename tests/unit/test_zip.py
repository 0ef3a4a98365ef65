"""Safe zip extraction (AdapterHub's archived adapters are zips): sha256 first, then every member
checked before a byte is written, bytes counted while decompressing, and the staging directory left
empty on any failure. The hostile archives are built with zipfile and, where zipfile will not write
the lie, patched byte by byte. Torch-free."""

from __future__ import annotations

import hashlib
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from adapterhub_client._zip import extract_zip
from adapterhub_client.errors import IntegrityError, InvalidPackageError, NotFoundError, UsageError

MiB = 1 << 20
CONFIG = b'{"config": {"mh_adapter": false}, "name": "sst-2"}'
WEIGHTS = bytes(range(256)) * 64


def make_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    d = tmp_path / "work" / "staging"
    d.mkdir(parents=True)
    return d


def extract(archive: Path, dest: Path, max_bytes: int = MiB, max_members: int = 100, sha: str | None = "") -> list[str]:
    return extract_zip(
        archive,
        dest,
        expected_sha256=sha256(archive) if sha == "" else sha,
        max_bytes=max_bytes,
        max_members=max_members,
    )


def refused(archive: Path, dest: Path, max_bytes: int = MiB, max_members: int = 100) -> InvalidPackageError:
    """Extraction fails with exit 7, leaves `dest` empty and writes nothing anywhere else."""
    root = dest.parent.parent
    before = tree(root)
    with pytest.raises(InvalidPackageError) as err:
        extract(archive, dest, max_bytes=max_bytes, max_members=max_members)
    assert err.value.exit_code == 7
    assert list(dest.iterdir()) == []
    assert tree(root) == before
    assert "\n" not in str(err.value)
    return err.value


def patch_member(
    archive: Path, name: str, *, file_size: int | None = None, crc: int | None = None, flags: int | None = None
) -> None:
    """Rewrite a member's uncompressed size, CRC or flags in its local header AND the central directory
    (zipfile reads the directory; streaming unzippers read the local header): a lying header."""
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
        cd = zf.start_dir
    headers = [info.header_offset]  # local header: flags at +6, crc at +14, uncompressed size at +22
    pos = cd
    while raw[pos : pos + 4] == b"PK\x01\x02":  # central directory entries: crc +16, size +24, name +46
        nlen, xlen, clen = struct.unpack("<HHH", raw[pos + 28 : pos + 34])
        if raw[pos + 46 : pos + 46 + nlen].decode() == name:
            headers.append(pos + 2)  # same field order as the local header, two bytes later
        pos += 46 + nlen + xlen + clen
    assert len(headers) == 2
    for at in headers:
        if flags is not None:
            struct.pack_into("<H", raw, at + 6, flags)
        if crc is not None:
            struct.pack_into("<I", raw, at + 14, crc)
        if file_size is not None:
            struct.pack_into("<I", raw, at + 22, file_size)
    archive.write_bytes(bytes(raw))


# --- what extracts -----------------------------------------------------------------------------


def test_a_flat_archive_extracts_as_it_is(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), ("pytorch_adapter.bin", WEIGHTS)])
    assert extract(archive, staging) == ["adapter_config.json", "pytorch_adapter.bin"]
    assert (staging / "adapter_config.json").read_bytes() == CONFIG
    assert (staging / "pytorch_adapter.bin").read_bytes() == WEIGHTS


def test_one_common_top_folder_is_stripped(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(
        tmp_path / "a.zip",
        [
            ("sst-2/", b""),
            ("sst-2/adapter_config.json", CONFIG),
            ("sst-2/head/head_config.json", b"{}"),
            ("__MACOSX/sst-2/._adapter_config.json", b"\x00\x05\x16\x07"),  # macOS resource forks: skipped
        ],
    )
    assert extract(archive, staging) == ["adapter_config.json", "head/head_config.json"]
    assert tree(staging) == {"adapter_config.json", "head", "head/head_config.json"}


def test_two_top_folders_are_kept(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("a/x.json", b"1"), ("b/y.json", b"2")])
    assert extract(archive, staging) == ["a/x.json", "b/y.json"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    archive = make_zip(tmp_path / "b.zip", [("only.json", b"1")])
    assert extract(archive, fresh) == ["only.json"]


def test_the_sha256_is_checked_before_the_archive_is_read(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG)])
    with pytest.raises(IntegrityError) as err:
        extract(archive, staging, sha="0" * 64)
    assert err.value.exit_code == 4 and sha256(archive) in str(err.value)
    not_a_zip = tmp_path / "b.zip"
    not_a_zip.write_bytes(b"not a zip at all")
    with pytest.raises(IntegrityError):  # the hash, not the parser, refuses it
        extract(not_a_zip, staging, sha="0" * 64)
    assert refused(not_a_zip, staging) is not None  # with the right sha256, the parser does
    assert list(staging.iterdir()) == []
    assert extract(archive, staging, sha=sha256(archive).upper()) == ["adapter_config.json"]


def test_the_staging_directory_must_exist_and_be_empty(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG)])
    (staging / "left-over").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        extract(archive, staging)
    with pytest.raises(UsageError, match="does not exist"):
        extract(archive, tmp_path / "missing")
    (staging / "left-over").unlink()
    with pytest.raises(NotFoundError):
        extract_zip(tmp_path / "gone.zip", staging, expected_sha256=None, max_bytes=MiB, max_members=10)


# --- hostile members ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.json",
        "adapter/../../evil.json",
        "/tmp/evil.json",
        "C:/evil.json",
        "C:evil.json",
        "..\\evil.json",
        "adapter\\..\\..\\evil.json",
        "a//b.json",
        "./a.json",
        "a/./b.json",
        "bell\x07.json",
    ],
)
def test_unsafe_paths_are_refused_by_name(tmp_path: Path, staging: Path, name: str) -> None:
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), (name, b"pwned")])
    err = refused(archive, staging)
    assert repr(name)[1:-1][:20] in str(err)


def _special(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: external_attr's high half is st_mode
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    ("mode", "named"),
    [
        (stat.S_IFLNK | 0o777, "symbolic link"),
        (stat.S_IFIFO | 0o644, "special file"),
        (stat.S_IFCHR | 0o644, "special file"),
        (stat.S_IFBLK | 0o644, "special file"),
        (stat.S_IFSOCK | 0o644, "special file"),
    ],
)
def test_links_and_special_files_are_refused(tmp_path: Path, staging: Path, mode: int, named: str) -> None:
    # a symlink member's data is its target: extracted by a naive unzipper it points out of the folder
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), (_special("weights", mode), b"/etc")])
    err = refused(archive, staging)
    assert "'weights'" in str(err) and named in str(err)


@pytest.mark.parametrize(
    "names",
    [
        ["adapter_config.json", "adapter_config.json"],
        ["Adapter_Config.json", "adapter_config.json"],  # one file on a case-insensitive disk
        ["caf\u00e9.json", "cafe\u0301.json"],  # one file on a normalising disk
        ["weights", "weights/"],
        ["weights", "weights/inner.bin"],  # a file used as a folder
    ],
)
def test_names_that_collide_are_refused(tmp_path: Path, staging: Path, names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name, and writes it
        archive = make_zip(tmp_path / "a.zip", [(n, b"" if n.endswith("/") else b"x") for n in names])
    refused(archive, staging)


def test_encrypted_members_are_refused(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), ("pytorch_adapter.bin", WEIGHTS)])
    patch_member(archive, "pytorch_adapter.bin", flags=0x1)  # zipfile writes no encryption itself
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("pytorch_adapter.bin").flag_bits & 0x1
    assert "member 'pytorch_adapter.bin' is encrypted" in str(refused(archive, staging))  # before any write


def test_too_many_members_are_refused_before_any_is_written(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [(f"f{i}.json", b"{}") for i in range(4)])
    assert "4 members, more than the limit of 3" in str(refused(archive, staging, max_members=3))
    assert extract(archive, staging, max_members=4) == [f"f{i}.json" for i in range(4)]


def test_declared_sizes_over_the_cap_are_refused(tmp_path: Path, staging: Path) -> None:
    big = bytes(3000)  # compresses to a few bytes: only the declared size shows it
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), ("pytorch_adapter.bin", big)])
    assert archive.stat().st_size < 1000
    err = refused(archive, staging, max_bytes=2000)
    assert "'pytorch_adapter.bin'" in str(err) and "2000 uncompressed bytes" in str(err)
    assert len(extract(archive, staging, max_bytes=len(big) + len(CONFIG))) == 2


def test_a_lying_size_header_cannot_get_past_the_cap(tmp_path: Path, staging: Path) -> None:
    bomb = bytes(4 * MiB)  # deflates to about 4 KB
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), ("pytorch_adapter.bin", bomb)])
    patch_member(archive, "pytorch_adapter.bin", file_size=100)  # declares 100 bytes in both headers
    with zipfile.ZipFile(archive) as zf:
        assert sum(i.file_size for i in zf.infolist()) < 200  # the declared sizes pass any cap
    err = refused(archive, staging, max_bytes=1000)
    assert "'pytorch_adapter.bin'" in str(err)
    assert "CRC" in str(err) or "declared" in str(err)


def test_a_member_whose_crc_fails_is_refused_and_earlier_members_removed(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), ("pytorch_adapter.bin", WEIGHTS)])
    patch_member(archive, "pytorch_adapter.bin", crc=0xDEADBEEF)
    err = refused(archive, staging)  # adapter_config.json was written first, then removed
    assert "'pytorch_adapter.bin' fails its CRC check" in str(err)


def test_a_corrupt_deflate_stream_is_refused(tmp_path: Path, staging: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("pytorch_adapter.bin", WEIGHTS)])
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("pytorch_adapter.bin")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start : start + 8] = b"\xff" * 8
    archive.write_bytes(bytes(raw))
    assert "'pytorch_adapter.bin'" in str(refused(archive, staging))

"""Archive members (wheels, ``.zip``, ``.tar.*``) read and extracted safely: the one rule for
member names and types, size caps, and streamed copies.

A member used is a regular file whose name is a relative path that stays inside the target
folder (``..``, absolute paths, drive letters, backslashes and NUL are refused); symbolic and hard
links, devices and FIFOs are refused. Each member and the total extracted are capped, and data is
copied in chunks (an extracted member is never held in memory; a member read in place is read
once into one buffer). Every refusal is a one-line :class:`~key2mesh.errors.Key2MeshError` naming
the archive and the member."""

from __future__ import annotations

import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from key2mesh.errors import Key2MeshError
from key2mesh.safe_paths import atomic_path

MAX_MEMBER_BYTES = 4 << 30  # one extracted member
MAX_TOTAL_BYTES = 16 << 30  # all members of one extraction
MAX_READ_BYTES = 512 << 20  # one member read into memory (text parsed in place)
CHUNK = 1 << 20
_ERRORS = (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, lzma.LZMAError, zlib.error)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


def member_path(name: str, archive: str | Path = "archive") -> PurePosixPath:
    """The relative path of member ``name``; refused when it could leave the target folder."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    why = (
        "a NUL character" if "\x00" in name
        else "a backslash" if "\\" in name
        else "an absolute path" if name.startswith("/")
        else "a drive letter" if re.match(r"[A-Za-z]:", name)
        else "'..'" if ".." in parts
        else "an empty name" if not parts
        else None
    )  # fmt: skip
    if why:
        raise Key2MeshError(
            f"{archive}: member {name!r} is refused ({why}: it could point outside the folder)"
        )
    return PurePosixPath(*parts)


def _zip_type(info: zipfile.ZipInfo) -> str | None:
    """What a zip member is besides a regular file (from its Unix mode bits), or None."""
    mode = info.external_attr >> 16
    if not stat.S_IFMT(mode) or stat.S_ISREG(mode):
        return None
    return "a symbolic link" if stat.S_ISLNK(mode) else "a special file"


def _tar_type(info: tarfile.TarInfo) -> str | None:
    if info.isfile():
        return None
    if info.issym() or info.islnk():
        return "a link"
    return "a device or FIFO" if info.isdev() else "not a regular file"


@contextmanager
def _errors(archive: Path) -> Iterator[None]:
    try:
        yield
    except _ERRORS as exc:
        reason = (str(exc).splitlines() or [""])[0].rstrip(": ") or type(exc).__name__
        raise Key2MeshError(f"cannot read archive {archive}: {reason}") from exc


def _members(
    archive: Path, want: Callable[[str], bool]
) -> Iterator[tuple[str, PurePosixPath, int, Callable[[], IO[bytes]]]]:
    """(name, relative path, size, opener) of the members ``want`` keeps (on the raw name),
    checked; folders are skipped. Zip members in name order, tar members in archive order."""
    if archive.name.lower().endswith(".zip") or archive.suffix.lower() == ".whl":
        with zipfile.ZipFile(archive) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir() or not want(info.filename):
                    continue
                _refuse(archive, info.filename, _zip_type(info))
                path = member_path(info.filename, archive)
                yield info.filename, path, info.file_size, lambda info=info: zf.open(info)
    else:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                if info.isdir() or not want(info.name):
                    continue
                _refuse(archive, info.name, _tar_type(info))
                path = member_path(info.name, archive)
                yield info.name, path, info.size, lambda info=info: tar.extractfile(info)


def _refuse(archive: Path, name: str, kind: str | None) -> None:
    if kind:
        raise Key2MeshError(f"{archive}: member {name!r} is refused ({kind}, not a regular file)")


def _too_big(archive: Path, name: str, size: int, cap: int, what: str) -> Key2MeshError:
    return Key2MeshError(
        f"{archive}: member {name!r} is refused ({size:,} bytes; {what} is capped at {cap:,})"
    )


def read_members(
    archive: str | Path, want: Callable[[str], bool], max_bytes: int | None = None
) -> Iterator[tuple[str, bytearray]]:
    """(name, data) of each member of ``archive`` (zip or tar) that ``want`` keeps, one at a
    time, each read once into one buffer of at most ``max_bytes`` (default
    :data:`MAX_READ_BYTES`)."""
    archive = Path(archive)
    cap = MAX_READ_BYTES if max_bytes is None else max_bytes
    with _errors(archive):
        for name, _, size, opener in _members(archive, want):
            if size > cap:
                raise _too_big(archive, name, size, cap, "a member read into memory")
            buf = bytearray(size)
            got = 0
            with opener() as src, memoryview(buf) as view:
                while got < size and (n := src.readinto(view[got : got + CHUNK])):
                    got += n
                extra = src.read(1)
            if got != size or extra:
                raise Key2MeshError(f"{archive}: member {name!r} is not {size:,} bytes long")
            yield name, buf


def _copy(src: IO[bytes], dst: IO[bytes], limit: int) -> int:
    """Copy in chunks (as ``shutil.copyfileobj``), at most ``limit`` bytes; the bytes copied, or
    -1 when there was more."""
    done = 0
    while chunk := src.read(min(CHUNK, limit - done + 1)):
        done += len(chunk)
        if done > limit:
            return -1
        dst.write(chunk)
    return done


def extract_members(
    archive: str | Path,
    target: str | Path,
    want: Callable[[str], bool],
    max_member: int | None = None,
    max_total: int | None = None,
) -> list[Path]:
    """Extract the members of ``archive`` that ``want`` keeps into ``target`` (each written
    atomically; one already there with the same size is kept) → their paths, in member order.
    Caps: ``max_member`` bytes per member, ``max_total`` in all (defaults
    :data:`MAX_MEMBER_BYTES`, :data:`MAX_TOTAL_BYTES`)."""
    archive, root = Path(archive), Path(target).resolve()
    per = MAX_MEMBER_BYTES if max_member is None else max_member
    cap = MAX_TOTAL_BYTES if max_total is None else max_total
    out: list[Path] = []
    total = 0
    with _errors(archive):
        for name, rel, size, opener in _members(archive, want):
            if size > per:
                raise _too_big(archive, name, size, per, "one member")
            total += size
            if total > cap:
                raise _too_big(archive, name, size, cap, "the whole extraction")
            dest = root.joinpath(*rel.parts)
            if not dest.parent.resolve().is_relative_to(root):  # a linked folder in the way
                raise Key2MeshError(f"{archive}: member {name!r} would be written outside {root}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or not dest.is_file() or dest.stat().st_size != size:
                with opener() as src, atomic_path(dest) as tmp, open(tmp, "xb") as dst:
                    if _copy(src, dst, size) != size:
                        raise Key2MeshError(
                            f"{archive}: member {name!r} is not {size:,} bytes long"
                        )
            out.append(dest)
    return out

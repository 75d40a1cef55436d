"""Safe output paths: names read from input files become plain file names (never a path out of
the output folder), and output files are written atomically (temp file in the same folder, then
``os.replace``), so a full disk or a crash never leaves a half-written output."""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from key2mesh.errors import Key2MeshError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120  # characters; leaves room for suffixes within the usual 255-byte limit


def safe_name(name: object, default: str = "frame") -> str:
    """A plain file name from ``name``: only ``[A-Za-z0-9._-]`` (every other run of characters,
    path separators and NUL included, becomes ``_``), no leading dots, underscores or dashes (a
    name never reads as an option), at most ``MAX_NAME`` characters; ``default`` when nothing is
    left. ``"../../evil"`` → ``"evil"``, ``"/etc/passwd"`` → ``"etc_passwd"``."""
    text = _UNSAFE.sub("_", str(name)).lstrip("._-")[:MAX_NAME].rstrip("_")
    return text if text.strip(".") else default


def natural_key(name: str) -> list:
    """Text and number runs alternating (text first), for sorting file names so that frame_10
    comes after frame_9. The number runs are the split's odd parts: ``str.isdigit`` also holds
    for '²', which ``int`` refuses."""
    return [int(t) if i % 2 else t.lower() for i, t in enumerate(re.split(r"(\d+)", name))]


def unique_names(
    names: Iterable[object], default: str = "frame", taken: Iterable[str] = ()
) -> list[str]:
    """:func:`safe_name` of each name, made unique in order: ``a``, ``a_1``, ``a_2``, ...
    (case-insensitively, so they stay distinct on case-insensitive file systems), and different
    from every name in ``taken``."""
    used: set[str] = {t.lower() for t in taken}
    out = []
    for name in names:
        base = safe_name(name, default)
        candidate, i = base, 0
        while candidate.lower() in used:
            i += 1
            candidate = f"{base}_{i}"
        used.add(candidate.lower())
        out.append(candidate)
    return out


def input_stem(path: str | os.PathLike) -> str:
    """The raw stem an input gives its outputs: the name without its last suffix
    (``clip.v2.mp4`` → ``clip.v2``); a folder or a name without suffix keeps its whole name."""
    path = Path(path)
    return path.name if not path.suffix or path.is_dir() else path.stem


def output_stems(paths: Iterable[str | os.PathLike], taken: Iterable[str] = ()) -> list[str]:
    """The one naming rule for outputs named after inputs (predict, demo, exports, meshes): each
    input's :func:`input_stem`, made a safe and unique name (``input`` when nothing is left),
    none of ``taken``."""
    return unique_names((input_stem(p) for p in paths), default="input", taken=taken)


def stem_path(folder: str | os.PathLike, stem: str, tail: str) -> Path:
    """``folder/<stem><tail>``: the tail is appended, never put in place of a suffix
    (``with_suffix`` turns ``two.people_track0`` into ``two.bvh``, losing the track id)."""
    return Path(folder) / f"{stem}{tail}"


def output_file(path: str | os.PathLike, suffix: str) -> Path:
    """``path`` as it is written: ``suffix`` appended when missing (``X`` → ``X.npz``, as
    ``np.savez`` does), so checks against the inputs see the real name."""
    path = Path(path)
    return path if path.name.endswith(suffix) else path.with_name(path.name + suffix)


# ---------------------------------------------------------------------------------------- outputs

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
}


def write_error(path: str | os.PathLike, exc: OSError) -> Key2MeshError:
    """A one-line user error for a failed write of ``path`` (every writer here is atomic, so a full
    disk leaves the previous file as it was)."""
    path = Path(path)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Key2MeshError(
            f"{_REASONS[exc.errno]} while writing {path}; the previous file is unchanged"
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return Key2MeshError(f"cannot write {path}: {blocker} is a file, not a folder")
    reason = _REASONS.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__
    return Key2MeshError(f"cannot write {path}: {reason}")


def _host_tag() -> str:
    """8 hex digits naming this machine in temp names (a process id means something on its own
    machine only: on shared storage, another node's live process is not visible here)."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temp_name(path: Path) -> Path:
    """A fresh name next to ``path`` with the same suffix (writers that pick the format from it),
    holding this machine's tag and process id (see :func:`remove_stale_temps`)."""
    return path.with_name(
        f".{path.name[:MAX_NAME]}.{_host_tag()}-{os.getpid()}.{secrets.token_hex(4)}"
        f".tmp{path.suffix}"
    )


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write to the yielded temporary path in ``path``'s folder; it replaces ``path`` when the block
    ends without an error and is removed otherwise, so ``path`` is never half-written (a full disk
    or a crash leaves the previous file intact). OS errors become one-line :class:`Key2MeshError`."""
    path = Path(path)
    if path.is_dir():
        raise Key2MeshError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    tmp = temp_name(path)
    try:
        yield tmp
        fsync_file(tmp)  # the data is on disk before the new name points at it
        _keep_mode(path, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def _keep_mode(path: Path, tmp: Path) -> None:
    """Give ``tmp`` the permission bits of the file ``path`` it replaces (a private file stays
    private); a new file keeps the umask's. A file system without modes (FAT, some network
    shares) is not an error."""
    with suppress(OSError):
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk (a crash after ``os.replace`` never leaves an empty file
    under the final name); a file system that cannot fsync is not an error."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


# temp names: .NAME.HOST-PID.TOKEN.tmp[.SUFFIX] (HOST absent in names from before it was added)
_TEMP = re.compile(r"\..+\.(?:([0-9a-f]{8})-)?(\d+)\.[0-9a-f]{8}\.tmp(\.[^.]*)?")
# a temp of another machine (shared storage: its process cannot be checked from here) is
# removed only once it is this old
FOREIGN_TEMP_AGE_S = 2 * 24 * 3600


def remove_stale(
    folder: str | os.PathLike, pattern: str, keep: Iterable[str | os.PathLike]
) -> list[Path]:
    """Delete the files directly in ``folder`` whose names fully match the regular expression
    ``pattern`` and that are not in ``keep``: what an earlier run wrote under this run's names
    and this run did not write again (a track that is gone, a frame no longer predicted), so
    that a rerun into the same folder leaves no outputs of another input. Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    regex = re.compile(pattern)
    kept = {Path(p).resolve() for p in keep}
    stale = [
        p
        for p in folder.iterdir()
        if p.is_file() and regex.fullmatch(p.name) and p.resolve() not in kept
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def remove_stale_temps(folder: str | os.PathLike, folders: bool = False) -> list[Path]:
    """Delete the temp files (:func:`temp_name`) that killed processes left in ``folder``: those
    of this machine's process ids no longer running (a checkpoint's is ~40 MB); with
    ``folders``, temp-named folders too (an output folder being built). A temp of another
    machine (a shared folder: a Slurm array, a Ray cluster) is left alone until it is
    :data:`FOREIGN_TEMP_AGE_S` old, since its process may be running there. Returns what was
    removed."""
    import shutil
    import time

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    host = _host_tag()
    for p in folder.iterdir():
        m = _TEMP.fullmatch(p.name)
        if m is None:
            continue
        if m.group(1) is None or m.group(1) == host:  # this machine's (or an old-style name)
            if _running(int(m.group(2))):
                continue
        else:
            try:
                if time.time() - p.lstat().st_mtime < FOREIGN_TEMP_AGE_S:
                    continue
            except OSError:
                continue
        is_dir = p.is_dir() and not p.is_symlink()
        if not (p.is_file() or (folders and is_dir)):
            continue
        with suppress(OSError):
            shutil.rmtree(p) if is_dir else p.unlink()
            removed.append(p)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process (or unknowable): leave its file alone
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path: str | os.PathLike, compressed: bool = False, **arrays) -> Path:
    """``np.savez`` (``.npz`` appended when missing, as NumPy does), written atomically."""
    import numpy as np

    path = output_file(path, ".npz")
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return path


def refuse_overwriting_inputs(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], option: str = "--out"
) -> None:
    """Key2MeshError when the output path is one of the input files (same file, by any path)."""
    out = Path(out)
    for inp in inputs:
        if inp is not None and _same_file(out, Path(inp)):
            raise Key2MeshError(
                f"{option} {out} is the input {inp}; writing it would destroy the input, choose another path"
            )


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    if a.exists() and b.exists():
        with suppress(OSError):
            return os.path.samefile(a, b)
    return False


class OutputNames:
    """The files one run writes, each claimed before it is written: never one of ``inputs``,
    never a file another output of the run already claimed (one-line :class:`Key2MeshError`
    naming both, ``option`` telling the user what to change)."""

    def __init__(self, inputs: Iterable[str | os.PathLike | None], option: str = "--out"):
        self.inputs = [Path(p) for p in inputs if p is not None]
        self.option = option
        self._claimed: dict[Path, str] = {}
        self._families: list[tuple[Path, re.Pattern, str]] = []  # (folder, name pattern, what)

    def claim(self, path: str | os.PathLike, what: str) -> Path:
        """``path``, after checking it is no input and no other output (``what``: how the
        error names it, e.g. ``"--out"`` or ``"the motion table of a.npz"``)."""
        path = Path(path)
        refuse_overwriting_inputs(path, self.inputs, what)
        key = path.resolve()
        other = self._claimed.get(key)
        if other is None:
            other = next(
                (w for d, pat, w in self._families if key.parent == d and pat.fullmatch(key.name)),
                None,
            )
        if other is not None and other != what:
            raise Key2MeshError(
                f"{path} is both {other} and {what}: one would overwrite the other; "
                f"choose another {self.option}"
            )
        self._claimed[key] = what
        return path

    def claim_family(self, folder: str | os.PathLike, pattern: str, what: str) -> None:
        """Reserve every name in ``folder`` that fully matches the regular expression ``pattern``
        (files whose names are known only later, e.g. one per track)."""
        folder, regex = Path(folder).resolve(), re.compile(pattern)
        for key, other in self._claimed.items():
            if key.parent == folder and regex.fullmatch(key.name) and other != what:
                raise Key2MeshError(
                    f"{key} is both {other} and one of {what}: one would overwrite the other; "
                    f"choose another {self.option}"
                )
        self._families.append((folder, regex, what))

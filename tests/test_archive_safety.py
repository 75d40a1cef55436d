"""Crafted wheels and archives: members that would leave the target folder, links, devices and
oversized members are refused with one line, and nothing is written outside the cache."""

from __future__ import annotations

import io
import stat
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from key2mesh import safe_extract
from key2mesh.data.demo_inputs import demo_available
from key2mesh.data.mocap.cmu import _iter_files, load_asf_amc_files, load_bvh_files
from key2mesh.data.wheels import extract
from key2mesh.errors import Key2MeshError
from key2mesh.safe_extract import extract_members, member_path, read_members

WHEEL = "pybullet-3.2.7-cp310-cp310-manylinux_2_17_x86_64.whl"
PREFIX = "pybullet_data/data/motions/"


def _zip(path: Path, members: list) -> Path:
    """``members``: (name, bytes) or (ZipInfo, bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A wheel folder and a cache inside ``tmp_path/work``; escapes land in ``tmp_path``."""
    work = tmp_path / "work" / "a" / "b"
    monkeypatch.setenv("KEY2MESH_WHEEL_DIR", str(work / "wheels"))
    monkeypatch.setenv("KEY2MESH_CACHE_DIR", str(work / "cache"))
    return work


def _check_refused(env, tmp_path, members, match):
    _zip(env / "wheels" / WHEEL, members)
    before = _files(tmp_path)
    with pytest.raises(Key2MeshError, match=match) as err:
        extract("pybullet", PREFIX)
    assert "\n" not in str(err.value) and WHEEL in str(err.value)
    new = _files(tmp_path) - before
    assert all(p.is_relative_to(env / "cache") for p in new), new
    assert not [p for p in new if p.is_symlink()]
    return err


@pytest.mark.parametrize(
    "name, why",
    [
        (PREFIX + "../../../../../../../escape.txt", "'..'"),
        (PREFIX + "x/../../../../../../../../escape.txt", "'..'"),
        (PREFIX + "..\\..\\..\\escape.txt", "backslash"),
    ],
)
def test_wheel_member_leaving_the_cache_is_refused(env, tmp_path, name, why):
    err = _check_refused(env, tmp_path, [(PREFIX + "ok.txt", b"ok"), (name, b"evil")], why)
    assert (
        not (tmp_path / "escape.txt").exists() and not (tmp_path / "work" / "escape.txt").exists()
    )
    assert "escape" in str(err.value)


def test_wheel_symlink_member_is_refused(env, tmp_path):
    members = [(_symlink_info(PREFIX + "link.txt"), b"/etc/passwd")]
    _check_refused(env, tmp_path, members, "symbolic link")


def test_wheel_member_over_the_cap_is_refused(env, tmp_path, monkeypatch):
    monkeypatch.setattr(safe_extract, "MAX_MEMBER_BYTES", 100)
    members = [(PREFIX + "small.txt", b"x" * 100), (PREFIX + "big.txt", b"x" * 101)]
    _check_refused(env, tmp_path, members, r"big\.txt.*101 bytes.*capped at 100")
    monkeypatch.setattr(safe_extract, "MAX_MEMBER_BYTES", 1000)
    monkeypatch.setattr(safe_extract, "MAX_TOTAL_BYTES", 150)
    _check_refused(env, tmp_path, members, "whole extraction is capped at 150")


def test_a_good_wheel_still_extracts_and_is_idempotent(env):
    wheel = _zip(
        env / "wheels" / WHEEL,
        [(PREFIX + "a.txt", b"a" * 5000), (PREFIX + "sub/b.txt", b"b"), ("other/c.txt", b"c")],
    )
    out = extract("pybullet", PREFIX, (".txt",))
    root = (env / "cache" / "extracted" / wheel.stem).resolve()
    assert out == [root / PREFIX / "a.txt", root / PREFIX / "sub/b.txt"]
    assert out[0].read_bytes() == b"a" * 5000 and out[1].read_bytes() == b"b"
    stamp = out[0].stat().st_mtime_ns
    assert extract("pybullet", PREFIX, (".txt",)) == out and out[0].stat().st_mtime_ns == stamp
    assert _files(root) == set(out)  # no temp files left


@pytest.mark.parametrize(
    "name",
    ["/etc/evil", "C:/evil", "c:evil", "..", "a/../../b", "\\\\server\\x", "a\x00b", "", "./"],
)
def test_member_path_refuses_names_that_could_leave_the_folder(name):
    with pytest.raises(Key2MeshError, match="is refused"):
        member_path(name, "a.zip")


def test_member_path_normalises_harmless_names():
    assert str(member_path("./a//b/./c.txt")) == "a/b/c.txt"


def test_extract_members_refuses_absolute_members(tmp_path):
    arch = _zip(tmp_path / "a.zip", [("/tmp/abs_evil.txt", b"x")])
    with pytest.raises(Key2MeshError, match="absolute path"):
        extract_members(arch, tmp_path / "out", lambda n: True)
    assert not (tmp_path / "out").exists()


def test_extract_members_does_not_write_through_a_linked_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "d").symlink_to(outside)
    arch = _zip(tmp_path / "a.zip", [("d/x.txt", b"x")])
    with pytest.raises(Key2MeshError, match="outside"):
        extract_members(arch, tmp_path / "out", lambda n: True)
    assert not list(outside.iterdir())


# --------------------------------------------------------------------------- archives read in place


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file_info(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def _link_info(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "member, match",
    [
        ((_file_info("../x.bvh", b"HIERARCHY"), b"HIERARCHY"), "'..'"),
        ((_file_info("/abs/x.bvh", b"HIERARCHY"), b"HIERARCHY"), "absolute path"),
        ((_link_info("x.bvh", tarfile.SYMTYPE, "/etc/passwd"), None), "a link"),
        ((_link_info("x.bvh", tarfile.LNKTYPE, "a.bvh"), None), "a link"),
        ((_link_info("x.bvh", tarfile.CHRTYPE, ""), None), "device"),
    ],
)
def test_cmu_tar_with_unsafe_member_is_refused(tmp_path, member, match):
    arch = _tar(tmp_path / "cmu.tar.gz", [(_file_info("a.bvh", b"x"), b"x"), member])
    with pytest.raises(Key2MeshError, match=match) as err:
        load_bvh_files([arch])
    assert str(arch) in str(err.value) and "\n" not in str(err.value)


def test_cmu_zip_with_symlink_member_is_refused(tmp_path):
    arch = _zip(tmp_path / "cmu.zip", [(_symlink_info("07/07.asf"), b"/etc/passwd")])
    with pytest.raises(Key2MeshError, match="symbolic link"):
        load_asf_amc_files([arch])


def test_cmu_member_over_the_read_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_extract, "MAX_READ_BYTES", 1000)
    arch = _tar(tmp_path / "cmu.tar.gz", [(_file_info("big.bvh", b"x" * 1001), b"x" * 1001)])
    with pytest.raises(Key2MeshError, match=r"big\.bvh.*1,001 bytes.*capped at 1,000"):
        load_bvh_files([arch])
    arch = _zip(tmp_path / "cmu.zip", [("big.bvh", b"x" * 1001)])
    with pytest.raises(Key2MeshError, match=r"big\.bvh.*1,001 bytes"):
        load_bvh_files([arch])


@pytest.mark.parametrize("kind", ["zip", "tar.xz"])
def test_members_are_read_into_one_buffer(tmp_path, kind):
    """A member read in place costs about its size once (was: the bytes concatenated from the
    decompressor's chunks, ~2× its size, before the text was decoded)."""
    size = 24 << 20
    data = bytes(range(256)) * (size // 256)
    if kind == "zip":
        arch = tmp_path / "a.zip"
        with zipfile.ZipFile(arch, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("a.bvh", data)
    else:
        arch = tmp_path / "a.tar.xz"
        with tarfile.open(arch, "w:xz", preset=0) as tar:
            tar.addfile(_file_info("a.bvh", data), io.BytesIO(data))
    del data
    tracemalloc.start()
    try:
        for _, got in _iter_files(arch, (".bvh",)):
            assert len(got) == size
            del got
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * size, f"peak {peak / size:.2f}× the member"


def test_read_members_yields_the_data(tmp_path):
    arch = _zip(tmp_path / "a.zip", [("b.txt", b"bb"), ("a.txt", b"a"), ("c.bin", b"c")])
    got = list(read_members(arch, lambda n: n.endswith(".txt")))
    assert got == [("a.txt", bytearray(b"a")), ("b.txt", bytearray(b"bb"))]


DEMO_WHEEL = "pose2sim-0.10.49-py3-none-any.whl"
CALIB = "Pose2Sim/Demo_SinglePerson/calibration/Calib.qca.txt"


def _fake_pip(monkeypatch, wheel: bytes, killed: list[bool]):
    """``subprocess.run`` of ``pip download``: writes the wheel into ``-d`` (half of it, as a
    download killed while pip copies it there, while ``killed`` says so); the calls."""
    import subprocess

    from key2mesh.data import wheels

    calls = []

    def run(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        calls.append(dest)
        if killed and killed.pop(0):
            (dest / DEMO_WHEEL).write_bytes(wheel[: len(wheel) // 2])
            return subprocess.CompletedProcess(cmd, -9, "", "Killed")
        if not (dest / DEMO_WHEEL).exists():  # pip keeps a file already there
            (dest / DEMO_WHEEL).write_bytes(wheel)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(wheels.subprocess, "run", run)
    return calls


def test_a_killed_download_is_never_reused_as_the_wheel(tmp_path, monkeypatch):
    """pip copies a wheel into its folder with ``shutil.copy``: a download killed there (or read
    by a second process while the first copies) left a truncated wheel under the final name,
    taken as the cached wheel by every later run ('File is not a zip file' forever)."""
    monkeypatch.delenv("KEY2MESH_WHEEL_DIR", raising=False)
    monkeypatch.setenv("KEY2MESH_CACHE_DIR", str(tmp_path / "cache"))
    wheel = _zip(tmp_path / "src" / DEMO_WHEEL, [(CALIB, b"x" * 5000)]).read_bytes()
    calls = _fake_pip(monkeypatch, wheel, [True])
    with pytest.raises(Key2MeshError, match="could not download the pose2sim==0.10.49 wheel"):
        extract("pose2sim", CALIB)
    wheels_dir = tmp_path / "cache" / "wheels"
    assert list(wheels_dir.iterdir()) == []  # no partial wheel, no temp folder left
    (path,) = extract("pose2sim", CALIB)
    assert path.read_bytes() == b"x" * 5000 and len(calls) == 2
    assert (wheels_dir / DEMO_WHEEL).read_bytes() == wheel
    assert extract("pose2sim", CALIB) == [path] and len(calls) == 2  # cached now


def test_a_truncated_cached_wheel_is_downloaded_again_or_named(tmp_path, monkeypatch):
    """A truncated wheel left in the cache by an older run is replaced; one in the user's
    ``KEY2MESH_WHEEL_DIR`` is named in a one-line error (never deleted)."""
    monkeypatch.delenv("KEY2MESH_WHEEL_DIR", raising=False)
    monkeypatch.setenv("KEY2MESH_CACHE_DIR", str(tmp_path / "cache"))
    wheel = _zip(tmp_path / "src" / DEMO_WHEEL, [(CALIB, b"y" * 5000)]).read_bytes()
    cached = tmp_path / "cache" / "wheels" / DEMO_WHEEL
    cached.parent.mkdir(parents=True)
    cached.write_bytes(wheel[:100])
    calls = _fake_pip(monkeypatch, wheel, [])
    assert not demo_available("pose2sim-cam01")  # a download is needed (it said yes before)
    (path,) = extract("pose2sim", CALIB)
    assert path.read_bytes() == b"y" * 5000 and len(calls) == 1
    assert demo_available("pose2sim-cam01")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / DEMO_WHEEL).write_bytes(wheel[:100])
    monkeypatch.setenv("KEY2MESH_WHEEL_DIR", str(mine))
    with pytest.raises(Key2MeshError, match=rf"{mine / DEMO_WHEEL} is not a complete wheel"):
        extract("pose2sim", CALIB)
    assert (mine / DEMO_WHEEL).stat().st_size == 100 and len(calls) == 1


def test_an_offline_download_says_which_file_to_put_where(tmp_path, monkeypatch):
    """Offline (or without pip), the error names the wheel file and the folders it is read
    from, and a ``KEY2MESH_WHEEL_DIR`` that is no folder (a typo, silently skipped before)."""
    import subprocess

    from key2mesh.data import wheels

    monkeypatch.setenv("KEY2MESH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KEY2MESH_WHEEL_DIR", str(tmp_path / "whels"))
    offline = "ERROR: No matching distribution found for pose2sim==0.10.49"
    monkeypatch.setattr(
        wheels.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", offline)
    )
    with pytest.raises(Key2MeshError) as err:
        extract("pose2sim", CALIB)
    text = str(err.value)
    assert "\n" not in text and offline in text
    assert "pose2sim-0.10.49-*.whl" in text and str(tmp_path / "cache" / "wheels") in text
    assert f"KEY2MESH_WHEEL_DIR={tmp_path / 'whels'} is not a folder" in text
    monkeypatch.delenv("KEY2MESH_WHEEL_DIR")
    with pytest.raises(Key2MeshError, match="or in a folder named by KEY2MESH_WHEEL_DIR") as err:
        extract("pose2sim", CALIB)
    assert "is not a folder" not in str(err.value)


def test_cache_and_wheel_folder_variables_empty_or_with_a_tilde(tmp_path, monkeypatch):
    """An empty ``KEY2MESH_CACHE_DIR`` (``export KEY2MESH_CACHE_DIR=``, an unset variable in a
    .env file) is unset, not the current folder; ``~`` (quoted, or from a .env file) is the home
    folder, not a folder named ``~`` in the current one."""
    from key2mesh.paths import key2mesh_cache_dir, wheel_dirs

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEY2MESH_CACHE_DIR", "")
    assert key2mesh_cache_dir() == tmp_path / "home" / ".cache" / "key2mesh"
    monkeypatch.setenv("KEY2MESH_CACHE_DIR", "~/k2m")
    monkeypatch.setenv("KEY2MESH_WHEEL_DIR", "~/wheels")
    assert key2mesh_cache_dir() == tmp_path / "home" / "k2m"
    assert wheel_dirs() == [tmp_path / "home" / "wheels", tmp_path / "home" / "k2m" / "wheels"]

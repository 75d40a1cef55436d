"""Names read from input files never become paths outside the output folder; outputs are atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from key2mesh.safe_paths import safe_name, unique_names


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../evil", "evil"),
        ("/etc/passwd", "etc_passwd"),
        ("..\\..\\win", "win"),
        ("a\x00b", "a_b"),
        ("", "frame"),
        (".", "frame"),
        ("..", "frame"),
        (".hidden", "hidden"),
        ("frame 001 (copy)", "frame_001_copy"),
        ("ok-name_1.v2", "ok-name_1.v2"),
        ("é/ü", "frame"),
        ("x" * 500, "x" * 120),
        ("-rf clip", "rf_clip"),
    ],
)
def test_safe_name(name, expected):
    assert safe_name(name) == expected


def test_unique_names():
    assert unique_names(["a", "a", "A", "a_1", "../a", ""]) == [
        "a",
        "a_1",
        "A_2",
        "a_1_1",
        "a_3",
        "frame",
    ]


def test_output_names_follow_one_rule(tmp_path):
    from key2mesh.safe_paths import output_file, output_stems, stem_path

    (tmp_path / "frames.d").mkdir()
    assert output_stems(
        ["clip.v2.mp4", "my clip.mp4", "-x.mp4", "é.mp4", "a/clip.v2.npz", tmp_path / "frames.d"]
    ) == ["clip.v2", "my_clip", "x", "input", "clip.v2_1", "frames.d"]
    assert stem_path(tmp_path, "two.people_track0", ".bvh").name == "two.people_track0.bvh"
    assert output_file("X", ".npz") == Path("X.npz")
    assert output_file("a.v2", ".npz") == Path("a.v2.npz")
    assert output_file("a.npz", ".npz") == Path("a.npz")


def test_output_names_refuse_inputs_and_each_other(tmp_path):
    from key2mesh.errors import Key2MeshError
    from key2mesh.safe_paths import OutputNames

    names = OutputNames([tmp_path / "in.npz"])
    with pytest.raises(Key2MeshError, match="is the input"):
        names.claim(tmp_path / "sub" / ".." / "in.npz", "--out")
    names.claim(tmp_path / "o.npz", "--out")
    with pytest.raises(Key2MeshError, match="o.npz is both --out and the motion table"):
        names.claim(tmp_path / "o.npz", "the motion table of in.npz")
    with pytest.raises(Key2MeshError, match="is both --out and one of the exports"):
        names.claim_family(tmp_path, r"o\.npz", "the exports")
    names.claim_family(tmp_path, r"in_track\d+\.bvh", "the exports")
    with pytest.raises(Key2MeshError, match="is both the exports and --out"):
        names.claim(tmp_path / "in_track3.bvh", "--out")
    names.claim(tmp_path / "in_track3.bvh", "the exports")  # the family's own file


def test_write_openpose_json_stays_in_folder(tmp_path):
    from key2mesh.keypoints.io import Detections, read_openpose_json, write_openpose_json

    names = ["../../evil", str(tmp_path / "abs" / "x"), "dup", "dup", "", "a\x00b"]
    n = len(names)
    kp = np.random.default_rng(0).uniform(0, 100, (n, 1, 25, 2))
    det = Detections(
        kp, np.ones((n, 1, 25)), "openpose_body25", names, np.zeros((n, 1), dtype=np.int64)
    )
    out = tmp_path / "a" / "b" / "json"
    paths = write_openpose_json(det, out)
    assert all(p.parent == out for p in paths) and len(set(paths)) == n
    assert _files(tmp_path) == {f"a/b/json/{p.name}" for p in paths}
    assert sorted(p.name for p in paths) == sorted(
        f"{s}_keypoints.json"
        for s in [
            "evil",
            unique_names([str(tmp_path / "abs" / "x")])[0],
            "dup",
            "dup_1",
            "frame",
            "a_b",
        ]
    )
    back = read_openpose_json(out)
    assert back.num_frames == n


def test_predict_meshes_stay_in_folder(tmp_path):
    from key2mesh.cli import main
    from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

    if not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists():
        pytest.skip("no shipped checkpoint")
    names = ["../../evil", str(tmp_path / "abs" / "x"), "dup", "dup"]
    rng = np.random.default_rng(1)
    kp = rng.uniform(100, 300, (len(names), 17, 2)).astype(np.float32)
    inp = tmp_path / "in.npz"
    np.savez(inp, keypoints=kp, keypoint_set="coco17", frame_names=np.array(names))
    out = tmp_path / "a" / "b"
    assert (
        main(
            [
                "predict",
                str(inp),
                "--checkpoint",
                "anny-coco17",
                "--out",
                str(out),
                "--meshes",
                "ply",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    meshes = sorted((tmp_path / "a" / "b" / "in_meshes").iterdir())
    assert len(meshes) == len(names)  # one per row of the motion table, unique names
    stems = sorted(m.name.rsplit("_track", 1)[0] for m in meshes)
    assert "evil" in stems and stems.count("dup") == 2, stems  # dup_track0, dup_track1
    # the motion table of the input (named after the input file) sits in --out
    motion = {"a/b/in_params.npz", "a/b/in_params.json"}
    assert _files(tmp_path) == {"in.npz"} | motion | {f"a/b/in_meshes/{m.name}" for m in meshes}


# ------------------------------------------------------------------------------- atomic outputs


def _kp_file(path: Path, n: int = 2) -> Path:
    kp = np.random.default_rng(2).uniform(100, 300, (n, 25, 2)).astype(np.float32)
    np.savez(path, keypoints=kp, keypoint_set="openpose_body25")
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def _disk_full_savez(monkeypatch):
    """np.savez writes part of the archive, then the disk is full."""
    import errno

    def full(file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    monkeypatch.setattr(np, "savez_compressed", full)  # the motion table is compressed


def test_atomic_savez_disk_full_keeps_previous(tmp_path, monkeypatch):
    from key2mesh.errors import Key2MeshError
    from key2mesh.safe_paths import atomic_savez

    out = tmp_path / "o.npz"
    atomic_savez(out, a=np.arange(3))
    before = out.read_bytes()
    _disk_full_savez(monkeypatch)
    with pytest.raises(Key2MeshError, match="no space left"):
        atomic_savez(out, a=np.arange(5))
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["o.npz"]


@pytest.mark.parametrize("command", ["predict", "fit"])
def test_cli_disk_full_keeps_previous_output(tmp_path, monkeypatch, capsys, command):
    from key2mesh.cli import main

    inp = _kp_file(tmp_path / "in.npz")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / {"predict": "in_params.npz", "fit": "result.npz"}[command]
    out.write_bytes(b"previous result")
    _disk_full_savez(monkeypatch)
    argv = {
        "predict": ["predict", str(inp), "--out", str(out_dir), "--device", "cpu"],
        "fit": ["fit", str(inp), "--out", str(out), "--iters", "1"],
    }[command]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert "no space left" in line and str(out) in line
    assert out.read_bytes() == b"previous result"
    assert [p.name for p in out_dir.iterdir()] == [out.name]  # no temp file left


@pytest.mark.parametrize("command", ["predict", "fit", "export", "evaluate"])
def test_cli_refuses_out_equal_to_input(tmp_path, capsys, command):
    from key2mesh.cli import main

    inp = _kp_file(tmp_path / "in.npz")
    before = inp.read_bytes()
    link = tmp_path / "link.npz"
    link.symlink_to(inp)
    argv = {
        "predict": ["predict", str(inp), "--out", str(link)],  # --out is a folder: refused
        "fit": ["fit", str(inp), "--out", str(tmp_path / "." / "in.npz")],
        "export": ["export-model", "--checkpoint", str(inp), "--onnx", str(link)],
        "evaluate": [
            "evaluate",
            "--dataset",
            str(inp),
            "--checkpoint",
            "anny-body25",
            "--json",
            str(inp),
        ],
    }[command]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert ("is the output folder" if command == "predict" else "is the input") in line
    assert inp.read_bytes() == before


@pytest.mark.parametrize("command", ["predict", "fit", "export"])
def test_cli_unwritable_out_is_one_line(tmp_path, capsys, command):
    from key2mesh.cli import main

    inp = _kp_file(tmp_path / "in.npz")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "sub" / "o.npz"
    argv = {
        "predict": ["predict", str(inp), "--out", str(blocker / "sub"), "--device", "cpu"],
        "fit": ["fit", str(inp), "--out", str(out), "--iters", "1"],
        "export": ["export-model", "--checkpoint", "anny-body25", "--torchscript", str(out)],
    }[command]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert "cannot write" in line and "a_file is a file, not a folder" in line
    assert blocker.read_text() == "x"


def test_writers_leave_no_temp_files(tmp_path):
    from key2mesh.inference.meshes import write_mesh
    from key2mesh.keypoints.io import Detections, read_numpy, write_npz
    from key2mesh.media.video import write_image
    from key2mesh.safe_paths import atomic_write_text

    v = np.random.default_rng(0).normal(size=(4, 3))
    f = np.array([[0, 1, 2], [0, 2, 3]])
    for fmt in ("obj", "ply", "glb"):
        write_mesh(v, f, tmp_path / f"m.{fmt}")
    write_image(tmp_path / "i.png", np.zeros((4, 5, 3), np.uint8))
    det = Detections(
        np.ones((1, 1, 25, 2)),
        np.ones((1, 1, 25)),
        "openpose_body25",
        ["f"],
        np.zeros((1, 1), np.int64),
    )
    write_npz(det, tmp_path / "d.npz")
    atomic_write_text(tmp_path / "t.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.npz",
        "i.png",
        "m.glb",
        "m.obj",
        "m.ply",
        "t.json",
    ]
    assert read_numpy(tmp_path / "d.npz").num_frames == 1
    import trimesh

    assert len(trimesh.load(tmp_path / "m.obj", process=False).vertices) == 4
    ref = tmp_path / "ref"
    ref.write_text("")
    assert (
        tmp_path / "t.json"
    ).stat().st_mode == ref.stat().st_mode  # ordinary permissions, not mkstemp's 0600


def test_video_writer_discards_interrupted_video(tmp_path):
    pytest.importorskip("cv2")
    from key2mesh.media.video import VideoWriter, source_info

    frame = np.zeros((32, 48, 3), np.uint8)
    with VideoWriter(tmp_path / "ok.mp4", fps=10) as w:
        for _ in range(3):
            w.write(frame)
        assert not (tmp_path / "ok.mp4").exists()  # only the temporary file while writing
    assert source_info(tmp_path / "ok.mp4").num_frames == 3
    before = (tmp_path / "ok.mp4").read_bytes()
    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "ok.mp4", fps=10) as w:
        w.write(frame)
        raise KeyboardInterrupt
    assert (tmp_path / "ok.mp4").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ok.mp4"]


def test_atomic_writes_fsync_before_replace(tmp_path, monkeypatch):
    """The temp file's data reaches the disk before the final name points at it."""
    import os

    from key2mesh.model.checkpoint import atomic_save
    from key2mesh.safe_paths import atomic_write_text

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_save({"a": 1}, tmp_path / "c.pt")
    assert events == ["fsync", "replace"] * 2


def test_remove_stale_deletes_only_matching_files_not_written_now(tmp_path):
    from key2mesh.safe_paths import remove_stale

    for name in ("clip_track0.bvh", "clip_track1.bvh", "clip_track1.glb", "notes.txt"):
        (tmp_path / name).write_text(name)
    (tmp_path / "clip_track7.bvh").mkdir()  # a folder is never removed
    removed = remove_stale(tmp_path, r"clip_track\d+\.bvh", [tmp_path / "clip_track0.bvh"])
    assert [p.name for p in removed] == ["clip_track1.bvh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip_track0.bvh",
        "clip_track1.glb",
        "clip_track7.bvh",
        "notes.txt",
    ]
    assert remove_stale(tmp_path / "missing", r".*", []) == []


def test_remove_stale_temps_takes_folders_only_when_asked(tmp_path):
    import os

    from key2mesh.safe_paths import remove_stale_temps

    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale_dir = tmp_path / f".clip.{dead}.0123abcd.tmp"
    stale_dir.mkdir()
    (stale_dir / "marker.json").write_text("{}")
    mine = tmp_path / f".clip.{os.getpid()}.0123abcd.tmp"  # this process is still building it
    mine.mkdir()
    assert remove_stale_temps(tmp_path) == [] and stale_dir.exists()
    assert remove_stale_temps(tmp_path, folders=True) == [stale_dir]
    assert not stale_dir.exists() and mine.exists()


def test_temps_of_another_machine_are_left_until_old(tmp_path):
    """On shared storage (a Slurm array, a Ray cluster) a temp written by another node names a
    process id that means nothing here: it is left alone (removing it crashed that node's run)
    until FOREIGN_TEMP_AGE_S old. This machine's temps carry its tag and are removed as before
    when their process is gone."""
    import os
    import time

    from key2mesh import safe_paths

    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    name = safe_paths.temp_name(tmp_path / "manifest.csv").name
    assert name.startswith(f".manifest.csv.{safe_paths._host_tag()}-{os.getpid()}.")
    assert name.endswith(".tmp.csv")
    other = "0" * 8 if safe_paths._host_tag() != "0" * 8 else "1" * 8
    foreign = tmp_path / f".manifest.csv.{other}-{dead}.0123abcd.tmp.csv"
    foreign.write_text("another node writes this")
    own_dead = tmp_path / f".manifest.csv.{safe_paths._host_tag()}-{dead}.0123abcd.tmp.csv"
    own_dead.write_text("a killed run of this machine")
    assert safe_paths.remove_stale_temps(tmp_path) == [own_dead] and foreign.exists()
    old = time.time() - safe_paths.FOREIGN_TEMP_AGE_S - 60
    os.utime(foreign, (old, old))
    assert safe_paths.remove_stale_temps(tmp_path) == [foreign]


def test_atomic_writes_keep_the_permissions_of_the_file_they_replace(tmp_path):
    """A rewrite of a file made private (600) or executable (755) keeps its mode: the new file
    had the umask's default (644: a private file became readable by everyone)."""
    import os
    import stat

    from key2mesh.safe_paths import atomic_savez, atomic_write_text

    old = os.umask(0o022)
    try:
        for mode in (0o600, 0o755, 0o640):
            path = tmp_path / f"out{mode:o}.txt"
            path.write_text("old")
            path.chmod(mode)
            atomic_write_text(path, "new")
            assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == mode
        fresh = atomic_write_text(tmp_path / "fresh.txt", "x")  # a new file: the umask's mode
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        arrays = tmp_path / "a.npz"
        atomic_savez(arrays, x=np.zeros(2))
        arrays.chmod(0o600)
        atomic_savez(arrays, x=np.ones(2))
        assert stat.S_IMODE(arrays.stat().st_mode) == 0o600
    finally:
        os.umask(old)

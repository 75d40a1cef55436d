"""AMASS loader on synthetic files written in AMASS's exact format (no AMASS data needed)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from key2mesh.data.mocap import MotionClip, load_clips, load_report
from key2mesh.data.mocap.amass import load_amass_file
from key2mesh.errors import Key2MeshError


def write_amass(
    path, frames=120, fps=120.0, width=156, fps_key="mocap_framerate", seed=0, **override
):
    """An AMASS SMPL-H npz: poses (F,156), betas (16,), mocap_framerate, trans (F,3), gender, dmpls."""
    rng = np.random.default_rng(seed)
    poses = rng.normal(scale=0.2, size=(frames, width))
    poses[:, :3] = [math.pi / 2, 0.0, 0.0]  # upright in AMASS's z-up world: Rx(+90°)
    data = {
        "poses": poses,
        "betas": np.arange(16, dtype=np.float64) * 0.1,
        fps_key: np.array(fps),
        "trans": rng.normal(size=(frames, 3)),
        "gender": np.array("male"),
        "dmpls": np.zeros((frames, 8)),
    }
    data.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return poses


def test_reads_body_joints_subsamples_and_turns_upright(tmp_path):
    poses = write_amass(tmp_path / "walk_poses.npz", frames=120, fps=120.0)
    clip = load_amass_file(tmp_path / "walk_poses.npz", target_fps=30)
    assert isinstance(clip, MotionClip) and clip.source == "amass" and clip.name == "walk_poses"
    assert clip.fps == 30.0 and clip.num_frames == 30  # every 4th frame
    assert clip.rotmats.shape == (30, 24, 3, 3) and clip.rotmats.dtype == np.float32
    np.testing.assert_allclose(clip.betas, np.arange(10) * 0.1, atol=1e-6)
    # body joints 1..21 are the axis-angles of frames 0, 4, 8, ...; hands (22, 23) are identity
    from scipy.spatial.transform import Rotation

    expected = (
        Rotation.from_rotvec(poses[::4, 3:66].reshape(-1, 3)).as_matrix().reshape(30, 21, 3, 3)
    )
    np.testing.assert_allclose(clip.rotmats[:, 1:22], expected, atol=1e-5)
    np.testing.assert_allclose(
        clip.rotmats[:, 22:], np.broadcast_to(np.eye(3), (30, 2, 3, 3)), atol=1e-7
    )
    # the root Rx(+90°) (standing in z-up) becomes identity: SMPL's up axis (+y) points up (+y)
    np.testing.assert_allclose(
        clip.rotmats[:, 0], np.broadcast_to(np.eye(3), (30, 3, 3)), atol=1e-6
    )


def test_root_conversion_keeps_heading(tmp_path):
    # z-up person turned 90° about the vertical (z) then stood up: in y-up it is a yaw about +y
    from scipy.spatial.transform import Rotation

    root = (
        Rotation.from_euler("z", 90, degrees=True) * Rotation.from_euler("x", 90, degrees=True)
    ).as_rotvec()
    poses = np.zeros((4, 156))
    poses[:, :3] = root
    write_amass(tmp_path / "turn.npz", frames=4, fps=30.0, poses=poses)
    r0 = load_amass_file(tmp_path / "turn.npz").rotmats[0, 0]
    np.testing.assert_allclose(
        r0, Rotation.from_euler("y", 90, degrees=True).as_matrix(), atol=1e-6
    )
    np.testing.assert_allclose(r0 @ [0, 1, 0], [0, 1, 0], atol=1e-6)  # still standing up


def test_smplx_key_name_smpl_width_and_no_subsampling(tmp_path):
    # SMPL-X release: other key name, 165-wide poses and object-dtype extras that need pickling
    labels = np.array([["a", 1], ["b", 2]], dtype=object)
    poses = write_amass(
        tmp_path / "a.npz",
        frames=10,
        fps=60.0,
        width=165,
        fps_key="mocap_frame_rate",
        latent_labels=labels,
    )
    clip = load_amass_file(tmp_path / "a.npz", target_fps=None)
    assert clip.num_frames == 10 and clip.fps == 60.0
    write_amass(tmp_path / "b.npz", frames=7, fps=25.0, width=72)
    clip = load_amass_file(tmp_path / "b.npz", target_fps=30)  # never upsampled
    assert clip.num_frames == 7 and clip.fps == 25.0
    assert not np.allclose(clip.rotmats[:, 22], np.eye(3))  # SMPL's own hand joints are kept
    assert poses.shape == (10, 165)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"poses": np.zeros((0, 156))}, "zero frames"),
        ({"poses": np.zeros((5, 40))}, "expected (F, 156)"),
        ({"mocap_framerate": np.array(0.0)}, "frame rate > 0"),
        ({"betas": np.zeros(4)}, "'betas'"),
        ({"poses": np.full((5, 156), "x")}, "'poses' must hold numbers"),
        ({"betas": np.full(16, "x")}, "'betas' must hold numbers"),
    ],
)
def test_bad_content_names_the_file(tmp_path, override, message):
    path = tmp_path / "bad.npz"
    write_amass(path, frames=5, **override)
    with pytest.raises(Key2MeshError, match="bad.npz") as info:
        load_amass_file(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_nan_frame_is_reported(tmp_path):
    poses = np.zeros((6, 156))
    poses[3, 10] = np.nan
    write_amass(tmp_path / "nan.npz", frames=6, poses=poses)
    with pytest.raises(Key2MeshError, match=r"nan\.npz.*first: frame 3"):
        load_amass_file(tmp_path / "nan.npz")


def test_wrong_keys_lists_found_keys(tmp_path):
    np.savez(tmp_path / "keys.npz", pose_body=np.zeros((3, 63)), fps=np.array(30.0))
    with pytest.raises(Key2MeshError, match=r"keys\.npz.*found: fps, pose_body"):
        load_amass_file(tmp_path / "keys.npz")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(Key2MeshError, match="missing.npz"):
        load_clips("amass", paths=tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Key2MeshError, match="corrupt.npz.*not a readable"):
        load_amass_file(tmp_path / "corrupt.npz")


def test_folder_is_recursive_and_skips_bad_files(tmp_path, caplog):
    write_amass(tmp_path / "CMU" / "01" / "01_01_poses.npz", frames=60, fps=60.0)
    write_amass(
        tmp_path / "KIT" / "3" / "walk.npz", frames=30, fps=30.0, fps_key="mocap_frame_rate"
    )
    np.savez(
        tmp_path / "CMU" / "01" / "shape.npz", betas=np.zeros(16), gender=np.array("male")
    )  # metadata: ignored
    np.savez(  # SMPL-X (and GRAB/SOMA) subjects' shape/calibration file: metadata too
        tmp_path / "KIT" / "3" / "male_stagei.npz", betas=np.zeros(16), gender=np.array("male")
    )
    (tmp_path / "KIT" / "broken.npz").write_bytes(b"garbage")
    write_amass(tmp_path / "KIT" / "empty.npz", frames=0)
    write_amass(tmp_path / "KIT" / "text.npz", frames=5, betas=np.full(16, "x"))
    with caplog.at_level(logging.WARNING):
        report = load_report("amass", paths=[tmp_path], target_fps=30)
    assert sorted(c.name for c in report.clips) == ["01_01_poses", "walk"]
    assert [c.num_frames for c in sorted(report.clips, key=lambda c: c.name)] == [30, 30]
    assert report.num_skipped == 3
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in report.skipped) == [
        "broken.npz",
        "empty.npz",
        "text.npz",
    ]
    assert "broken.npz" in caplog.text and "empty.npz" in caplog.text
    with pytest.raises(Key2MeshError, match="no such AMASS file or folder"):
        load_clips("amass", paths=tmp_path / "none")


def test_cmu_subset_carries_its_subject(tmp_path):
    # AMASS's CMU subset holds the same takes as the CMU BVH/ASF files: a subject held out there
    # (cmu_02) was a subject-less AMASS clip here, free to land in the training frames
    from key2mesh.data.cache import PoseBank

    write_amass(tmp_path / "CMU" / "02" / "02_01_poses.npz", frames=8)
    write_amass(tmp_path / "CMU" / "7" / "7_12_stageii.npz", frames=8, width=165)
    write_amass(tmp_path / "KIT" / "3" / "3_01_poses.npz", frames=8)  # not CMU
    clips = sorted(load_report("amass", paths=[tmp_path]).clips, key=lambda c: c.name)
    assert [(c.name, c.subject) for c in clips] == [
        ("02_01_poses", "cmu_02"),
        ("3_01_poses", None),
        ("7_12_stageii", "cmu_07"),
    ]
    bank = PoseBank(
        rotmats=np.concatenate([c.rotmats for c in clips]),
        clip_index=np.repeat(np.arange(3), [c.num_frames for c in clips]),
        clip_names=[c.name for c in clips],
        clip_sources=["amass"] * 3,
        shapes=np.zeros((1, 10), dtype=np.float32),
        body={},
        clip_subjects=[c.subject or "" for c in clips],
    )
    val = bank.validation_sets(val_subjects=("cmu_02",))
    assert set(bank.clip_index[val["subjects"]]) == {0}


def test_archives_ask_to_be_extracted(tmp_path):
    # AMASS is downloaded as .tar.bz2 per sub-dataset: np.load called it pickled data
    import tarfile

    write_amass(tmp_path / "CMU" / "01" / "01_01_poses.npz", frames=4)
    archive = tmp_path / "dl" / "CMU.tar.bz2"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:bz2") as tar:
        tar.add(tmp_path / "CMU", arcname="CMU")
    with pytest.raises(Key2MeshError, match=r"CMU\.tar\.bz2: AMASS is read from extracted .npz"):
        load_clips("amass", paths=archive)
    with pytest.raises(Key2MeshError, match=r"no AMASS .npz motion file; .*`tar xf CMU\.tar\.bz2`"):
        load_clips("amass", paths=archive.parent)


def test_empty_folder_and_unknown_source(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Key2MeshError, match="holds no AMASS"):
        load_clips("amass", paths=tmp_path / "empty")
    with pytest.raises(Key2MeshError, match="unknown MoCap source 'nope'"):
        load_clips("nope")


def test_clip_validate_and_subsample():
    rot = np.broadcast_to(np.eye(3, dtype=np.float32), (10, 24, 3, 3)).copy()
    rot[:, 0, 0, 1] = np.arange(10)  # frame id
    clip = MotionClip("c", "test", 100.0, rotmats=rot)
    sub = clip.subsample(30)  # 100/30 is no integer: resampled at exactly 30 fps, nearest frames
    assert sub.fps == 30.0 and sub.rotmats[:, 0, 0, 1].tolist() == [0, 3, 7]  # t = 0, 1/30, 2/30 s
    assert clip.subsample(50).rotmats[:, 0, 0, 1].tolist() == [
        0,
        2,
        4,
        6,
        8,
    ]  # integer ratio: stride
    rot[:, 0, 0, 1] = 0
    rot[2, 5, 0, 0] = np.nan
    with pytest.raises(Key2MeshError, match=r"clip 'c'.*first bad frame 2"):
        clip.validate()
    with pytest.raises(Key2MeshError, match="zero frames"):
        MotionClip("z", "test", 30.0, rotmats=np.zeros((0, 24, 3, 3), np.float32)).validate()
    with pytest.raises(Key2MeshError, match=r"expected \(F, 24, 3, 3\)"):
        MotionClip("s", "test", 30.0, rotmats=np.zeros((2, 22, 3, 3), np.float32)).validate()


def test_registry_wraps_plain_lists_and_lists_known_sources():
    from key2mesh.data.mocap import register_loader

    clip = MotionClip(
        "x", "custom", 30.0, joints=np.zeros((2, 3, 3), np.float32), joint_names=("a", "b", "c")
    )
    register_loader("custom_test", lambda scale=1: [clip] * scale)
    report = load_report("custom_test", scale=2)
    assert report.clips == [clip, clip] and report.num_skipped == 0
    with pytest.raises(
        Key2MeshError, match="known: amass, asf_amc, bvh, custom_test, deepmimic, holosoma"
    ):
        load_report("missing_source")


def test_prepare_keeps_max_fps_and_reads_a_take_once(tmp_path, capsys):
    """`data prepare --max-fps 60` keeps 60 Hz of a 120 Hz AMASS clip (its loader's own 30 Hz
    default used to win), and the same take given twice (the file twice, and a copy under
    another name) is one clip: a copy could land in training and its twin in validation."""
    from key2mesh.cli import main
    from key2mesh.data.cache import PoseBank

    write_amass(tmp_path / "a" / "walk.npz", frames=24, fps=120.0)
    write_amass(tmp_path / "b" / "walk_copy.npz", frames=24, fps=120.0)  # the same content
    write_amass(tmp_path / "a" / "run.npz", frames=24, fps=120.0, seed=1)
    out = tmp_path / "cache.npz"
    argv = ["data", "prepare", "--sources", "amass", "--amass", str(tmp_path / "a" / "walk.npz"),
            str(tmp_path / "a" / "walk.npz"), str(tmp_path / "b"), str(tmp_path / "a" / "run.npz"),
            "--out", str(out), "--max-fps", "60", "--num-shapes", "8"]  # fmt: skip
    assert main(argv) == 0
    bank = PoseBank.load(out)
    assert sorted(bank.clip_names) == ["run", "walk"]
    assert bank.rotmats.shape[0] == 2 * 12  # 24 frames at 120 Hz -> 12 at 60 Hz, per clip
    assert "the same clip was read before" in capsys.readouterr().out


def test_a_folder_with_both_releases_reads_each_take_once(tmp_path):
    """An AMASS root holding the SMPL+H and the SMPL-X release (``SMPL-H/CMU/01/01_01_poses.npz``
    and ``SMPL-X/CMU/01/01_01_stageii.npz``) loaded every take twice, the copies free to land in
    training and validation; now the second is skipped, naming the first."""
    write_amass(tmp_path / "SMPL-H" / "CMU" / "01" / "01_01_poses.npz", frames=8)
    write_amass(tmp_path / "SMPL-H" / "CMU" / "01" / "01_02_poses.npz", frames=8)
    write_amass(tmp_path / "SMPL-X" / "CMU" / "01" / "01_01_stageii.npz", frames=8, width=165)
    write_amass(tmp_path / "SMPL-X" / "KIT" / "01" / "01_01_stageii.npz", frames=8, width=165)
    report = load_report("amass", paths=[tmp_path])
    assert sorted(c.name for c in report.clips) == ["01_01_poses", "01_01_stageii", "01_02_poses"]
    ((path, why),) = report.skipped
    assert Path(path).parts[-4] == "SMPL-X" and Path(path).parts[-3] == "CMU"
    assert "the same take as" in why and "01_01_poses.npz" in why

"""CMU MoCap loading: cgspeed BVH in folders and archives, INDEX.tsv, fps overrides, T-pose
frames, joint-name tables, ASF/AMC folders, subject splits of the cache, clip resampling."""

from __future__ import annotations

import csv
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from key2mesh.data.cache import DEFAULT_VAL_SUBJECTS, PoseBank, split_options
from key2mesh.data.mocap.clip import MotionClip
from key2mesh.data.mocap.cmu import (
    JOINT_TABLES,
    blend_prefix,
    load_asf_amc_files,
    load_bvh_files,
    match_joint_table,
    parse_fps_overrides,
    read_index,
    tpose_prefix,
)
from key2mesh.errors import Key2MeshError

# ---------------------------------------------------------------------------------------------
# a cgspeed-style BVH (cm, Y up, root "hip" with Zrot Yrot Xrot, other joints Zrot Xrot Yrot)

ROOT_CH = "Xposition Yposition Zposition Zrotation Yrotation Xrotation"
ROT_CH = "Zrotation Xrotation Yrotation"


def _side(s: str, sign: int) -> dict:
    """Arm (under chest) and leg (under hip) chains of one side; sign +1 left (+x), -1 right."""
    arm = (
        f"{s}Collar",
        (3 * sign, 18, 0),
        [
            (
                f"{s}Shldr",
                (9 * sign, 0, 0),
                [
                    (
                        f"{s}ForeArm",
                        (28 * sign, 0, 0),
                        [
                            (
                                f"{s}Hand",
                                (23 * sign, 0, 0),
                                [(f"{s}Mid1", (8 * sign, 0, 0), (4 * sign, 0, 0))],
                            )
                        ],
                    )
                ],
            )
        ],
    )
    leg = (
        f"{s}Buttock",
        (9 * sign, 4, 0),
        [
            (
                f"{s}Thigh",
                (0, -2, 0),
                [(f"{s}Shin", (0, -37, 0), [(f"{s}Foot", (0, -45, 0), (0, -4, 12))])],
            )
        ],
    )
    return {"arm": arm, "leg": leg}


LEFT, RIGHT = _side("l", 1), _side("r", -1)
# (name, offset, children list | End Site offset)
SKELETON = ("hip", (0, 0, 0), [
    ("abdomen", (0, 20, 0), [
        ("chest", (0, 12, 0), [
            ("neck", (0, 22, 0), [("head", (0, 7, 0), (0, 10, 0))]),
            LEFT["arm"], RIGHT["arm"]])]),
    LEFT["leg"], RIGHT["leg"]])  # fmt: skip


def _hierarchy(node, depth: int = 0, root: bool = True) -> list[str]:
    name, offset, kids = node
    pad = "  " * depth
    lines = [
        f"{pad}{'ROOT' if root else 'JOINT'} {name}",
        f"{pad}{{",
        f"{pad}  OFFSET {offset[0]} {offset[1]} {offset[2]}",
        f"{pad}  CHANNELS {6 if root else 3} {ROOT_CH if root else ROT_CH}",
    ]
    if isinstance(kids, tuple):
        lines += [
            f"{pad}  End Site",
            f"{pad}  {{",
            f"{pad}    OFFSET {kids[0]} {kids[1]} {kids[2]}",
            f"{pad}  }}",
        ]
    else:
        for kid in kids:
            lines += _hierarchy(kid, depth + 1, False)
    return lines + [f"{pad}}}"]


def _joint_order(node) -> list[str]:
    name, _, kids = node
    return [name] + ([] if isinstance(kids, tuple) else [n for k in kids for n in _joint_order(k)])


JOINTS = _joint_order(SKELETON)  # 23 joints, 6 + 22 * 3 = 72 channels
HIP_X = [0.0, 0.0, 2.0, 4.0, 6.0]  # cm, per frame; frame 0 is the added T-pose


def _frame(hip_x: float, arms_down: bool) -> str:
    vals = {j: [0.0, 0.0, 0.0] for j in JOINTS}
    if arms_down:  # Zrotation -90 turns the left arm (+x) to -y; +90 turns the right arm (-x) to -y
        vals["lShldr"][0], vals["rShldr"][0] = -90.0, 90.0
    row = [hip_x, 90.0, 0.0] + vals.pop("hip") + [v for j in JOINTS[1:] for v in vals[j]]
    return " ".join(f"{v:g}" for v in row)


def cgspeed_bvh(frames: int = 5) -> str:
    rows = [_frame(HIP_X[k], arms_down=k > 0) for k in range(frames)]
    return (
        "HIERARCHY\n" + "\n".join(_hierarchy(SKELETON)) + "\nMOTION\n"
        f"Frames:\t{frames}\nFrame Time:\t0.00833333\n" + "\n".join(rows) + "\n"
    )


# Hand-computed world positions (cm) with the hip at (0, 90, 0): T-pose (arms along ±x) and the
# arms-down pose; the kept joints in file order, then the End Sites (lFoot_end, rFoot_end).
NAMES = (
    "smpl_pelvis", "smpl_spine2", "smpl_spine3", "smpl_neck", "smpl_head",
    "smpl_left_shoulder", "smpl_left_elbow", "smpl_left_wrist", "smpl_left_hand",
    "smpl_right_shoulder", "smpl_right_elbow", "smpl_right_wrist", "smpl_right_hand",
    "smpl_left_hip", "smpl_left_knee", "smpl_left_ankle",
    "smpl_right_hip", "smpl_right_knee", "smpl_right_ankle",
    "smpl_left_foot", "smpl_right_foot",
)  # fmt: skip
TPOSE_CM = {
    "smpl_pelvis": (0, 90, 0), "smpl_spine2": (0, 110, 0), "smpl_spine3": (0, 122, 0),
    "smpl_neck": (0, 144, 0), "smpl_head": (0, 151, 0),
    "smpl_left_shoulder": (12, 140, 0), "smpl_left_elbow": (40, 140, 0),
    "smpl_left_wrist": (63, 140, 0), "smpl_left_hand": (71, 140, 0),
    "smpl_right_shoulder": (-12, 140, 0), "smpl_right_elbow": (-40, 140, 0),
    "smpl_right_wrist": (-63, 140, 0), "smpl_right_hand": (-71, 140, 0),
    "smpl_left_hip": (9, 92, 0), "smpl_left_knee": (9, 55, 0), "smpl_left_ankle": (9, 10, 0),
    "smpl_right_hip": (-9, 92, 0), "smpl_right_knee": (-9, 55, 0), "smpl_right_ankle": (-9, 10, 0),
    "smpl_left_foot": (9, 6, 12), "smpl_right_foot": (-9, 6, 12),
}  # fmt: skip
ARMS_DOWN_CM = {
    **TPOSE_CM,
    "smpl_left_elbow": (12, 112, 0), "smpl_left_wrist": (12, 89, 0), "smpl_left_hand": (12, 81, 0),
    "smpl_right_elbow": (-12, 112, 0), "smpl_right_wrist": (-12, 89, 0), "smpl_right_hand": (-12, 81, 0),
}  # fmt: skip


def expected_metres(frames: range) -> np.ndarray:
    out = []
    for k in frames:
        pose = TPOSE_CM if k == 0 else ARMS_DOWN_CM
        out.append([np.add(pose[n], (HIP_X[k], 0, 0)) for n in NAMES])
    return np.array(out) * 0.01


def _archives(tmp_path: Path, text: str, member: str = "cgspeed_daz/60_01.bvh") -> dict[str, Path]:
    """The same file as a folder, a .tar.xz, a .tar.gz and a .zip (each alone in its folder)."""
    folder = tmp_path / "folder"
    (folder / Path(member).parent).mkdir(parents=True)
    (folder / member).write_text(text)
    out = {"folder": folder, "file": folder / member}
    for kind, mode in (("tar.xz", "w:xz"), ("tar.gz", "w:gz")):
        (tmp_path / kind).mkdir()
        path = tmp_path / kind / f"cmu.{kind}"
        with tarfile.open(path, mode) as tar:
            tar.add(folder / member, arcname=member)
        out[kind] = path
    (tmp_path / "zip").mkdir()
    out["zip"] = tmp_path / "zip" / "cmu.zip"
    with zipfile.ZipFile(out["zip"], "w") as z:
        z.writestr(member, text)
    return out


def test_synthetic_file_matches_the_cgspeed_layout():
    text = cgspeed_bvh()
    assert len(JOINTS) == 23 and JOINTS[:5] == ["hip", "abdomen", "chest", "neck", "head"]
    assert text.count("End Site") == 5 and len(text.splitlines()[-1].split()) == 72
    assert f"CHANNELS 6 {ROOT_CH}" in text


def test_bvh_same_clip_from_folder_file_and_archives(tmp_path: Path):
    paths = _archives(tmp_path, cgspeed_bvh())
    clips = {}
    for kind, path in paths.items():
        report = load_bvh_files([path])
        assert report.skipped == [], kind
        assert len(report.clips) == 1, kind
        clips[kind] = report.clips[0]
    ref = clips["folder"]
    assert ref.name == "60_01" and ref.source == "bvh" and ref.subject == "cmu_60"
    assert ref.fps == pytest.approx(120.0, rel=1e-5)  # header Frame Time 0.00833333
    assert ref.joint_names == NAMES and all(n.startswith("smpl_") for n in ref.joint_names)
    assert ref.rotmats is None and ref.joints.dtype == np.float32
    # cgspeed's retargeting hints ride along: its root (below the thighs) is not the pelvis target
    assert (
        ref.ik_weights["smpl_pelvis"] == 0.0
        and ref.ik_prior["smpl_left_collar"] > ref.ik_prior["default"]
    )
    # the T-pose frame 0 was found and dropped (arms horizontal, then a jump)
    assert ref.joints.shape == (4, 21, 3)
    np.testing.assert_allclose(ref.joints, expected_metres(range(1, 5)), rtol=0, atol=1e-6)
    for kind, clip in clips.items():
        assert (clip.name, clip.subject, clip.fps, clip.joint_names) == (
            ref.name,
            ref.subject,
            ref.fps,
            ref.joint_names,
        )
        np.testing.assert_array_equal(clip.joints, ref.joints, err_msg=kind)


def test_index_beside_archive_gives_fps_tpose_and_subject(tmp_path: Path):
    paths = _archives(tmp_path, cgspeed_bvh())
    header = "trial\tsubject\tdescription\tframes\ttpose_frames\theader_fps\tcmu_fps\n"
    (tmp_path / "tar.xz" / "INDEX.tsv").write_text(header + "60_01\t60\tsalsa\t5\t1\t120.0\t60\n")
    clip = load_bvh_files([paths["tar.xz"]]).clips[0]
    assert clip.fps == 60.0 and clip.subject == "cmu_60"  # the header says 120
    np.testing.assert_allclose(clip.joints, expected_metres(range(1, 5)), atol=1e-6)
    # tpose_frames from the index wins over detection: 0 keeps the T-pose frame, 2 drops two
    (tmp_path / "zip" / "INDEX.tsv").write_text(header + "60_01\t7\tsalsa\t5\t0\t120.0\t60\n")
    clip = load_bvh_files([paths["zip"]]).clips[0]
    assert clip.joints.shape[0] == 5 and clip.subject == "cmu_07"  # subject from the index
    np.testing.assert_allclose(clip.joints, expected_metres(range(5)), atol=1e-6)
    idx = tmp_path / "other.tsv"
    idx.write_text("trial\ttpose_frames\tfps\n60_01\t2\t30\n")  # "fps" column, --index path
    clip = load_bvh_files([paths["tar.gz"]], index=idx).clips[0]
    assert clip.fps == 30.0 and clip.subject == "cmu_60"  # subject from the name
    np.testing.assert_allclose(clip.joints, expected_metres(range(2, 5)), atol=1e-6)
    # a folder finds the INDEX.tsv inside it; a trial missing from the index is detected as usual
    (paths["folder"] / "INDEX.tsv").write_text(header + "61_01\t61\tsalsa\t5\t0\t120.0\t60\n")
    clip = load_bvh_files([paths["folder"]]).clips[0]
    assert clip.fps == pytest.approx(120.0, rel=1e-5) and clip.joints.shape[0] == 4


def test_index_leaving_no_frames_is_skipped(tmp_path: Path):
    paths = _archives(tmp_path, cgspeed_bvh())
    idx = tmp_path / "i.tsv"
    idx.write_text("trial\ttpose_frames\n60_01\t5\n")
    report = load_bvh_files([paths["zip"]], index=idx)
    assert report.clips == [] and report.num_skipped == 1
    assert "no frames left after dropping 5" in report.skipped[0][1]


def test_fps_override_patterns(tmp_path: Path):
    paths = _archives(tmp_path, cgspeed_bvh())
    assert load_bvh_files([paths["file"]], fps_override=["60_*=60"]).clips[0].fps == 60.0
    clip = load_bvh_files([paths["file"]], fps_override=["61_*=60"]).clips[0]
    assert clip.fps == pytest.approx(120.0, rel=1e-5)
    # an override beats the index's cmu_fps
    (tmp_path / "tar.gz" / "INDEX.tsv").write_text("trial\tcmu_fps\ttpose_frames\n60_01\t60\t1\n")
    assert load_bvh_files([paths["tar.gz"]]).clips[0].fps == 60.0
    assert load_bvh_files([paths["tar.gz"]], fps_override=["60_0*=50"]).clips[0].fps == 50.0


def test_subject_from_name_and_none_without_digits(tmp_path: Path):
    text = cgspeed_bvh()
    (tmp_path / "135_04.bvh").write_text(text)
    (tmp_path / "dance.bvh").write_text(text)
    report = load_bvh_files([tmp_path])
    assert {(c.name, c.subject) for c in report.clips} == {("135_04", "cmu_135"), ("dance", None)}


def test_unknown_skeleton_and_broken_file_are_skipped(tmp_path: Path):
    (tmp_path / "02_01.bvh").write_text(cgspeed_bvh())
    bones = (
        "HIERARCHY\nROOT Bone1\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n"
        " JOINT Bone2\n {\n  OFFSET 0 1 0\n  CHANNELS 1 Zrotation\n  End Site\n  {\n   OFFSET 0 1 0\n  }\n }\n}\n"
        "MOTION\nFrames: 1\nFrame Time: 0.01\n0 0 0 0\n"
    )
    (tmp_path / "02_02.bvh").write_text(bones)
    (tmp_path / "02_03.bvh").write_text(cgspeed_bvh().split("MOTION")[0])  # truncated
    (tmp_path / "notes.txt").write_text("not a bvh")
    report = load_bvh_files([tmp_path])
    assert [c.name for c in report.clips] == ["02_01"]
    assert report.num_skipped == 2
    skipped = dict(report.skipped)
    unknown = skipped[str(tmp_path / "02_02.bvh")]
    assert "unknown skeleton" in unknown and "'Bone1'" in unknown and "'Bone2'" in unknown
    assert "Bone2_end" in unknown
    assert "no MOTION" in skipped[str(tmp_path / "02_03.bvh")]


def test_missing_path_and_wrong_file_type_raise(tmp_path: Path):
    with pytest.raises(Key2MeshError, match="does not exist"):
        load_bvh_files([tmp_path / "nothing.tar.xz.missing"])
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(Key2MeshError, match="expected a folder"):
        load_bvh_files([tmp_path / "x.txt"])
    (tmp_path / "bad.tar.xz").write_bytes(b"not an archive")
    with pytest.raises(Key2MeshError, match="cannot read archive"):
        load_bvh_files([tmp_path / "bad.tar.xz"])


# ---------------------------------------------------------------------------------------------
# joint-name tables, fps overrides, index, T-pose detection

MIXAMO = [
    "Hips",
    "Spine",
    "Spine1",
    "Spine2",
    "Neck",
    "Head",
    "LeftShoulder",
    "LeftArm",
    "LeftForeArm",
    "LeftHand",
    "RightShoulder",
    "RightArm",
    "RightForeArm",
    "RightHand",
    "LeftUpLeg",
    "LeftLeg",
    "LeftFoot",
    "LeftToeBase",
    "RightUpLeg",
    "RightLeg",
    "RightFoot",
    "RightToeBase",
    "HeadTop_End",
]


def test_match_joint_table_picks_motionbuilder_for_mixamo_names():
    table, mapping = match_joint_table(MIXAMO, "m.bvh")
    assert table == "motionbuilder"
    assert mapping["Hips"] == "smpl_pelvis" and mapping["LeftUpLeg"] == "smpl_left_hip"
    assert mapping["LeftLeg"] == "smpl_left_knee" and mapping["RightFoot"] == "smpl_right_ankle"
    assert (
        mapping["LeftArm"] == "smpl_left_shoulder" and mapping["RightForeArm"] == "smpl_right_elbow"
    )
    assert (
        mapping["LeftHand"] == "smpl_left_wrist" and mapping["LeftShoulder"] == "smpl_left_collar"
    )
    assert "HeadTop_End" not in mapping and len(mapping) == 22


def test_match_joint_table_cgspeed_and_cmu_asf():
    table, mapping = match_joint_table(JOINTS + ["lFoot_end", "head_end"])
    assert table == "cgspeed_daz" and mapping["lFoot_end"] == "smpl_left_foot"
    assert "lCollar" not in mapping and "head_end" not in mapping
    asf = [
        "root",
        "lhipjoint",
        "lfemur",
        "ltibia",
        "lfoot",
        "rfemur",
        "rtibia",
        "rfoot",
        "lhumerus",
        "lradius",
        "lwrist",
        "rhumerus",
        "rradius",
        "rwrist",
        "thorax",
    ]
    assert match_joint_table(asf)[0] == "cmu_asf"
    assert set(JOINT_TABLES) == {"cgspeed_daz", "cmu_asf", "motionbuilder"}


def test_match_joint_table_missing_limb_names_what_is_lacking():
    names = [n for n in MIXAMO if n != "RightHand"]
    with pytest.raises(Key2MeshError, match=r"lacks \['right_wrist'\]") as info:
        match_joint_table(names, "m.bvh")
    assert str(info.value).startswith("m.bvh: unknown skeleton")
    with pytest.raises(Key2MeshError, match=r"closest none .*\['Bone1', 'Bone2'\]"):
        match_joint_table(["Bone1", "Bone2"], "b.bvh")


def test_parse_fps_overrides():
    assert parse_fps_overrides(None) == {}
    assert parse_fps_overrides(["60_*=60", "61_*=60,07_0?=30.5"]) == {
        "60_*": 60.0,
        "61_*": 60.0,
        "07_0?": 30.5,
    }


@pytest.mark.parametrize(
    "item", ["60_*", "60_*=0", "60_*=-5", "=60", "60_*=abc", "60_*=", "60_*=nan", "60_*=inf"]
)
def test_parse_fps_overrides_rejects(item: str):
    with pytest.raises(Key2MeshError, match="PATTERN=FPS"):
        parse_fps_overrides([item])


def test_read_index(tmp_path: Path):
    p = tmp_path / "INDEX.tsv"
    p.write_text(
        "trial\tsubject\tcmu_fps\ttpose_frames\n60_01\t60\t60\t1\n02_01\t2\t\t\nx_1\tbob\t120\t0\n"
    )
    info = read_index(p)
    assert (info["60_01"].subject, info["60_01"].fps, info["60_01"].tpose_frames) == (
        "cmu_60",
        60.0,
        1,
    )
    assert (info["02_01"].subject, info["02_01"].fps, info["02_01"].tpose_frames) == (
        "cmu_02",
        None,
        None,
    )
    assert info["x_1"].subject == "bob" and info["x_1"].tpose_frames == 0
    p.write_text("trial\tcmu_fps\n60_01\tfast\n")
    with pytest.raises(Key2MeshError, match="60_01: cmu_fps = 'fast'"):
        read_index(p)
    p.write_text("name\tfps\n60_01\t60\n")
    with pytest.raises(Key2MeshError, match="'trial' column"):
        read_index(p)
    with pytest.raises(Key2MeshError, match="cannot read index"):
        read_index(tmp_path / "none.tsv")


def test_tpose_prefix_detection():
    joints = expected_metres(range(5)).astype(np.float32)
    assert tpose_prefix(joints, NAMES) == 1
    assert tpose_prefix(joints[1:], NAMES) == 0  # arms down: no T-pose
    tposes = np.concatenate([joints[:1]] * 3 + [joints[1:]])
    assert tpose_prefix(tposes, NAMES) == 0  # T-pose repeated: no jump to the next frame
    shifted = tposes.copy()
    shifted[1] += [1.0, 0, 0]  # three T-poses, each followed by a jump (1 m steps)
    shifted[2] += [2.0, 0, 0]
    assert tpose_prefix(shifted, NAMES) == 3
    assert tpose_prefix(shifted, NAMES, max_frames=2) == 2
    assert tpose_prefix(joints[:1], NAMES) == 0  # one frame only
    no_arms = [i for i, n in enumerate(NAMES) if "wrist" not in n]
    assert tpose_prefix(joints[:, no_arms], tuple(NAMES[i] for i in no_arms)) == 0


# ---------------------------------------------------------------------------------------------
# ASF/AMC folders (CMU's original files)

# 1 ASF unit = 0.0254 / 0.254 = 0.1 m. Bones start where their parent ends; the hips are offset
# by lhipjoint/rhipjoint as in CMU's skeletons, the arms hang off the thorax.
BONES = [  # name, parent, direction, length, has dofs
    ("lhipjoint", "root", (1, 0, 0), 1, False), ("lfemur", "lhipjoint", (0, -1, 0), 4, False),
    ("ltibia", "lfemur", (0, -1, 0), 4, False), ("lfoot", "ltibia", (0, 0, 1), 1, False),
    ("ltoes", "lfoot", (0, 0, 1), 0.5, False),
    ("rhipjoint", "root", (-1, 0, 0), 1, False), ("rfemur", "rhipjoint", (0, -1, 0), 4, False),
    ("rtibia", "rfemur", (0, -1, 0), 4, False), ("rfoot", "rtibia", (0, 0, 1), 1, False),
    ("rtoes", "rfoot", (0, 0, 1), 0.5, False),
    ("upperback", "root", (0, 1, 0), 1, False), ("thorax", "upperback", (0, 1, 0), 1, False),
    ("lowerneck", "thorax", (0, 1, 0), 1, False), ("upperneck", "lowerneck", (0, 1, 0), 0.5, False),
    ("head", "upperneck", (0, 1, 0), 1, False),
    ("lhumerus", "thorax", (1, 0, 0), 3, True), ("lradius", "lhumerus", (1, 0, 0), 2.5, False),
    ("lwrist", "lradius", (1, 0, 0), 0.5, False), ("lfingers", "lwrist", (1, 0, 0), 0.5, False),
    ("rhumerus", "thorax", (-1, 0, 0), 3, False), ("rradius", "rhumerus", (-1, 0, 0), 2.5, False),
    ("rwrist", "rradius", (-1, 0, 0), 0.5, False), ("rfingers", "rwrist", (-1, 0, 0), 0.5, False),
]  # fmt: skip


def cmu_asf() -> str:
    lines = [
        ":version 1.10",
        ":name VICON",
        ":units",
        "  mass 1.0",
        "  length 0.254",
        "  angle deg",
        ":documentation",
        "   synthetic",
        ":root",
        "   order TX TY TZ RX RY RZ",
        "   axis XYZ",
        "   position 0 0 0",
        "   orientation 0 0 0",
        ":bonedata",
    ]
    for i, (name, _, d, length, dofs) in enumerate(BONES, 1):
        lines += [
            "  begin",
            f"     id {i}",
            f"     name {name}",
            f"     direction {d[0]} {d[1]} {d[2]}",
            f"     length {length}",
            "     axis 0 0 0  XYZ",
        ]
        if dofs:
            lines += [
                "    dof rx ry rz",
                "    limits (-180.0 180.0)",
                "           (-180.0 180.0)",
                "           (-180.0 180.0)",
            ]
        lines.append("  end")
    children: dict[str, list[str]] = {}
    for name, parent, *_ in BONES:
        children.setdefault(parent, []).append(name)
    lines += (
        [":hierarchy", "  begin"]
        + [f"    {p} {' '.join(c)}" for p, c in children.items()]
        + ["  end"]
    )
    return "\n".join(lines) + "\n"


# Frame 1 at root (0, 10, 0), frame 2 moved 0.1 units (1 cm) along z; the left arm hangs down
# (lhumerus rz = -90) in both, so neither frame looks like a T-pose.
AMC = (
    "#!OML:ASF F:\\07\\07.asf\n:FULLY-SPECIFIED\n:DEGREES\n"
    "1\nroot 0 10 0 0 0 0\nlhumerus 0 0 -90\n2\nroot 0 10 0.1 0 0 0\nlhumerus 0 0 -90\n"
)
ASF_EXPECTED_M = {
    "smpl_pelvis": (0, 1, 0), "smpl_spine1": (0, 1, 0), "smpl_spine2": (0, 1.1, 0),
    "smpl_spine3": (0, 1.2, 0), "smpl_neck": (0, 1.3, 0), "smpl_head": (0, 1.35, 0),
    "smpl_left_hip": (0.1, 1, 0), "smpl_left_knee": (0.1, 0.6, 0), "smpl_left_ankle": (0.1, 0.2, 0),
    "smpl_left_foot": (0.1, 0.2, 0.1),
    "smpl_right_hip": (-0.1, 1, 0), "smpl_right_knee": (-0.1, 0.6, 0), "smpl_right_ankle": (-0.1, 0.2, 0),
    "smpl_right_foot": (-0.1, 0.2, 0.1),
    "smpl_left_shoulder": (0, 1.2, 0), "smpl_left_elbow": (0, 0.9, 0), "smpl_left_wrist": (0, 0.65, 0),
    "smpl_left_hand": (0, 0.6, 0),
    "smpl_right_shoulder": (0, 1.2, 0), "smpl_right_elbow": (-0.3, 1.2, 0),
    "smpl_right_wrist": (-0.55, 1.2, 0), "smpl_right_hand": (-0.6, 1.2, 0),
}  # fmt: skip


def test_asf_amc_folder(tmp_path: Path):
    (tmp_path / "07").mkdir()
    (tmp_path / "07" / "07.asf").write_text(cmu_asf())
    (tmp_path / "07" / "07_01.amc").write_text(AMC)
    (tmp_path / "08").mkdir()
    (tmp_path / "08" / "08_01.amc").write_text(AMC)  # no skeleton beside it
    report = load_asf_amc_files([tmp_path])
    assert len(report.clips) == 1 and report.num_skipped == 1
    clip = report.clips[0]
    assert (clip.name, clip.subject, clip.fps, clip.source) == ("07_01", "cmu_07", 120.0, "asf_amc")
    assert set(clip.joint_names) == set(ASF_EXPECTED_M) and len(clip.joint_names) == 22
    assert clip.joints.shape == (2, 22, 3)
    want = np.array([[ASF_EXPECTED_M[n] for n in clip.joint_names]] * 2)
    want[1, :, 2] += 0.01
    np.testing.assert_allclose(clip.joints, want, rtol=0, atol=1e-6)
    path, reason = report.skipped[0]
    assert path.endswith("08_01.amc") and "no skeleton .asf" in reason and "08.asf" in reason


def test_asf_amc_archive_declared_fps_and_index(tmp_path: Path):
    arch = tmp_path / "cmu-asf.tar.gz"
    src = tmp_path / "src"
    (src / "07").mkdir(parents=True)
    (src / "07" / "07.asf").write_text(cmu_asf())
    (src / "07" / "07_01.amc").write_text(AMC)
    (src / "07" / "07_02.amc").write_text(
        AMC.replace(":DEGREES", ":DEGREES\n:SAMPLES-PER-SECOND 60")
    )
    with tarfile.open(arch, "w:gz") as tar:
        tar.add(src / "07", arcname="07")
    report = load_asf_amc_files([arch])
    assert report.skipped == []
    fps = {c.name: c.fps for c in report.clips}
    assert fps == {"07_01": 120.0, "07_02": 60.0}  # an AMC that states its rate keeps it
    (tmp_path / "INDEX.tsv").write_text("trial\tsubject\tcmu_fps\ttpose_frames\n07_01\t7\t30\t1\n")
    clips = {c.name: c for c in load_asf_amc_files([arch]).clips}
    assert clips["07_01"].fps == 30.0 and clips["07_01"].joints.shape[0] == 1
    np.testing.assert_allclose(clips["07_01"].joints[0, 0], [0, 1, 0.01], atol=1e-6)
    assert load_asf_amc_files([arch], fps_override=["07_*=24"]).clips[0].fps == 24.0


# ---------------------------------------------------------------------------------------------
# the cache split by subject

LENGTHS = [10, 7, 5, 8, 6, 4]
SUBJECTS = ["", "", "cmu_02", "cmu_05", "cmu_07", "cmu_07"]


def make_bank(lengths=LENGTHS, subjects=SUBJECTS, seed: int = 0) -> PoseBank:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    q, _ = np.linalg.qr(rng.normal(size=(n, 24, 3, 3)))
    return PoseBank(
        rotmats=q.astype(np.float32),
        clip_index=np.repeat(np.arange(len(lengths)), lengths).astype(np.int32),
        clip_names=[f"c{i}" for i in range(len(lengths))],
        clip_sources=["bvh"] * len(lengths),
        shapes=rng.normal(size=(4, 10)).astype(np.float32),
        body={"name": "test"},
        clip_subjects=list(subjects),
    )


def frames_of(bank: PoseBank, clips) -> np.ndarray:
    return np.nonzero(np.isin(bank.clip_index, list(clips)))[0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_holds_out_whole_subjects(seed: int):
    bank = make_bank()
    train, val = bank.split(val_fraction=0.3, seed=seed, val_subjects=("cmu_07",))
    sets = bank.validation_sets(val_fraction=0.3, seed=seed, val_subjects=("cmu_07",))
    assert set(sets) == {"clips", "subjects"}
    np.testing.assert_array_equal(sets["subjects"], frames_of(bank, [4, 5]))
    # the two clips without a subject: one goes to validation (never both)
    assert any(np.array_equal(sets["clips"], frames_of(bank, [c])) for c in (0, 1))
    np.testing.assert_array_equal(
        np.sort(val), np.sort(np.concatenate([sets["clips"], sets["subjects"]]))
    )
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(bank.num_frames))
    assert set(frames_of(bank, [2, 3])) <= set(train)  # other subjects: always training


def test_split_default_val_subjects_and_no_clip_holdout():
    bank = make_bank()
    assert DEFAULT_VAL_SUBJECTS == ("cmu_02", "cmu_05")
    sets = bank.validation_sets(val_fraction=0.0)
    assert set(sets) == {"subjects"}
    np.testing.assert_array_equal(sets["subjects"], frames_of(bank, [2, 3]))
    train, val = bank.split(val_fraction=0.0)
    np.testing.assert_array_equal(val, frames_of(bank, [2, 3]))
    np.testing.assert_array_equal(train, frames_of(bank, [0, 1, 4, 5]))
    # an unknown held-out subject holds nothing out by subject
    assert set(bank.validation_sets(0.3, 0, ("cmu_99",))) == {"clips"}


def test_split_that_leaves_nothing_raises():
    bank = make_bank()
    with pytest.raises(Key2MeshError, match="no validation or no training"):
        bank.split(val_fraction=0.0, val_subjects=())
    everyone = make_bank(subjects=["cmu_01"] * 6)
    with pytest.raises(Key2MeshError, match="no validation or no training"):
        everyone.split(val_subjects=("cmu_01",))
    with pytest.raises(Key2MeshError, match="at least 2 clips"):
        make_bank(lengths=[5], subjects=[""]).split()


def old_split(lengths: list[int], val_fraction: float, seed: int) -> np.ndarray:
    """The held-out clips of the split before subjects existed (a seeded permutation of clips;
    validation = the first clips until their frames reach val_fraction of all frames)."""
    counts = np.array(lengths)
    order = np.random.default_rng(seed).permutation(len(lengths))
    cum = np.cumsum(counts[order])
    n_val = min(max(1, int(np.searchsorted(cum, val_fraction * cum[-1])) + 1), len(lengths) - 1)
    return np.sort(order[:n_val])


def test_split_without_subjects_is_unchanged():
    lengths = [10, 7, 5, 8, 6]  # frames 0-9, 10-16, 17-21, 22-29, 30-35
    for subjects in ([""] * 5, []):  # a cache with empty subjects, and an old cache without them
        bank = make_bank(lengths, subjects)
        _, val = bank.split(val_fraction=0.3, seed=0)
        np.testing.assert_array_equal(val, list(range(17, 22)) + list(range(30, 36)))  # clips 2, 4
        _, val = bank.split(val_fraction=0.1, seed=1)
        np.testing.assert_array_equal(val, range(30, 36))  # clip 4
        assert set(bank.validation_sets(0.3, 0)) == {"clips"}
        for seed in range(6):
            for frac in (0.1, 0.3, 0.5, 0.9):
                train, val = bank.split(val_fraction=frac, seed=seed)
                np.testing.assert_array_equal(val, frames_of(bank, old_split(lengths, frac, seed)))
                assert len(train) + len(val) == bank.num_frames


def test_save_load_keeps_subjects(tmp_path: Path):
    bank = make_bank()
    loaded = PoseBank.load(bank.save(tmp_path / "cache.npz"))
    assert loaded.clip_subjects == SUBJECTS and loaded.clip_names == bank.clip_names
    np.testing.assert_array_equal(loaded.rotmats, bank.rotmats)
    for a, b in zip(loaded.split(0.3, 2, ("cmu_07",)), bank.split(0.3, 2, ("cmu_07",))):
        np.testing.assert_array_equal(a, b)
    # a cache written without subjects loads with empty ones and splits as before
    no_subj = make_bank([10, 7, 5, 8, 6], [])
    loaded = PoseBank.load(no_subj.save(tmp_path / "old.npz"))
    assert loaded.clip_subjects == [""] * 5
    np.testing.assert_array_equal(loaded.split(0.3, 0)[1], no_subj.split(0.3, 0)[1])
    # a file from before subjects existed (no clip_subjects key)
    np.savez(
        tmp_path / "older.npz",
        rotmats=no_subj.rotmats,
        clip_index=no_subj.clip_index,
        clip_names=np.array(no_subj.clip_names),
        shapes=no_subj.shapes,
        body=np.array('{"name": "test"}'),
    )
    older = PoseBank.load(tmp_path / "older.npz")
    assert older.clip_subjects == [] and older.clip_sources == []
    np.testing.assert_array_equal(older.split(0.3, 0)[1], no_subj.split(0.3, 0)[1])


def test_cache_of_bvh_poses_from_before_the_retargeting_fix_warns(tmp_path: Path, caplog):
    from key2mesh.data.cache import RETARGET_VERSION

    old = make_bank()  # bvh clips, no retarget_version in meta: built before the fix
    with caplog.at_level("WARNING", logger="key2mesh.data.cache"):
        PoseBank.load(old.save(tmp_path / "old.npz"))
    assert "rebuild it with `key2mesh data prepare`" in caplog.text and "bvh" in caplog.text
    assert "pelvis pitched" in caplog.text and "easing from the dropped T-pose" in caplog.text
    assert old.stale_sources() == ["bvh"]
    caplog.clear()
    v2 = make_bank()  # built after the root fix, before the T-pose blend frames were dropped
    v2.meta["retarget_version"] = 2
    with caplog.at_level("WARNING", logger="key2mesh.data.cache"):
        PoseBank.load(v2.save(tmp_path / "v2.npz"))
    assert "easing from the dropped T-pose" in caplog.text and "pelvis" not in caplog.text
    assert v2.stale_sources() == ["bvh"]
    free = make_bank()
    free.clip_sources = ["holosoma"] * len(free.clip_names)
    assert free.stale_sources() == []  # no BVH poses: nothing to rebuild
    caplog.clear()
    new = make_bank()
    new.meta["retarget_version"] = RETARGET_VERSION
    with caplog.at_level("WARNING", logger="key2mesh.data.cache"):
        PoseBank.load(new.save(tmp_path / "new.npz"))
    assert caplog.text == "" and new.stale_sources() == []


def test_split_options_and_split_for():
    assert split_options({"seed": 3, "val_subjects": ["cmu_07"]}) == {
        "val_fraction": 0.1,
        "seed": 3,
        "val_subjects": ("cmu_07",),
    }
    assert split_options(None) == {
        "val_fraction": 0.1,
        "seed": 0,
        "val_subjects": ("cmu_02", "cmu_05"),
    }
    assert split_options({"val_fraction": 0.25, "val_subjects": []})["val_subjects"] == ()
    bank = make_bank()
    config = {"seed": 3, "val_subjects": ["cmu_07"], "val_fraction": 0.3, "lr": 1e-4}
    for a, b in zip(bank.split_for(config), bank.split(0.3, 3, ("cmu_07",))):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# MotionClip.subsample


def test_subsample_integer_ratio_keeps_every_kth_frame():
    rng = np.random.default_rng(0)
    rot = rng.normal(size=(9, 24, 3, 3)).astype(np.float32)
    joints = rng.normal(size=(9, 5, 3)).astype(np.float32)
    clip = MotionClip("a", "test", 120.0, rotmats=rot, joints=joints, joint_names=tuple("abcde"))
    out = clip.subsample(30)
    assert out.fps == 30.0 and out.num_frames == 3
    np.testing.assert_array_equal(out.rotmats, rot[[0, 4, 8]])
    np.testing.assert_array_equal(out.joints, joints[[0, 4, 8]])
    assert (
        clip.subsample(60).num_frames == 5
        and clip.subsample(120) is clip
        and clip.subsample(240) is clip
    )
    assert out.name == "a" and out.joint_names == tuple("abcde")
    with pytest.raises(Key2MeshError, match="target fps"):
        clip.subsample(0)


def test_subsample_non_integer_ratio_interpolates_joints():
    i = np.arange(11, dtype=np.float64)  # 11 frames at 50 fps: 0.2 s
    joints = np.stack(
        [np.stack([3 * i, 1 + 0.6 * i, -i], -1), np.stack([i * 0, i * 0 + 2, 0.3 * i], -1)], 1
    )
    clip = MotionClip("j", "test", 50.0, joints=joints.astype(np.float32), subject="cmu_02")
    out = clip.subsample(30)
    assert out.fps == 30.0 and out.num_frames == 7 and out.subject == "cmu_02"
    n = np.arange(7, dtype=np.float64)  # t = n / 30 s is source frame 50 n / 30 = 5 n / 3
    want = np.stack(
        [np.stack([5 * n, 1 + n, -5 * n / 3], -1), np.stack([n * 0, n * 0 + 2, 0.5 * n], -1)], 1
    )
    np.testing.assert_allclose(out.joints, want, rtol=0, atol=1e-5)
    assert out.joints.dtype == np.float32


def test_subsample_non_integer_ratio_rotations_take_nearest_frames():
    rot = np.broadcast_to(np.eye(3, dtype=np.float32), (11, 24, 3, 3)).copy()
    rot[:, 0, 0, 0] = np.arange(11)  # tag each frame
    joints = np.arange(11, dtype=np.float32)[:, None, None] * np.ones((11, 2, 3), np.float32)
    out = MotionClip("r", "test", 50.0, rotmats=rot, joints=joints).subsample(30)
    # source frames 0, 1.67, 3.33, 5, 6.67, 8.33, 10 -> nearest 0, 2, 3, 5, 7, 8, 10
    np.testing.assert_array_equal(out.rotmats[:, 0, 0, 0], [0, 2, 3, 5, 7, 8, 10])
    np.testing.assert_array_equal(out.joints[:, 0, 0], [0, 2, 3, 5, 7, 8, 10])
    assert out.fps == 30.0


# ---------------------------------------------------------------------------------------------
# the CLI end to end (anny body, a few IK iterations; a few seconds)


def test_data_prepare_cli_reads_bvh_folder(tmp_path: Path, capsys):
    from key2mesh.cli import main

    folder = tmp_path / "bvh"
    folder.mkdir()
    (folder / "60_01.bvh").write_text(cgspeed_bvh())
    (folder / "60_02.bvh").write_text(cgspeed_bvh())
    (folder / "broken.bvh").write_text("HIERARCHY\n")
    out = tmp_path / "cache.npz"
    argv = [
        "data",
        "prepare",
        "--sources",
        "bvh",
        "--bvh",
        str(folder),
        "--out",
        str(out),
        "--num-shapes",
        "8",
        "--ik-iters",
        "5",
        "--fps",
        "30",
        "--fps-override",
        "60_02=30",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 files skipped" in printed and "broken.bvh" in printed and "IK fit of bvh" in printed
    bank = PoseBank.load(out)
    # 60_01: 4 frames at 120 fps -> every 4th -> 1 frame; 60_02 declared 30 fps -> all 4 frames
    assert bank.clip_names == ["60_01", "60_02"] and bank.clip_subjects == ["cmu_60", "cmu_60"]
    assert bank.clip_sources == ["bvh", "bvh"]
    np.testing.assert_array_equal(bank.clip_index, [0, 1, 1, 1, 1])
    assert (
        bank.rotmats.shape[0] == 5 and np.isfinite(bank.rotmats).all() and bank.shapes.shape[0] == 8
    )
    assert bank.meta["sources"] == ["bvh"] and bank.meta["retarget_version"] >= 2


def test_namespaced_mixamo_names_match_motionbuilder():
    from key2mesh.data.mocap.cmu import match_joint_table

    names = ["mixamorig:Hips"] + [
        f"mixamorig:{s}{j}"
        for s in ("Left", "Right")
        for j in ("UpLeg", "Leg", "Foot", "Arm", "ForeArm", "Hand")
    ]
    table, mapping = match_joint_table(names)
    assert table == "motionbuilder" and mapping["mixamorig:LeftLeg"] == "smpl_left_knee"


CMU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu-mocap"


@pytest.mark.slow
@pytest.mark.skipif(
    not (CMU_DIR / "cmu-bvh-cgspeed-daz.tar.xz").is_file(), reason="needs ../shared/data/cmu-mocap"
)
def test_real_cmu_bvh_archive():
    """The 185 cgspeed trials: read in place, true rates from INDEX.tsv, T-pose frames dropped."""
    report = load_bvh_files([CMU_DIR / "cmu-bvh-cgspeed-daz.tar.xz"])
    assert len(report.clips) == 185 and not report.skipped
    rates = [c.fps for c in report.clips]
    assert (
        sum(abs(r - 60) < 1e-3 for r in rates) == 28
        and sum(abs(r - 120) < 1e-3 for r in rates) == 157
    )
    assert all(c.name.split("_")[0] in ("60", "61") for c in report.clips if abs(c.fps - 60) < 1e-3)
    # the trials' frames in INDEX.tsv less 185 T-pose frames and 684 blend frames
    # (benchmarks/results/cmu_blend_frames.md: 68 trials x 3, 108 x 4, 8 x 6)
    with open(CMU_DIR / "INDEX.tsv", encoding="utf-8") as f:
        frames = {r["trial"]: int(r["frames"]) for r in csv.DictReader(f, delimiter="\t")}
    assert sum(frames[c.name] - c.num_frames for c in report.clips) == 185 + 684
    assert sum(c.subsample(30).num_frames for c in report.clips) == 73007
    assert len({c.subject for c in report.clips}) == 17
    heights = [float(c.joints[0, :, 1].max() - c.joints[0, :, 1].min()) for c in report.clips]
    assert 1.2 < np.median(heights) < 1.9  # metres, standing people, y up


def _bvh_with_hips(hips: list[float]) -> str:
    """A cgspeed-style BVH whose frame k has its hip at x = hips[k] cm (frame 0: the T-pose)."""
    rows = [_frame(h, arms_down=k > 0) for k, h in enumerate(hips)]
    return (
        "HIERARCHY\n" + "\n".join(_hierarchy(SKELETON)) + "\nMOTION\n"
        f"Frames:\t{len(hips)}\nFrame Time:\t0.00833333\n" + "\n".join(rows) + "\n"
    )


def test_blend_prefix_counts_the_fast_leading_frames():
    """Leading steps above 2x the clip's median step are blend frames (at most 6); a clip
    shorter than 10 frames, or one whose motion starts slowly, keeps every frame."""
    x = np.array([0.0, 30, 55, 72, 80] + [80 + k for k in range(1, 21)])  # steps 30,25,17,8,1...
    joints = np.zeros((len(x), 3, 3))
    joints[:, :, 0] = x[:, None]
    assert blend_prefix(joints) == 4
    assert blend_prefix(joints, max_frames=2) == 2
    assert blend_prefix(joints[4:]) == 0  # from the first captured pose on: uniform 1-unit steps
    assert blend_prefix(joints[:9]) == 0  # too short for a median
    fast = joints.copy()
    fast[:, :, 0] = 10 * np.arange(len(x))[:, None]  # fast but uniform
    assert blend_prefix(fast) == 0
    assert blend_prefix(np.repeat(joints[:1], 30, axis=0)) == 0  # no motion at all


def test_frames_easing_from_the_tpose_are_dropped(tmp_path: Path):
    """cgspeed eases from its T-pose frame into the motion: after the T-pose, the frames moving
    far faster than the clip's median step are dropped too; with ``tpose_frames`` 0 in the index
    (the T-pose kept) nothing is."""
    hips = [0.0, 0.0, 30, 55, 72, 80] + [80 + k for k in range(1, 21)]  # cm
    (tmp_path / "60_01.bvh").write_text(_bvh_with_hips(hips))
    clip = load_bvh_files([tmp_path]).clips[0]
    assert len(clip.joints) == len(hips) - 5  # the T-pose and 4 blend frames
    assert clip.joints[0, 0, 0] == pytest.approx(0.80)  # the pelvis at the first captured pose
    (tmp_path / "INDEX.tsv").write_text("trial\ttpose_frames\n60_01\t0\n")
    assert len(load_bvh_files([tmp_path]).clips[0].joints) == len(hips)


def test_a_body_not_human_sized_in_metres_is_skipped(tmp_path: Path):
    """Joints scaled by the wrong unit (a file named like one skeleton but in other units) give
    a body 100x too tall: the file is skipped with its thigh length and the unit named, not
    trained on; the right unit loads."""
    from key2mesh.data.mocap.bvh import forward_kinematics, parse_bvh
    from key2mesh.data.mocap.cmu import _to_clip

    motion = parse_bvh(cgspeed_bvh(), "x.bvh")
    pos, names = forward_kinematics(motion)
    args = (pos, names, motion.fps, "60_01", "bvh", "x.bvh", None, {})
    clip = _to_clip(*args, None)  # cm, as cgspeed's naming says: a 0.37 m thigh
    assert clip.num_frames > 0
    with pytest.raises(Key2MeshError, match=r"x.bvh: its thigh is 37 m long with 1 m per file"):
        _to_clip(*args, 1.0)
    (tmp_path / "02_01.bvh").write_text(cgspeed_bvh())
    (tmp_path / "02_02.bvh").write_text(cgspeed_bvh().replace("0.00833333", "0.00833333 "))
    import key2mesh.data.mocap.cmu as cmu

    report = load_bvh_files([tmp_path])
    assert report.num_skipped == 0
    old = cmu.UNIT_SCALE["cgspeed_daz"]
    try:
        cmu.UNIT_SCALE["cgspeed_daz"] = 1.0  # as if the naming implied metres
        report = load_bvh_files([tmp_path])
    finally:
        cmu.UNIT_SCALE["cgspeed_daz"] = old
    assert report.clips == [] and report.num_skipped == 2
    assert all("thigh is 37 m" in why for _, why in report.skipped)

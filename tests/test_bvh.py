"""BVH reader: parsing, forward kinematics against hand-computed points, malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from key2mesh.data.mocap.bvh import forward_kinematics, local_rotations, parse_bvh, read_bvh
from key2mesh.errors import Key2MeshError

# A cgspeed-style skeleton: root with 6 channels (Zrot Yrot Xrot, as cgspeed writes them), every
# other joint Zrotation Xrotation Yrotation; hip -> arm -> hand (End Site) and hip -> leg (End Site).
HIERARCHY = """\
HIERARCHY
ROOT hip
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT arm
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT hand
    {
      OFFSET 0 0 5
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 2 0 0
      }
    }
  }
  JOINT leg
  {
    OFFSET 3 -4 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -6 0
    }
  }
}
"""
#          hip: Xp Yp Zp Zr Yr Xr | arm: Zr Xr Yr | hand: Zr Xr Yr | leg: Zr Xr Yr
FRAMES = [
    "1 2 3 0 0 0 0 0 0 0 0 0 0 0 0",  # rest pose at (1, 2, 3)
    "5 2 3 90 0 0 0 0 0 0 0 0 0 0 0",  # Xposition moves the root, root Zrotation 90
    "1 2 3 0 0 0 90 90 0 0 0 90 0 90 0",  # arm Rz(90)·Rx(90), hand Ry(90), leg Rx(90)
    "1 2 3 90 90 0 0 0 0 0 0 0 0 0 0",  # root Rz(90)·Ry(90)
]
BVH = HIERARCHY + "MOTION\nFrames: 4\nFrame Time: 0.025\n" + "\n".join(FRAMES) + "\n"

NAMES = ("hip", "arm", "hand", "leg", "hand_end", "leg_end")

# Rz(90): (x,y,z) -> (-y,x,z); Rx(90): (x,y,z) -> (x,-z,y); Ry(90): (x,y,z) -> (z,y,-x).
EXPECTED = np.array(
    [
        # rest: offsets added up from (1, 2, 3)
        [(1, 2, 3), (1, 12, 3), (1, 12, 8), (4, -2, 3), (3, 12, 8), (4, -8, 3)],
        # root at (5,2,3) turned Rz(90): arm (0,10,0) -> (-10,0,0); hand (0,0,5) stays;
        # hand end (2,0,0) -> (0,2,0); leg (3,-4,0) -> (4,3,0); leg end (0,-6,0) -> (6,0,0)
        [(5, 2, 3), (-5, 2, 3), (-5, 2, 8), (9, 5, 3), (-5, 4, 8), (15, 5, 3)],
        # arm Rz·Rx: hand offset (0,0,5) -Rx-> (0,-5,0) -Rz-> (5,0,0);
        # hand end: (2,0,0) -Ry-> (0,0,-2) -Rx-> (0,2,0) -Rz-> (-2,0,0);
        # leg end: (0,-6,0) -Rx-> (0,0,-6)
        [(1, 2, 3), (1, 12, 3), (6, 12, 3), (4, -2, 3), (4, 12, 3), (4, -2, -3)],
        # root Rz·Ry: arm (0,10,0) -Ry-> same -Rz-> (-10,0,0); hand (0,0,5) -Ry-> (5,0,0) -Rz->
        # (0,5,0); hand end (2,0,0) -Ry-> (0,0,-2) -Rz-> same; leg (3,-4,0) -Ry-> (0,-4,-3) -Rz->
        # (4,0,-3); leg end (0,-6,0) -Ry-> same -Rz-> (6,0,0)
        [(1, 2, 3), (-9, 2, 3), (-9, 7, 3), (5, 2, 0), (-9, 7, 1), (11, 2, 0)],
    ],
    dtype=float,
)

RZ90 = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
RX90 = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
RY90 = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])


def test_parse_structure_and_fps():
    m = parse_bvh(BVH, "t.bvh")
    assert m.joint_names == ("hip", "arm", "hand", "leg")
    assert [j.parent for j in m.joints] == [-1, 0, 1, 0]
    assert m.joints[0].channels == (
        "Xposition",
        "Yposition",
        "Zposition",
        "Zrotation",
        "Yrotation",
        "Xrotation",
    )
    assert m.joints[1].channels == ("Zrotation", "Xrotation", "Yrotation")
    np.testing.assert_array_equal(m.joints[3].offset, [3, -4, 0])
    np.testing.assert_array_equal(m.joints[2].end_offset, [2, 0, 0])
    assert m.joints[0].end_offset is None and m.joints[1].end_offset is None
    assert m.channel_start == [0, 6, 9, 12]
    assert m.values.shape == (4, 15) and m.values.dtype == np.float64
    np.testing.assert_array_equal(m.values[2, 6:9], [90, 90, 0])
    assert m.num_frames == 4 and m.source == "t.bvh"
    assert m.frame_time == 0.025 and m.fps == pytest.approx(40.0, abs=1e-12)


def test_fk_matches_hand_computed_points():
    pos, names = forward_kinematics(parse_bvh(BVH))
    assert names == NAMES
    assert pos.shape == (4, 6, 3)
    np.testing.assert_allclose(pos, EXPECTED, rtol=0, atol=1e-9)


def test_child_under_root_zrotation_lands_at_minus_x():
    pos, names = forward_kinematics(parse_bvh(BVH))
    np.testing.assert_allclose(pos[1, names.index("arm")] - pos[1, 0], [-10, 0, 0], atol=1e-9)
    np.testing.assert_allclose(pos[1, 0], [5, 2, 3], atol=1e-12)  # Xposition 5 replaced x = 1


def test_rotation_order_is_intrinsic_as_listed():
    """Zrotation Xrotation Yrotation is R = Rz·Rx·Ry; the swapped product gives other points."""
    m = parse_bvh(BVH)
    rot = local_rotations(m)
    assert rot.shape == (4, 4, 3, 3)
    np.testing.assert_allclose(rot[2, 1], RZ90 @ RX90, atol=1e-12)
    np.testing.assert_allclose(rot[2, 2], RY90, atol=1e-12)
    np.testing.assert_allclose(rot[3, 0], RZ90 @ RY90, atol=1e-12)  # root: Zrot Yrot Xrot
    np.testing.assert_allclose(rot[0], np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-12)
    pos, names = forward_kinematics(m)
    arm = pos[2, names.index("arm")]
    wrong_hand = arm + RX90 @ RZ90 @ [0, 0, 5]  # order-swapped expectation: (1, 7, 3)
    np.testing.assert_allclose(wrong_hand, [1, 7, 3], atol=1e-12)
    assert np.linalg.norm(pos[2, names.index("hand")] - wrong_hand) > 1.0
    np.testing.assert_allclose(
        pos[2, names.index("hand")], arm + RZ90 @ RX90 @ [0, 0, 5], atol=1e-9
    )
    # The root's own order (Z Y X) matters too: Ry·Rz would put the leg at (1,5,-1).
    wrong_leg = np.array([1, 2, 3]) + RY90 @ RZ90 @ [3, -4, 0]
    assert np.linalg.norm(pos[3, names.index("leg")] - wrong_leg) > 1.0


def test_channel_order_change_changes_the_answer():
    """Writing the arm's channels as Xrotation Zrotation Yrotation (same values) gives Rx·Rz."""
    text = BVH.replace(
        "OFFSET 0 10 0\n    CHANNELS 3 Zrotation Xrotation Yrotation",
        "OFFSET 0 10 0\n    CHANNELS 3 Xrotation Zrotation Yrotation",
    )
    assert text != BVH
    pos, names = forward_kinematics(parse_bvh(text))
    np.testing.assert_allclose(pos[2, names.index("hand")], [1, 7, 3], atol=1e-9)
    np.testing.assert_allclose(pos[[0, 1, 3]], EXPECTED[[0, 1, 3]], atol=1e-9)


def test_root_offset_adds_to_position_channels_and_child_position_channels():
    text = HIERARCHY.replace("ROOT hip\n{\n  OFFSET 0 0 0", "ROOT hip\n{\n  OFFSET 10 0 0")
    # the leg also gets position channels (some exporters write 6 channels on every joint)
    text = text.replace(
        "OFFSET 3 -4 0\n    CHANNELS 3 Zrotation Xrotation Yrotation",
        "OFFSET 3 -4 0\n    CHANNELS 4 Yposition Zrotation Xrotation Yrotation",
    )
    text += "MOTION\nFrames: 1\nFrame Time: 0.01\n1 2 3 90 0 0 0 0 0 0 0 0 1 0 0 0\n"
    pos, names = forward_kinematics(parse_bvh(text))
    # root (10+1, 2, 3); leg local offset (3, -4+1, 0) turned by the root's Rz(90) -> (3, 3, 0)
    np.testing.assert_allclose(pos[0, 0], [11, 2, 3], atol=1e-12)
    np.testing.assert_allclose(pos[0, names.index("leg")], [14, 5, 3], atol=1e-9)
    np.testing.assert_allclose(pos[0, names.index("leg_end")], [20, 5, 3], atol=1e-9)


def test_joint_without_channels_and_no_end_sites():
    text = (
        "HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n"
        " JOINT b\n {\n  OFFSET 1 0 0\n  CHANNELS 0\n  JOINT c\n  {\n   OFFSET 0 1 0\n"
        "   CHANNELS 1 Zrotation\n  }\n }\n}\nMOTION\nFrames: 2\nFrame Time: 0.5\n0 0 0 0\n1 1 1 90\n"
    )
    m = parse_bvh(text)
    assert m.fps == 2.0 and m.joints[1].channels == () and m.channel_start == [0, 3, 3]
    pos, names = forward_kinematics(m)
    assert names == ("a", "b", "c") and pos.shape == (2, 3, 3)
    np.testing.assert_allclose(pos[1], [[1, 1, 1], [2, 1, 1], [2, 2, 1]], atol=1e-12)


def test_crlf_tabs_blank_lines_and_extra_frames_tolerated():
    text = BVH.replace("Frames: 4", "Frames:\t4").replace("Frame Time: 0.025", "Frame Time:\t0.025")
    text = text.replace("\n", "\r\n") + "\r\n\r\n"
    pos, names = forward_kinematics(parse_bvh(text))
    assert names == NAMES
    np.testing.assert_allclose(pos, EXPECTED, atol=1e-9)
    # a header counting fewer frames than the file holds reads only those frames
    pos2, _ = forward_kinematics(parse_bvh(BVH.replace("Frames: 4", "Frames: 2")))
    np.testing.assert_allclose(pos2, EXPECTED[:2], atol=1e-9)


def test_double_crlf_lines_and_motion_inside_a_joint_name():
    # a file converted to CRLF twice ends its lines with \r\r\n: a blank line after each,
    # also between "Frames:" and "Frame Time:" (was refused: "Frame Time > 0 (got 4, -1.0)")
    pos, names = forward_kinematics(parse_bvh(BVH.replace("\n", "\r\r\n")))
    assert names == NAMES
    np.testing.assert_allclose(pos, EXPECTED, atol=1e-9)
    # only a whole MOTION token starts the motion (was split inside the name: "JOINT without a name")
    renamed = BVH.replace("leg", "MOTIONleg")
    pos, names = forward_kinematics(parse_bvh(renamed))
    assert names == tuple(n.replace("leg", "MOTIONleg") for n in NAMES)
    np.testing.assert_allclose(pos, EXPECTED, atol=1e-9)


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path):
    # was refused: "a BVH file starts with HIERARCHY"
    path = tmp_path / "bom.bvh"
    path.write_bytes(b"\xef\xbb\xbf" + BVH.encode())
    pos, names = forward_kinematics(read_bvh(path))
    assert names == NAMES
    np.testing.assert_allclose(pos, EXPECTED, atol=1e-9)


def test_read_bvh_file(tmp_path: Path):
    path = tmp_path / "walk.bvh"
    path.write_text(BVH)
    m = read_bvh(path)
    assert m.source == str(path) and m.num_frames == 4
    np.testing.assert_allclose(forward_kinematics(m)[0], EXPECTED, atol=1e-9)
    with pytest.raises(Key2MeshError, match="missing.bvh"):
        read_bvh(tmp_path / "missing.bvh")
    m2 = read_bvh("whatever.bvh", text=BVH)  # already-read text, path used as the source
    assert m2.source == "whatever.bvh" and m2.num_frames == 4


SECOND_ROOT = "ROOT other\n{\n  OFFSET 0 0 0\n  CHANNELS 1 Xposition\n}\nMOTION"
BAD = [
    ("no MOTION", BVH.split("MOTION")[0], "no MOTION"),
    ("no HIERARCHY", BVH.replace("HIERARCHY\n", ""), "starts with HIERARCHY"),
    ("missing Frames line", BVH.replace("Frames: 4\n", ""), "Frames"),
    ("missing Frame Time line", BVH.replace("Frame Time: 0.025\n", ""), "Frame Time"),
    ("zero Frame Time", BVH.replace("Frame Time: 0.025", "Frame Time: 0"), "Frame Time > 0"),
    ("tiny Frame Time", BVH.replace("Frame Time: 0.025", "Frame Time: 1e-300"), "Frame Time 1e-300 s is not"),
    ("huge Frame Time", BVH.replace("Frame Time: 0.025", "Frame Time: 1e6"), "Frame Time 1e\\+06 s is not"),
    ("non-numeric Frames", BVH.replace("Frames: 4", "Frames: four"), "Frames: N"),
    ("zero Frames", BVH.replace("Frames: 4", "Frames: 0"), "Frames ≥ 1"),
    ("too few frame lines", BVH.rsplit(FRAMES[-1], 1)[0], "header says 4 frames, the file holds 3"),
    ("wrong value count", BVH.replace(FRAMES[1], FRAMES[1] + " 7"), "61 motion values for 4 frames × 15 channels"),
    ("non-numeric value", BVH.replace(FRAMES[2], FRAMES[2].replace("90 90", "90 abc")), "non-numeric"),
    ("NaN value", BVH.replace(FRAMES[1], FRAMES[1].replace("90", "nan")), "NaN/inf"),
    ("inf value", BVH.replace(FRAMES[1], FRAMES[1].replace("90", "inf")), "NaN/inf"),
    ("missing closing brace", BVH.replace("    }\n  }\n  JOINT leg", "    }\n  JOINT leg"), "incomplete"),
    ("extra closing brace", BVH.replace("}\nMOTION", "}\n}\nMOTION"), "unbalanced"),
    ("duplicate joint names", BVH.replace("JOINT leg", "JOINT arm"), r"duplicate joint names \['arm'\]"),
    ("bad CHANNELS name", BVH.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Wrotation Yrotation", 1), "bad CHANNELS"),
    ("CHANNELS count", BVH.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS x Zrotation", 1), "CHANNELS needs a count"),
    ("second ROOT", BVH.replace("}\nMOTION", "}\n" + SECOND_ROOT), "more than one ROOT"),
    ("short OFFSET", BVH.replace("OFFSET 3 -4 0", "OFFSET 3 -4"), "OFFSET"),
    ("no brace after JOINT", BVH.replace("JOINT leg\n  {", "JOINT leg\n"), "expected '\\{' after JOINT leg"),
    ("JOINT inside End Site", BVH.replace("OFFSET 2 0 0", "OFFSET 2 0 0 JOINT x { }"), "outside a joint block"),
    ("unknown token", BVH.replace("JOINT leg", "BONE leg"), "unexpected token 'BONE'"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_bvh_raises_naming_the_source(what: str, text: str, message: str):
    assert text != BVH
    with pytest.raises(Key2MeshError, match=message) as info:
        parse_bvh(text, "bad_file.bvh")
    assert "bad_file.bvh" in str(info.value) and "\n" not in str(info.value)

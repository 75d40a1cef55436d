"""Acclaim ASF/AMC reader: parsing, forward kinematics against hand-computed points, errors."""

from __future__ import annotations

import math
import tarfile
from pathlib import Path

import numpy as np
import pytest

from key2mesh.data.mocap.asf_amc import (
    asf_amc_joint_positions,
    euler_matrix,
    parse_amc,
    parse_asf,
    read_asf_amc,
)
from key2mesh.errors import Key2MeshError

# Root; chain a -> b -> c off the root (b has a non-trivial axis, c has no dofs) and a branch d.
ASF = """\
# AST/ASF file for the tests
:version 1.10
:name TEST
:units
  mass 1.0
  length 0.5
  angle deg
:documentation
   free text, (with) punctuation
   more text
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name a
     direction 1 0 0
     length 2
     axis 0 0 0  XYZ
    dof rx ry rz
    limits (-180.0 180.0)
           (-180.0 180.0)
           (-180.0 180.0)
  end
  begin
     id 2
     name b
     direction 0 1 0
     length 1
     axis 0 0 -20  XYZ
    dof rx rz
    limits (-180.0 180.0)
           (-180.0 180.0)
  end
  begin
     id 3
     name c
     direction 0 0 1
     length 0.5
     axis 90 0 0  XYZ
  end
  begin
     id 4
     name d
     direction 0 -1 0
     length 3
     axis 0 0 0  XYZ
    dof rx
    limits (-180.0 180.0)
  end
:hierarchy
  begin
    root a d
    a b
    b c
  end
"""

# frame 1: rest pose translated; frame 2: a rz=90, d rx=90; frame 3: root ry=90, b rx=90.
AMC = """\
#!OML:ASF test.asf
:FULLY-SPECIFIED
:DEGREES
1
root 1 2 3 0 0 0
a 0 0 0
b 0 0
d 0
2
root 1 2 3 0 0 0
a 0 0 90
b 0 0
d 90
3
root 0 0 0 0 90 0
a 0 0 0
b 90 0
d 0
"""

NAMES = ("root", "a", "b", "c", "d", "c_end", "d_end")
S20, C20 = math.sin(math.radians(20)), math.cos(math.radians(20))


def expected_units() -> np.ndarray:
    """Hand-computed positions (ASF units) of NAMES for the three frames of AMC."""
    f1 = {"root": (1, 2, 3), "a": (1, 2, 3), "b": (3, 2, 3), "c": (3, 3, 3),
          "d": (1, 2, 3), "c_end": (3, 3, 3.5), "d_end": (1, -1, 3)}  # fmt: skip
    # a rz=90 turns (2,0,0) into (0,2,0) and b's (0,1,0) into (-1,0,0); c follows a's rotation;
    # d rx=90 turns (0,-3,0) into (0,0,-3).
    f2 = {"root": (1, 2, 3), "a": (1, 2, 3), "b": (1, 4, 3), "c": (0, 4, 3),
          "d": (1, 2, 3), "c_end": (0, 4, 3.5), "d_end": (1, 2, 0)}  # fmt: skip
    # Root ry=90: (x,y,z) -> (z,y,-x), so a ends at (0,0,-2). b turns 90 deg about its axis'
    # x direction u = Rz(-20) x = (cos20, -sin20, 0): Rodrigues on (0,1,0) gives
    # u x v + u (u.v) = (-sin20 cos20, sin20^2, cos20), on (0,0,1) gives u x z = (-sin20, -cos20, 0).
    b_end = np.array([0, 0, -2]) + np.array([C20, S20**2, S20 * C20])  # after root ry=90
    c_end = b_end + 0.5 * np.array([0, -C20, S20])
    f3 = {"root": (0, 0, 0), "a": (0, 0, 0), "b": (0, 0, -2), "c": tuple(b_end),
          "d": (0, 0, 0), "c_end": tuple(c_end), "d_end": (0, -3, 0)}  # fmt: skip
    return np.array([[f[n] for n in NAMES] for f in (f1, f2, f3)], dtype=float)


def positions(asf: str = ASF, amc: str = AMC, metres_per_unit: float | None = 1.0):
    skeleton = parse_asf(asf, "test.asf")
    motion = parse_amc(amc, skeleton, "test.amc")
    return asf_amc_joint_positions(skeleton, motion, metres_per_unit)


def test_parse_asf_fields():
    sk = parse_asf(ASF)
    assert sk.name == "TEST" and sk.length_scale == 0.5 and sk.angle_unit == "deg"
    assert sk.root_order == ("TX", "TY", "TZ", "RX", "RY", "RZ") and sk.root_axis == "XYZ"
    np.testing.assert_array_equal(sk.root_position, 0)
    assert [b.name for b in sk.bones] == ["a", "b", "c", "d"]
    assert [b.parent for b in sk.bones] == ["root", "a", "b", "root"]
    b = sk.bone("b")
    assert b.dof == ("rx", "rz") and b.axis_order == "XYZ" and b.length == 1.0
    np.testing.assert_array_equal(b.axis, [0, 0, -20])
    np.testing.assert_array_equal(b.direction, [0, 1, 0])
    assert sk.bone("c").dof == ()


def test_parse_amc_values():
    sk = parse_asf(ASF)
    motion = parse_amc(AMC, sk)
    assert set(motion) == {"root", "a", "b", "d"}  # c has no dofs
    assert motion["root"].shape == (3, 6) and motion["root"].dtype == np.float64
    assert motion["b"].shape == (3, 2) and motion["d"].shape == (3, 1)
    np.testing.assert_array_equal(motion["a"][1], [0, 0, 90])
    np.testing.assert_array_equal(motion["b"][2], [90, 0])


def test_fk_matches_hand_computed_points():
    pos, names = positions()
    assert names == NAMES
    assert pos.shape == (3, 7, 3) and pos.dtype == np.float32
    np.testing.assert_allclose(pos, expected_units(), atol=1e-5)


def test_axis_cancels_at_zero_motion():
    """C M Cinv = I when M = I: a bone with a non-zero axis points along its direction."""
    pos, names = positions()
    ix = {n: i for i, n in enumerate(names)}
    np.testing.assert_allclose(pos[0, ix["c"]] - pos[0, ix["b"]], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(pos[0, ix["c_end"]] - pos[0, ix["c"]], [0, 0, 0.5], atol=1e-6)


def test_euler_order_is_x_first():
    rx, rz = euler_matrix(np.radians([90.0, 0, 0])), euler_matrix(np.radians([0, 0, 90.0]))
    both = euler_matrix(np.radians([90.0, 0, 90.0]))
    np.testing.assert_allclose(both, rz @ rx, atol=1e-12)
    np.testing.assert_allclose(both @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # x first, then z
    np.testing.assert_allclose(euler_matrix(np.radians([90.0, 0, 90.0]), "ZYX"), rx @ rz)


def test_multi_angle_bone_uses_rz_ry_rx_whatever_the_dof_order():
    amc = "1\nroot 0 0 0 0 0 0\na 90 0 90\nb 0 0\nd 0\n"
    pos, names = positions(amc=amc)
    # M_a = Rz(90) Rx(90): (2,0,0) -> (0,2,0); b's (0,1,0) -> Rx: (0,0,1) -> Rz: (0,0,1).
    np.testing.assert_allclose(pos[0, names.index("b")], [0, 2, 0], atol=1e-5)
    np.testing.assert_allclose(pos[0, names.index("c")], [0, 2, 1], atol=1e-5)
    # Listing b's dofs as "rz rx" only changes the order of the values in the AMC.
    swapped_asf = ASF.replace("dof rx rz", "dof rz rx")
    pos2, _ = positions(asf=swapped_asf, amc=AMC.replace("b 90 0", "b 0 90"))
    np.testing.assert_allclose(pos2, expected_units(), atol=1e-5)


def test_metres_scaling():
    metres, _ = positions(metres_per_unit=None)  # default 0.0254 / 0.5
    np.testing.assert_allclose(metres, expected_units() * 0.0508, atol=1e-6)
    half, _ = positions(metres_per_unit=0.5)
    np.testing.assert_allclose(half, expected_units() * 0.5, atol=1e-6)
    cmu, _ = positions(
        asf=ASF.replace("length 0.5\n  angle", "length 0.45\n  angle"), metres_per_unit=None
    )
    np.testing.assert_allclose(cmu, expected_units() * (0.0254 / 0.45), atol=1e-6)
    assert abs(0.0254 / 0.45 - 0.056444) < 1e-6


def test_radians_header_and_rad_asf():
    amc_rad = AMC.replace(":DEGREES", ":RADIANS").replace(" 90", f" {math.pi / 2!r}")
    sk = parse_asf(ASF)
    np.testing.assert_allclose(parse_amc(amc_rad, sk)["a"][1], [0, 0, 90])
    pos, _ = positions(amc=amc_rad)
    np.testing.assert_allclose(pos, expected_units(), atol=1e-5)
    # ASF in radians (axis -20 deg written in rad) and an AMC that states no unit.
    asf_rad = (
        ASF.replace("angle deg", "angle rad")
        .replace("0 0 -20  XYZ", f"0 0 {math.radians(-20)!r}  XYZ")
        .replace("90 0 0  XYZ", f"{math.pi / 2!r} 0 0  XYZ")
    )
    pos, _ = positions(asf=asf_rad, amc=amc_rad.replace(":RADIANS\n", ""))
    np.testing.assert_allclose(pos, expected_units(), atol=1e-5)
    # ... while a wrong unit really changes the answer.
    pos_wrong, _ = positions(amc=AMC.replace(":DEGREES", ":RADIANS"))
    assert not np.allclose(pos_wrong, expected_units(), atol=1e-3)


def test_crlf_and_trailing_blank_lines():
    pos, _ = positions(asf=ASF.replace("\n", "\r\n"), amc=AMC.replace("\n", "\r\n") + "\r\n\r\n")
    np.testing.assert_allclose(pos, expected_units(), atol=1e-5)


def test_root_translation_is_moved_by_root_position_and_orientation():
    asf = ASF.replace("position 0 0 0", "position 1 0 0").replace(
        "orientation 0 0 0", "orientation 0 0 90"
    )
    amc = "1\nroot 0 0 0 0 0 0\na 0 0 0\nb 0 0\nd 0\n2\nroot 0 0 0 90 0 0\na 0 0 0\nb 0 0\nd 0\n"
    pos, names = positions(asf=asf, amc=amc)
    np.testing.assert_allclose(pos[:, 0], [[1, 0, 0], [1, 0, 0]], atol=1e-6)
    # zero root rotation: C_root M C_rootᵀ = I, so a still ends 2 units along +x.
    np.testing.assert_allclose(pos[0, names.index("b")], [3, 0, 0], atol=1e-6)
    # RX=90 turns about C_root x = Rz(90) x = +y, i.e. Ry(90): (2,0,0) -> (0,0,-2).
    np.testing.assert_allclose(pos[1, names.index("b")], [1, 0, -2], atol=1e-6)


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path):
    # an AMC with a BOM was refused: "line 1: '\ufeff' before the first frame number"
    (tmp_path / "t.asf").write_bytes(b"\xef\xbb\xbf" + ASF.encode())
    (tmp_path / "t.amc").write_bytes(b"\xef\xbb\xbf" + AMC.encode())
    pos, names, _ = read_asf_amc(tmp_path / "t.asf", tmp_path / "t.amc")
    assert names == NAMES
    np.testing.assert_allclose(pos, expected_units() * 0.0254 / 0.5, atol=1e-6)


def test_read_files_fps_and_latin1(tmp_path: Path):
    (tmp_path / "t.asf").write_bytes(ASF.replace("# AST", "# caf\xe9 AST").encode("latin-1"))
    (tmp_path / "t.amc").write_text(AMC)
    pos, names, fps = read_asf_amc(tmp_path / "t.asf", tmp_path / "t.amc")
    assert fps == 120.0 and names == NAMES
    np.testing.assert_allclose(pos, expected_units() * 0.0508, atol=1e-6)
    (tmp_path / "s.amc").write_text(":SAMPLES-PER-SECOND 60\n" + AMC)
    assert read_asf_amc(tmp_path / "t.asf", tmp_path / "s.amc")[2] == 60.0
    with pytest.raises(Key2MeshError, match="missing.amc"):
        read_asf_amc(tmp_path / "t.asf", tmp_path / "missing.amc")


CYCLE = "root d\n    a b\n    b c\n    c a\n"
AMC_ERRORS = [
    ("wrong dof count", AMC.replace("a 0 0 90", "a 0 90"), "needs 3 numbers"),
    ("unknown bone", AMC.replace("d 90", "d 90\nzz 1 2"), "unknown bone 'zz'"),
    ("non-numeric value", AMC.replace("a 0 0 90", "a 0 x 90"), "non-numeric"),
    ("nan value", AMC.replace("a 0 0 90", "a 0 nan 90"), "non-finite"),
    ("missing bone in frame", AMC.replace("d 90\n", ""), "frame 2 has no values for d"),
    ("duplicate bone", AMC.replace("d 90\n", "d 90\nd 90\n"), "appears twice"),
    ("values before frame", AMC.replace(":DEGREES\n", ":DEGREES\na 0 0 0\n"), "before the first"),
    ("frame gap", AMC.replace("\n3\n", "\n5\n"), "frame 5 follows frame 2"),
    ("values for dof-less bone", AMC.replace("d 0\n", "d 0\nc 1\n", 1), "no dofs"),
    ("empty motion", "#!OML:ASF test.asf\n:FULLY-SPECIFIED\n:DEGREES\n\n", "no frames"),
]
ASF_ERRORS = [
    ("hierarchy parent undefined", ASF.replace("    b c\n", "    q c\n"), "'q', which is not"),
    ("hierarchy child undefined", ASF.replace("    b c\n", "    b c zz\n"), "'zz', which is not"),
    ("bone without parent", ASF.replace("    b c\n", ""), "'c' has no parent"),
    ("two parents", ASF.replace("    b c\n", "    b c\n    d c\n"), "two parents"),
    ("cycle", ASF.replace("root a d\n    a b\n    b c\n", CYCLE), "cycle"),
    ("no hierarchy", ASF.split(":hierarchy")[0], "no :hierarchy"),
    ("no root", ASF.replace(":root", ":rot"), "no :root"),
    ("bad length", ASF.replace("length 2\n", "length two\n"), "non-numeric"),
    ("short direction", ASF.replace("direction 1 0 0", "direction 1 0"), "needs 3 numbers"),
    ("bad axis order", ASF.replace("0 0 -20  XYZ", "0 0 -20  XYQ"), "permutation of XYZ"),
    ("bad dof", ASF.replace("dof rx rz", "dof rx rw"), "bad dof"),
    ("no end", ASF.replace("    dof rx\n    limits (-180.0 180.0)\n  end\n", "    dof rx\n"), "no 'end'"),
    ("duplicate bone", ASF.replace("name d", "name a"), "used twice"),
    ("bone without name", ASF.replace("     name d\n", ""), "has no name"),
    ("bad angle unit", ASF.replace("angle deg", "angle grad"), "angle unit"),
    ("bad root order", ASF.replace("order TX TY", "order TX QY"), ":root order"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "amc", "message"), AMC_ERRORS, ids=[e[0] for e in AMC_ERRORS])
def test_malformed_amc_raises(what: str, amc: str, message: str):
    with pytest.raises(Key2MeshError, match=message) as info:
        positions(amc=amc)
    assert "test.amc" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("what", "asf", "message"), ASF_ERRORS, ids=[e[0] for e in ASF_ERRORS])
def test_malformed_asf_raises(what: str, asf: str, message: str):
    with pytest.raises(Key2MeshError, match=message) as info:
        parse_asf(asf, "test.asf")
    assert "test.asf" in str(info.value) and "\n" not in str(info.value)


def test_bad_motion_dict_raises():
    sk = parse_asf(ASF)
    motion = parse_amc(AMC, sk)
    with pytest.raises(Key2MeshError, match="shape"):
        asf_amc_joint_positions(sk, {**motion, "b": motion["b"][:2]})
    with pytest.raises(Key2MeshError, match="no values for 'd'"):
        asf_amc_joint_positions(sk, {k: v for k, v in motion.items() if k != "d"})
    with pytest.raises(Key2MeshError, match="not in the skeleton"):
        asf_amc_joint_positions(sk, {**motion, "zz": motion["d"]})
    with pytest.raises(Key2MeshError, match="only rx ry rz"):
        positions(asf=ASF.replace("dof rx\n", "dof tx\n"))


ARCHIVE = Path(__file__).resolve().parents[1] / "../shared/data/cmu-mocap/cmu-asf-amc-01-03.tar.xz"


@pytest.mark.slow
def test_real_cmu_trial():
    if not ARCHIVE.exists():
        pytest.skip(f"{ARCHIVE} is absent")
    with tarfile.open(ARCHIVE) as tar:
        asf = tar.extractfile("01/01.asf").read().decode("latin-1")  # type: ignore[union-attr]
        amc = tar.extractfile("01/01_02.amc").read().decode("latin-1")  # type: ignore[union-attr]
    sk = parse_asf(asf, "01.asf")
    assert sk.length_scale == 0.45 and len(sk.bones) == 30
    pos, names = asf_amc_joint_positions(sk, parse_amc(amc, sk, "01_02.amc"))
    ix = {n: i for i, n in enumerate(names)}
    assert pos.shape == (4346, 1 + 30 + 7, 3)  # 7 leaves: toes, head, fingers, thumbs
    thigh = np.linalg.norm(pos[:, ix["lfemur"]] - pos[:, ix["ltibia"]], axis=-1)
    assert thigh.max() - thigh.min() < 1e-5 and 0.38 < thigh.mean() < 0.46
    feet = [ix[n] for n in ("lfoot", "rfoot", "ltoes_end", "rtoes_end")]
    height = pos[0, ix["head_end"], 1] - pos[0, feet, 1].min()
    assert 1.5 < height < 1.9  # first frame: standing
    # y up (head above hips) and left joints on the person's left (toes point forward).
    assert (pos[:, ix["head_end"], 1] > pos[:, ix["lfemur"], 1]).mean() > 0.99
    forward = pos[:, ix["ltoes_end"]] - pos[:, ix["lfoot"]]
    left = np.cross([0.0, 1.0, 0.0], forward)
    hips = pos[:, ix["lfemur"]] - pos[:, ix["rfemur"]]
    assert ((left * hips).sum(-1) > 0).mean() > 0.95
    body = [ix[n] for n in ("root", "lfemur", "ltibia", "lfoot", "thorax", "head", "lradius")]
    step = np.linalg.norm(np.diff(pos[:, body], axis=0), axis=-1)
    assert step.max() < 0.1  # metres per 1/120 s

"""Both body backends (anny, SMPL) behind the BodyModel interface.

SMPL is exercised with the synthetic SMPL-format file of :mod:`helpers.synthetic_smpl`
(not SMPL's geometry, but SMPL's file format, loaded through smplx's real code).
"""

from __future__ import annotations

import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import roma
import torch

from helpers.synthetic_smpl import synthetic_smpl_data, write_synthetic_smpl
from key2mesh.body import body_model_from_config, load_body_model
from key2mesh.body.smpl_backend import SMPLBody, find_smpl_files, load_smpl_data
from key2mesh.errors import Key2MeshError

L_HIP, L_KNEE, L_ANKLE, R_KNEE, R_ANKLE = 1, 4, 7, 5, 8
# SMPL (y up) → anny (z up) is Rx(+90°); a row vector in anny's frame maps back with v @ C.
C = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def rx(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]]
    )


def identity(b: int = 1) -> torch.Tensor:
    return torch.eye(3).repeat(b, 24, 1, 1)


@pytest.fixture(scope="module")
def smpl_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("smpl_models")
    write_synthetic_smpl(d / "SMPL_NEUTRAL.pkl")
    write_synthetic_smpl(d / "SMPL_MALE.pkl", gender="male", seed=1)
    return d


@pytest.fixture(scope="module")
def smpl_body(smpl_dir):
    return SMPLBody(model_dir=smpl_dir)


@pytest.fixture(params=["anny", "smpl"])
def body(request):
    return request.getfixturevalue("anny_body" if request.param == "anny" else "smpl_body")


# ---------------------------------------------------------------------------------------- both
def test_knee_rotation_bends_shin_backwards(body):
    """+90° about x at the left knee: the ankle swings to -z (behind), the thigh stays put."""
    rest = body(identity())
    rot = identity()
    rot[0, L_KNEE] = rx(90)
    posed = body(rot)
    j0, j1 = rest.joints[0], posed.joints[0]
    knee = j0[L_KNEE]
    shin = j0[L_ANKLE] - knee
    assert shin[1] < -0.3  # the shin hangs down at rest
    # The ankle rotates about the knee: knee + Rx(90°) (ankle - knee), i.e. straight behind it.
    torch.testing.assert_close(j1[L_ANKLE], knee + rx(90) @ shin, atol=1e-4, rtol=0)
    assert j1[L_ANKLE, 2] < knee[2] - 0.3
    assert abs(j1[L_ANKLE, 1] - knee[1]) < 0.1
    # Thigh joints and the other leg do not move.
    for j in (0, L_HIP, L_KNEE, R_KNEE, R_ANKLE):
        torch.testing.assert_close(j1[j], j0[j], atol=1e-5, rtol=0)
    # Upper-thigh vertices (20-50 % along the hip→knee segment, within 12 cm of it) stay put.
    hip = j0[L_HIP]
    axis = knee - hip
    v = rest.vertices[0]
    t = ((v - hip) @ axis) / axis.dot(axis)
    dist = (v - hip - t[:, None] * axis).norm(dim=1)
    thigh = (t > 0.2) & (t < 0.5) & (dist < 0.12) & (v[:, 0] > 0.02)
    assert thigh.sum() >= 10
    moved = (posed.vertices[0, thigh] - v[thigh]).norm(dim=1)
    assert moved.max() < 1.5e-3, f"thigh vertices moved by up to {moved.max():.4f} m"
    # ... while the lower shin went with the ankle.
    lower = (rest.vertices[0] - j0[L_ANKLE]).norm(dim=1) < 0.05
    assert (posed.vertices[0, lower] - v[lower]).norm(dim=1).min() > 0.2


def test_outputs_shapes_consistency_and_gradients(body):
    torch.manual_seed(0)
    b = 3
    rotmats = roma.rotvec_to_rotmat(0.3 * torch.randn(b, 24, 3)).requires_grad_(True)
    shape = (body.default_shape(b) + 0.05 * torch.rand(b, body.shape_dim)).requires_grad_(True)
    out = body(rotmats, shape)
    nv = body.num_vertices
    assert (
        out.vertices.shape == (b, nv, 3)
        and out.joints.shape == (b, 24, 3)
        and out.keypoints.shape == (b, 23, 3)
    )
    assert out.vertices.dtype == out.joints.dtype == out.keypoints.dtype == torch.float32
    assert body.faces.dtype == torch.long and int(body.faces.max()) < nv
    torch.testing.assert_close(
        out.keypoints, body.regress(out.vertices, "coco23"), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(out.joints[:, 0], torch.zeros(b, 3), atol=1e-6, rtol=0)
    # Samples are independent: sample 1 alone gives the same result.
    single = body(rotmats[1:2].detach(), shape[1:2].detach())
    torch.testing.assert_close(single.vertices[0], out.vertices[1].detach(), atol=1e-5, rtol=0)
    # transl moves everything rigidly.
    t = torch.tensor([[0.1, -0.2, 3.0]]).repeat(b, 1)
    moved = body(rotmats.detach(), shape.detach(), transl=t)
    torch.testing.assert_close(
        moved.vertices, out.vertices.detach() + t[:, None], atol=1e-5, rtol=0
    )
    (out.vertices.square().sum() + out.keypoints.sum()).backward()
    for g in (rotmats.grad, shape.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_bad_pose_shape_raises(body):
    with pytest.raises(Key2MeshError, match=r"\(B, 24, 3, 3\)"):
        body(torch.eye(3).repeat(2, 23, 1, 1))
    with pytest.raises(Key2MeshError, match=r"\(B, 24, 3, 3\)"):
        body(torch.zeros(2, 72))
    with pytest.raises(Key2MeshError, match="shape parameters"):
        body(identity(2), torch.zeros(2, body.shape_dim + 1))


# ---------------------------------------------------------------------------------------- anny
def test_anny_identity_is_anny_reference_pose(anny_body):
    """Identity rotations give anny's own default (reference A-)pose, frame-changed to SMPL's."""
    m = anny_body.model
    shape = anny_body.default_shape(1)
    phen = {k: shape[:, i] for i, k in enumerate(anny_body.phenotype_labels)}
    with torch.no_grad():
        ref = m(phenotype_kwargs=phen)
        out = anny_body(identity())
    v_ref = ref["vertices"][0] @ C  # anny → SMPL frame
    torch.testing.assert_close(out.vertices[0], v_ref, atol=1e-5, rtol=0)
    # It is close to (but not exactly) anny's rest mesh: the reference bone orientations differ
    # from the rest ones by a few degrees (measured: <= 2.4 cm per vertex after the root shift).
    rest = (ref["rest_vertices"][0] - ref["rest_bone_heads"][0, :1]) @ C
    gap = (out.vertices[0] - rest).norm(dim=1)
    assert gap.max() < 0.04
    # SMPL frame: y up, facing +z, left = +x.
    v = out.vertices[0]
    assert 1.5 < float(v[:, 1].max() - v[:, 1].min()) < 1.9
    nose, l_sh, r_sh = out.keypoints[0, 0], out.keypoints[0, 5], out.keypoints[0, 6]
    assert nose[1] > l_sh[1] and l_sh[0] > 0.1 and r_sh[0] < -0.1 and nose[2] > 0.0


# ---------------------------------------------------------------------------------------- smpl
def test_synthetic_smpl_file_format(smpl_dir):
    with open(smpl_dir / "SMPL_NEUTRAL.pkl", "rb") as fh:
        data = pickle.load(fh, encoding="latin1")
    import scipy.sparse

    assert data["v_template"].shape == (6890, 3) and data["shapedirs"].shape == (6890, 3, 10)
    assert data["posedirs"].shape == (6890, 3, 207) and data["weights"].shape == (6890, 24)
    assert scipy.sparse.issparse(data["J_regressor"]) and data["J_regressor"].format == "csc"
    assert data["J_regressor"].shape == (24, 6890)
    assert data["f"].shape == (13776, 3) and data["f"].dtype == np.uint32 and data["f"].max() < 6890
    assert data["kintree_table"][0, 0] == 4294967295 and list(data["kintree_table"][1]) == list(
        range(24)
    )
    np.testing.assert_allclose(data["J_regressor"].sum(1), 1.0)
    np.testing.assert_allclose(data["weights"].sum(1), 1.0)
    assert data["bs_style"] == "lbs" and data["bs_type"] == "lrotmin"
    j = data["J_regressor"] @ data["v_template"]
    assert (
        -0.3 < j[0, 1] < -0.15 and j[15, 1] > 0.3 and j[7, 1] < -1.0 and j[16, 0] > 0.1
    )  # pelvis, head, l ankle, l shoulder


def test_smpl_matches_smplx_reading_the_file_itself(smpl_dir, smpl_body):
    """Same numbers as smplx loading the pickle on its own (axis-angle path), minus its pelvis."""
    import smplx

    ref_model = smplx.create(str(smpl_dir / "SMPL_NEUTRAL.pkl"), model_type="smpl")
    torch.manual_seed(1)
    rotvec = 0.4 * torch.randn(2, 24, 3)
    betas = torch.randn(2, 10)
    with torch.no_grad():
        ref = ref_model(
            betas=betas, global_orient=rotvec[:, 0], body_pose=rotvec[:, 1:].reshape(2, -1)
        )
        out = smpl_body(roma.rotvec_to_rotmat(rotvec), betas)
    pelvis = ref.joints[:, :1]
    assert pelvis[0, 0, 1] < -0.15  # smplx keeps SMPL's rest pelvis offset...
    torch.testing.assert_close(
        out.vertices, ref.vertices - pelvis, atol=1e-5, rtol=0
    )  # ...we remove it
    torch.testing.assert_close(out.joints, ref.joints[:, :24] - pelvis, atol=1e-5, rtol=0)
    # The face/feet keypoints are smplx's own extra joints (nose, reye, leye, rear, lear, toes, heels).
    extra = ref.joints[:, 24:35] - pelvis
    torch.testing.assert_close(
        out.keypoints[:, [0, 2, 1, 4, 3, 17, 18, 19, 20, 21, 22]], extra, atol=1e-5, rtol=0
    )
    # The body keypoints are SMPL's J_regressor rows (left shoulder = 16, left ankle = 7): at rest
    # they equal the kinematic joints (posed, pose blend shapes and skinning make them differ).
    with torch.no_grad():
        rest = smpl_body(identity(2), betas)
    torch.testing.assert_close(rest.keypoints[:, 5], rest.joints[:, 16], atol=1e-5, rtol=0)
    torch.testing.assert_close(rest.keypoints[:, 15], rest.joints[:, 7], atol=1e-5, rtol=0)


def test_smpl_missing_files_raise_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(Key2MeshError) as err:
        SMPLBody(model_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert "KEY2MESH_SMPL_DIR" in msg and "SMPL_NEUTRAL.pkl" in msg and "smpl.is.tue.mpg.de" in msg
    assert str(tmp_path / "nowhere") in msg and "\n" not in msg
    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    with pytest.raises(Key2MeshError, match="KEY2MESH_SMPL_DIR"):
        load_body_model("smpl")
    with pytest.raises(Key2MeshError, match="gender"):
        SMPLBody(model_dir=tmp_path, gender="robot")
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(b"not a pickle")
    with pytest.raises(Key2MeshError, match="SMPL_NEUTRAL.pkl"):
        SMPLBody(model_dir=tmp_path)
    write_synthetic_smpl(tmp_path / "SMPL_NEUTRAL.pkl")
    monkeypatch.setitem(sys.modules, "smplx", None)  # as if smplx were not installed
    with pytest.raises(Key2MeshError, match="pip install smplx"):
        SMPLBody(model_dir=tmp_path)


def test_smpl_genders_and_missing_gender(smpl_dir, smpl_body):
    male = SMPLBody(model_dir=smpl_dir, gender="male")
    with torch.no_grad():
        h_n = smpl_body(identity()).vertices[0, :, 1]
        h_m = male(identity()).vertices[0, :, 1]
    assert (
        float(h_m.max() - h_m.min()) > float(h_n.max() - h_n.min()) + 0.03
    )  # synthetic male is 4% taller
    with pytest.raises(Key2MeshError, match="found only male, neutral"):
        SMPLBody(model_dir=smpl_dir, gender="female")


def test_find_smpl_files_accepts_other_names(tmp_path):
    sub = tmp_path / "smpl"
    write_synthetic_smpl(sub / "basicmodel_m_lbs_10_207_0_v1.1.0.pkl", gender="male")
    data = synthetic_smpl_data("female")
    data["J_regressor"] = data["J_regressor"].toarray()
    np.savez(sub / "SMPL_FEMALE.npz", **data)
    write_synthetic_smpl(
        tmp_path / "SMPL_FEMALE.pkl", gender="female", seed=3
    )  # preferred over the npz
    write_synthetic_smpl(tmp_path / "notes_SMPL_NEUTRAL.pkl.bak")  # not a model file name
    files = find_smpl_files(tmp_path)
    assert files == {
        "male": sub / "basicmodel_m_lbs_10_207_0_v1.1.0.pkl",
        "female": tmp_path / "SMPL_FEMALE.pkl",
    }
    assert find_smpl_files(sub)["female"] == sub / "SMPL_FEMALE.npz"
    male = SMPLBody(
        model_dir=tmp_path, gender="male"
    )  # basicmodel name: smplx cannot open it by itself
    female_npz = SMPLBody(model_dir=sub, gender="female")
    with torch.no_grad():
        assert male(identity()).vertices.shape == (1, 6890, 3)
        v = female_npz(identity()).vertices[0]
    rest = torch.as_tensor(
        data["v_template"] - data["J_regressor"][0] @ data["v_template"], dtype=torch.float32
    )
    torch.testing.assert_close(v, rest, atol=1e-5, rtol=0)


def test_smpl_reads_chumpy_pickles_without_chumpy(tmp_path, monkeypatch):
    """SMPL's original pickles store chumpy objects; their value lives in the ``x`` attribute."""
    chumpy, ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:  # what chumpy pickles: an object whose state holds the array under "x"
        def __init__(self, x):
            self.x = x
            self._dirty = True

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch, chumpy.ch = Ch, ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch)
    data = synthetic_smpl_data()
    wrapped = dict(
        data,
        shapedirs=Ch(data["shapedirs"]),
        posedirs=Ch(data["posedirs"]),
        v_template=Ch(data["v_template"]),
    )
    with open(tmp_path / "SMPL_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(wrapped, fh, protocol=2)
    monkeypatch.delitem(sys.modules, "chumpy")
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    loaded = load_smpl_data(tmp_path / "SMPL_NEUTRAL.pkl")
    np.testing.assert_array_equal(loaded["shapedirs"], data["shapedirs"])
    assert SMPLBody(model_dir=tmp_path).num_vertices == 6890


def test_smpl_h36m_regressor_override(smpl_dir, smpl_body, tmp_path):
    derived = smpl_body.keypoint_regressor("h36m17")
    assert derived.shape == (17, 6890)
    rng = np.random.default_rng(0)
    w = rng.random((17, 6890))
    w /= w.sum(1, keepdims=True)
    np.save(tmp_path / "J_regressor_h36m.npy", w)
    body = SMPLBody(model_dir=smpl_dir, joint_regressor_h36m=tmp_path / "J_regressor_h36m.npy")
    torch.testing.assert_close(
        body.keypoint_regressor("h36m"), torch.as_tensor(w, dtype=torch.float32)
    )
    assert not torch.allclose(body.keypoint_regressor("h36m17"), derived)
    torch.testing.assert_close(
        body.keypoint_regressor("coco17"), smpl_body.keypoint_regressor("coco17")
    )
    with torch.no_grad():
        out = body(identity())
        kp = body.forward_keypoints(identity(), keypoint_set="h36m17")
    torch.testing.assert_close(
        kp[0], torch.as_tensor(w, dtype=torch.float32) @ out.vertices[0], atol=1e-5, rtol=0
    )
    assert body.config()["joint_regressor_h36m"] == str(
        (tmp_path / "J_regressor_h36m.npy").resolve()
    )
    np.save(tmp_path / "bad.npy", w[:, :100])
    with pytest.raises(Key2MeshError, match=r"bad.npy.*\(17, 6890\)"):
        SMPLBody(model_dir=smpl_dir, joint_regressor_h36m=tmp_path / "bad.npy")


def test_smpl_config_round_trip_without_licensed_arrays(smpl_dir, monkeypatch):
    body = load_body_model("smpl", model_dir=smpl_dir, gender="male")
    cfg = body.config()
    assert cfg == {"name": "smpl", "model_dir": str(smpl_dir.resolve()), "gender": "male"}
    assert len(body.state_dict()) == 0  # no SMPL array ends up in checkpoints
    again = body_model_from_config(cfg)
    rot = roma.rotvec_to_rotmat(0.3 * torch.randn(2, 24, 3))
    with torch.no_grad():
        torch.testing.assert_close(again(rot).vertices, body(rot).vertices)
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(smpl_dir))
    from_env = load_body_model("smpl")
    assert from_env.config() == {"name": "smpl", "model_dir": None, "gender": "neutral"}
    # dtype/device moves carry every buffer (CPU here; .to("cuda") is the same call).
    double = from_env.to(torch.float64)
    out = double(identity().double())
    assert out.vertices.dtype == torch.float64 and out.keypoints.dtype == torch.float64


# ------------------------------------------------------------------ anny fast forward vs anny
@pytest.mark.parametrize("topology", ["notoes_collapse10pc", "anny"])
def test_anny_fast_forward_matches_anny_float64(topology, anny_body):
    """The inference forward (shape-only rest model computed once per distinct shape, folded
    keypoints, frame change folded into the skinning transforms) in float32 gives anny's own
    float64 forward within 1e-5 m, on random poses and shapes; its rows do not depend on the
    batch; a cached rest model gives the same numbers as a fresh one."""
    from key2mesh.body.anny_backend import TRAIN_RIG, AnnyBody, _build_anny

    body = anny_body if topology == anny_body.topology else AnnyBody(topology=topology)
    ref = _build_anny(TRAIN_RIG, topology)  # anny's default: float64
    assert ref.template_vertices.dtype == torch.float64
    g = torch.Generator().manual_seed(7)
    b = 11
    rot = roma.rotvec_to_rotmat(0.5 * torch.randn(b, 24, 3, generator=g))
    shape = torch.rand(b, 6, generator=g)
    shape[3] = shape[2]  # a repeated shape is computed once
    body.clear_cache()
    with torch.no_grad():
        out = body(rot, shape)
        # anny's own forward (phenotypes → coefficients → rest model → skinning), float64
        r = ref(pose_parameters=body._anny_delta(rot).double(), phenotype_kwargs=shape.double())
        c = body.frame.double()
        verts = r["vertices"] @ c
        kp = body.coco23_regressor.double() @ verts
        heads = r["bone_poses"][..., :3, 3] @ c
    assert (out.vertices.double() - verts).abs().max() < 1e-5
    assert (out.keypoints.double() - kp).abs().max() < 1e-5
    assert (body.forward_keypoints(rot, shape).double() - kp).abs().max() < 1e-5
    assert (out.joints[:, body.smpl_idx].double() - heads[:, body.bone_idx]).abs().max() < 1e-5
    with torch.no_grad():
        one = body(rot[4:5], shape[4:5])  # another batch, cached rest model of shape 4 or not
        again = body(rot, shape)  # every rest model from the cache
    assert torch.equal(one.vertices[0], out.vertices[4])
    assert torch.equal(one.joints[0], out.joints[4])
    assert torch.equal(again.vertices, out.vertices)


def test_anny_large_batches_reuse_a_rest_buffer_safely(anny_body):
    """Batches above the rest-model cache (> 16 distinct shapes) write their rest vertices into a
    buffer reused by the next such batch: earlier outputs are untouched, rows equal the same
    body computed alone (batch invariance), and a copied body gets its own buffer."""
    import copy

    g = torch.Generator().manual_seed(3)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(2, 20, 24, 3, generator=g))
    shape = torch.rand(2, 20, 6, generator=g)
    anny_body.clear_cache()
    with torch.no_grad():
        first = anny_body(rot[0], shape[0])
        kept = first.vertices.clone()
        second = anny_body(rot[1], shape[1])
        alone = anny_body(rot[1][7:8], shape[1][7:8])
        twin = copy.deepcopy(anny_body)
        again = twin(rot[0], shape[0])
    assert torch.equal(first.vertices, kept)  # the second batch did not write into the first
    assert not torch.equal(first.vertices, second.vertices)
    assert torch.equal(alone.vertices[0], second.vertices[7])
    assert torch.equal(again.vertices, kept)


@pytest.mark.parametrize("impl", ["_nearest_rotation", "_nearest_rotation_torch"])
def test_nearest_rotation_equals_roma(impl):
    """The Newton polar iteration (the Warp kernel on the CPU, and the torch version used
    elsewhere) gives roma.special_procrustes's rotations: on scaled, sheared near-rotations
    (det > 0), on reflections (det < 0: roma's answer via the fallback) and on a singular
    matrix; each matrix's numbers do not depend on the batch; both versions agree."""
    from key2mesh.body import anny_backend

    nearest = getattr(anny_backend, impl)
    g = torch.Generator().manual_seed(0)
    r = roma.random_rotmat(600, generator=g)
    m = r * torch.empty(600, 1, 1).uniform_(0.05, 2.0, generator=g)
    m = m + 0.3 * torch.randn(600, 3, 3, generator=g) * m.norm(dim=(-1, -2), keepdim=True) / 3
    m[:20] = m[:20] @ torch.diag(torch.tensor([1.0, 1.0, -1.0]))  # reflections
    m[20] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]])
    det = torch.linalg.det(m)
    assert (det < 0).sum() >= 20 and (det > 0).sum() > 500
    got, ref = nearest(m), roma.special_procrustes(m)
    assert torch.allclose(got, ref, atol=2e-5)
    assert torch.allclose(torch.linalg.det(got), torch.ones(600), atol=1e-5)
    for n in (1, 5, 37):  # a matrix's numbers do not depend on how many share the call
        assert torch.equal(nearest(m[:n]), got[:n])
    assert torch.allclose(got, anny_backend._nearest_rotation_torch(m), atol=1e-6)
    shaped = m[:24].reshape(2, 12, 3, 3).double()  # any leading shape, float64
    got64 = nearest(shaped)
    assert got64.shape == shaped.shape and got64.dtype == torch.float64
    assert torch.allclose(got64, roma.special_procrustes(shaped), atol=1e-9)


@pytest.mark.parametrize("block", [1, 128, 5000])
def test_nearest_rotation_kernel_follows_polar_block(monkeypatch, block):
    """The polar kernel's runs of matrices per Warp thread and its launch grid follow
    ``POLAR_BLOCK`` together, also when it changes after the kernel was first used (a
    benchmark trying another run length): every matrix is computed, with the same bits
    (before: the kernel kept the first use's 64 while the grid followed the new value, leaving
    488 of 1,000 matrices unwritten at 128)."""
    from key2mesh.body import anny_backend

    g = torch.Generator().manual_seed(3)
    m = roma.random_rotmat(1000, generator=g) + 0.2 * torch.randn(1000, 3, 3, generator=g)
    default = anny_backend._nearest_rotation(m)  # the kernel is built with the default
    monkeypatch.setattr(anny_backend, "POLAR_BLOCK", block)
    assert torch.equal(anny_backend._nearest_rotation(m), default)


def test_anny_gradients_flow_without_the_cache(anny_body):
    """With autograd the shape-only rest model is never cached: gradients reach the shape."""
    shape = anny_body.default_shape(2).requires_grad_(True)
    rot = torch.eye(3).expand(2, 24, 3, 3)
    anny_body.forward_keypoints(rot, shape).sum().backward()
    assert shape.grad is not None and shape.grad.abs().sum() > 0
    shape.grad = None
    anny_body(rot, shape).vertices.sum().backward()
    assert shape.grad is not None and shape.grad.abs().sum() > 0


def test_anny_phenotype_weights_equal_annys(anny_body):
    """The batched phenotype → variation weights are anny's ``phenotype_blendshape_weights``
    bit for bit, gradients included (anchors, clamping at 0 and 1, out-of-range values)."""
    from anny.models.phenotype import phenotype_blendshape_weights

    m = anny_body.model
    g = torch.Generator().manual_seed(0)
    shape = torch.cat(
        [
            torch.rand(64, 6, generator=g),
            torch.tensor([[0.0] * 6, [1.0] * 6, [0.5] * 6, [-0.2, 1.3, 0.25, 0.75, 0.5, 1 / 3]]),
        ]
    ).requires_grad_(True)
    eye = torch.eye(anny_body._num_variations)
    ref = phenotype_blendshape_weights(
        shape, m.phenotype_labels, m.anchors, eye, m.extrapolate_phenotypes
    )
    new = anny_body.phenotype_weights(shape)
    assert torch.equal(new, ref)
    (g_ref,) = torch.autograd.grad(ref.pow(2).sum(), shape)
    (g_new,) = torch.autograd.grad(new.pow(2).sum(), shape)
    assert torch.equal(g_new, g_ref)


@pytest.mark.parametrize("impl", ["_bone_transforms", "_bone_transforms_torch"])
def test_anny_bone_transforms_equal_annys_forward_kinematics(anny_body, impl):
    """The 3x3 forward kinematics (the Warp kernel without autograd on the CPU, and the torch
    version) are anny's ``get_bone_transforms`` (4x4, broadcast sums) to float precision:
    skinning rotations, translations and posed bone heads; a sample's numbers do not depend on
    its batch."""
    g = torch.Generator().manual_seed(3)
    rot = roma.rotvec_to_rotmat(0.7 * torch.randn(9, 24, 3, generator=g))
    shape = torch.rand(9, 6, generator=g)
    fk = getattr(anny_body, impl)
    with torch.no_grad():
        poses, _, _, _ = anny_body._rest(shape, vertices=False)
        t_ref, w_ref = anny_body.model.get_bone_transforms(anny_body._anny_delta(rot), poses)
        t_rot, t_trans, heads = fk(rot, poses)
        for i in (0, 4, 8):
            one = fk(rot[i : i + 1], poses[i : i + 1])
            assert all(torch.equal(a[0], full[i]) for a, full in zip(one, (t_rot, t_trans, heads)))
    torch.testing.assert_close(t_rot, t_ref[..., :3, :3], atol=1e-6, rtol=0)
    torch.testing.assert_close(t_trans, t_ref[..., :3, 3], atol=1e-6, rtol=0)
    torch.testing.assert_close(heads, w_ref[..., :3, 3], atol=1e-6, rtol=0)
    if impl == "_bone_transforms":  # the kernel ran (not the torch fallback)
        assert ("fk", torch.float32) in anny_body.__dict__["_warp_launchers"]


def test_anny_posed_kernel_readout_matches_torch(anny_body):
    """Without autograd, the forward kinematics kernel also reads the posed body out (the
    skinning transforms folded into the SMPL frame, COCO-23 keypoints, SMPL-24 joints): the
    same as the torch readout of the same transforms to float precision, the folded transforms
    bit for bit (so the mesh is the one skinned from the kernel's [R | t]); a sample's numbers
    do not depend on its batch; with autograd, the torch path gives the same body."""
    g = torch.Generator().manual_seed(21)
    rot = roma.rotvec_to_rotmat(0.8 * torch.randn(6, 24, 3, generator=g))
    shape = torch.rand(6, 6, generator=g)
    with torch.no_grad():
        poses, pairs, rest, rows = anny_body._rest(shape, vertices=True)
        t_rot, t_trans, folded, kp, joints = anny_body._posed(rot, poses, pairs)
        assert folded is not None  # the kernel ran
        heads = anny_body._bone_transforms(rot, poses)[2]
        kp_ref, joints_ref = anny_body._readout_torch(t_rot, t_trans, heads, pairs)
        one = anny_body._posed(rot[2:3], poses[2:3], pairs[2:3])
        out = anny_body(rot, shape)
    ct = anny_body.frame.T
    ref = torch.eye(4).repeat(6, anny_body.num_bones, 1, 1)
    ref[..., :3, :3], ref[..., :3, 3] = ct @ t_rot, (ct @ t_trans[..., None])[..., 0]
    assert torch.equal(folded, ref)
    torch.testing.assert_close(kp, kp_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(joints, joints_ref, atol=1e-6, rtol=0)
    assert all(torch.equal(a[0], full[2]) for a, full in zip(one, (t_rot, t_trans, folded, kp)))
    assert torch.equal(one[4][0], joints[2])
    assert torch.equal(out.keypoints, kp) and torch.equal(out.joints, joints)
    # the hands lie 8 cm beyond the wrists along the forearms
    fore = joints[:, 20:22] - joints[:, 18:20]
    hand = joints[:, 22:24] - joints[:, 20:22]
    torch.testing.assert_close(hand.norm(dim=-1), torch.full((6, 2), 0.08), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        torch.linalg.cross(fore, hand), torch.zeros(6, 2, 3), atol=1e-6, rtol=0
    )
    grad_rot = rot.clone().requires_grad_(True)
    with_grad = anny_body(grad_rot, shape)
    torch.testing.assert_close(with_grad.joints.detach(), joints, atol=1e-6, rtol=0)
    torch.testing.assert_close(with_grad.keypoints.detach(), kp, atol=1e-6, rtol=0)
    torch.testing.assert_close(with_grad.vertices.detach(), out.vertices, atol=1e-6, rtol=0)


def test_anny_forward_keypoints_read_out_by_the_kernel(anny_body):
    """Without autograd, forward_keypoints takes the kinematics kernel's readout: forward's
    keypoints and the autograd path's to float precision (forward's skeleton comes from the
    vertex product, forward_keypoints' from the skeleton basis), in another set too; a
    conversion kept from an inference-mode call still serves autograd afterwards."""
    g = torch.Generator().manual_seed(22)
    rot = roma.rotvec_to_rotmat(0.6 * torch.randn(5, 24, 3, generator=g))
    shape = torch.rand(5, 6, generator=g)
    with torch.no_grad():
        kp = anny_body.forward_keypoints(rot, shape)
        out = anny_body(rot, shape)
    torch.testing.assert_close(kp, out.keypoints, atol=1e-6, rtol=0)
    with torch.inference_mode():
        anny_body.forward_keypoints(rot, shape, "coco17")
    grad_rot = rot.clone().requires_grad_(True)
    slow = anny_body.forward_keypoints(grad_rot, shape, "coco17")
    slow.sum().backward()
    assert grad_rot.grad is not None
    with torch.no_grad():
        fast = anny_body.forward_keypoints(rot, shape, "coco17")
    torch.testing.assert_close(slow.detach(), fast, atol=1e-6, rtol=0)


def _skinning_inputs(body, n: int, seed: int):
    """Rest vertices (n, V, 3) of random shapes and the bone transforms of random poses."""
    g = torch.Generator().manual_seed(seed)
    rot = roma.rotvec_to_rotmat(0.5 * torch.randn(n, 24, 3, generator=g))
    shape = torch.rand(n, 6, generator=g)
    poses, _, rest, rows = body._rest(shape, vertices=True)
    t_rot, t_trans, _ = body._bone_transforms(rot, poses)
    rest = torch.cat(rest) if isinstance(rest, list) else rest  # one array per cell
    return (rest if rows is None else rest[rows]), t_rot, t_trans


def test_anny_skinning_kernel_equals_annys_bit_for_bit(anny_body):
    """key2mesh's Warp kernel visits each vertex's non-zero weights only: a skipped term adds
    exactly 0, so its vertices are anny's Warp kernel's bit for bit (batch split in threads or
    not), and they need no padding (batch_invariant)."""
    with torch.no_grad():
        rest, t_rot, t_trans = _skinning_inputs(anny_body, 40, seed=5)
        ours = anny_body._skin(rest, t_rot, t_trans)
        ct = anny_body.frame.T
        folded = torch.eye(4).repeat(40, anny_body.num_bones, 1, 1)
        folded[..., :3, :3], folded[..., :3, 3] = ct @ t_rot, (ct @ t_trans[..., None])[..., 0]
        annys = anny_body.model.get_skinned_vertices(rest.contiguous(), folded)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(2)  # the batch in two slices, skinned in parallel
            split = anny_body._skin(rest, t_rot, t_trans)
        finally:
            torch.set_num_threads(threads)
    assert torch.equal(ours, annys)
    assert torch.equal(split, annys)


@pytest.mark.parametrize("block", [1, 97, 20000])
def test_anny_skinning_runs_of_vertices_keep_the_bits(anny_body, monkeypatch, block):
    """One Warp thread skins a run of ``SKIN_BLOCK`` vertices: any run length, one that does not
    divide the vertex count or exceeds it included, gives the same vertices."""
    from key2mesh.body import anny_backend

    with torch.no_grad():
        rest, t_rot, t_trans = _skinning_inputs(anny_body, 3, seed=6)
        default = anny_body._skin(rest, t_rot, t_trans)
        monkeypatch.setattr(anny_backend, "SKIN_BLOCK", block)
        other = anny_body._skin(rest, t_rot, t_trans)
    assert rest.shape[1] % 97 != 0
    assert torch.equal(other, default)


def test_anny_latency_mode_matches_invariant_mode():
    """``batch_invariant=False`` (a single new shape through MKL's 1-row GEMV) gives the same
    mesh as the batch-invariant mode to float precision."""
    from key2mesh.body.anny_backend import AnnyBody

    body = AnnyBody(topology="anny")
    g = torch.Generator().manual_seed(11)
    rot = roma.rotvec_to_rotmat(0.5 * torch.randn(1, 24, 3, generator=g))
    shape = torch.rand(1, 6, generator=g)
    with torch.no_grad():
        exact = body(rot, shape)
        body.batch_invariant = False
        fast = body(rot, shape)
    torch.testing.assert_close(fast.vertices, exact.vertices, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.joints, exact.joints, atol=1e-6, rtol=0)


def test_anny_no_grad_forward_leaves_inputs_without_grad(anny_body):
    """Inputs that require grad, used under no_grad (a preview in a fitting loop), take the Warp
    kernels; those must not attach a gradient to them (Warp's from_torch allocates a zero .grad
    for any tensor that requires grad, which an optimizer with weight decay then steps on)."""
    from key2mesh.body import anny_backend

    g = torch.Generator().manual_seed(12)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(3, 24, 3, generator=g)).requires_grad_(True)
    shape = torch.rand(3, 6, generator=g).requires_grad_(True)
    m = torch.randn(5, 3, 3, generator=g).requires_grad_(True)
    with torch.no_grad():
        anny_body(rot, shape)
        anny_body.forward_keypoints(rot, shape)
        anny_backend._nearest_rotation(m)
    assert ("fk", torch.float32) in anny_body.__dict__["_warp_launchers"]  # the kernel ran
    assert rot.grad is None and shape.grad is None and m.grad is None


def test_anny_rest_cache_lookup_survives_a_concurrent_eviction(anny_body, monkeypatch):
    """The body serves several threads (batch workers): another thread clearing or evicting the
    rest cache while this one looks a shape up must wait for the lookup (before: the entry
    vanished between the lookup and the LRU update, KeyError)."""
    import threading
    from collections import OrderedDict

    class OtherThreadClearsOnLookup(OrderedDict):
        def get(self, key, default=None):
            value = super().get(key, default)
            other = threading.Thread(target=anny_body.clear_cache)
            other.start()
            other.join(timeout=0.2)  # it runs now unless the lookup holds the cache's lock
            return value

    g = torch.Generator().manual_seed(13)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(2, 24, 3, generator=g))
    shape = torch.rand(2, 6, generator=g)
    anny_body.clear_cache()
    with torch.no_grad():
        first = anny_body(rot, shape)
        monkeypatch.setattr(
            anny_body, "_rest_cache", OtherThreadClearsOnLookup(anny_body._rest_cache)
        )
        again = anny_body(rot, shape)  # a cache hit
    assert torch.equal(again.vertices, first.vertices)


def test_anny_rest_cache_follows_extrapolate_phenotypes(anny_body, monkeypatch):
    """A rest model cached with clamped phenotypes is not served once anny extrapolates them
    (before: the cached, clamped body, 4 cm off, until clear_cache)."""
    rot = torch.eye(3).expand(1, 24, 3, 3)
    shape = torch.tensor([[0.5, 1.3, 0.5, -0.2, 0.5, 0.5]])  # age and weight out of range
    anny_body.clear_cache()
    with torch.no_grad():
        clamped = anny_body(rot, shape).vertices
        monkeypatch.setattr(anny_body.model, "extrapolate_phenotypes", True)
        extrapolated = anny_body(rot, shape).vertices
        anny_body.clear_cache()
        fresh = anny_body(rot, shape).vertices
    assert (fresh - clamped).abs().max() > 0.01
    assert torch.equal(extrapolated, fresh)


def test_anny_state_kept_under_inference_mode_serves_autograd_later():
    """A body first used under torch.inference_mode (a predictor) keeps rest models, a scratch
    buffer, cell bases and keypoint regressors; none of them may break a later no_grad batch or
    a pose fit with autograd (before: 'Inplace update to inference tensor outside InferenceMode'
    for the next large batch, 'Inference tensors cannot be saved for backward' for a cached shape
    and for regress)."""
    from key2mesh.body.anny_backend import AnnyBody

    body = AnnyBody()
    g = torch.Generator().manual_seed(14)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(20, 24, 3, generator=g))
    shape = torch.rand(20, 6, generator=g)
    with torch.inference_mode():
        body(rot, shape)  # 20 new shapes: the uncached path with its scratch buffer
        tracked = body(rot[:1], shape[:1])  # one shape: cached
        body.regress(tracked.vertices, "coco17")
    with torch.no_grad():
        body(rot, torch.rand(20, 6, generator=g))  # writes into the scratch buffer
    pose = rot[:1].clone().requires_grad_(True)
    out = body(pose, shape[:1])
    torch.testing.assert_close(out.vertices.detach(), tracked.vertices.clone(), atol=1e-6, rtol=0)
    body.regress(out.vertices, "coco17").sum().backward()
    assert pose.grad is not None and pose.grad.abs().sum() > 0


def test_empty_batch_gives_empty_outputs(body):
    """A batch of 0 poses (a frame without people) gives empty outputs of the right shapes, with
    or without shapes (before: anny raised IndexError in its cell bases, SMPL a reshape error
    in smplx)."""
    rot = torch.zeros(0, 24, 3, 3)
    nv = body.num_vertices
    for shape in (None, body.default_shape(0), body.default_shape(1)):
        with torch.no_grad():
            out = body(rot, shape)
            kp = body.forward_keypoints(rot, shape, "coco17")
        assert out.vertices.shape == (0, nv, 3) and out.vertices.dtype == body.dtype
        assert out.joints.shape == (0, 24, 3) and out.keypoints.shape == (0, 23, 3)
        assert kp.shape == (0, 17, 3)


def test_transl_of_another_shape_raises(body):
    """transl must be (B, 3): anny broadcast a (2, 3) one onto a batch of 1 (two bodies out) and
    raised a bare RuntimeError for (3,) or (B,); both backends now say what they expect."""
    rot = identity(1)
    for transl in (torch.zeros(3), torch.zeros(1), torch.zeros(2, 3), torch.zeros(1, 1, 3)):
        with pytest.raises(Key2MeshError, match=r"transl of shape \(1, 3\)"):
            body(rot, transl=transl)
    out = body(rot, transl=torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(out.joints[0, 0], torch.tensor([1.0, 2.0, 3.0]), atol=1e-6, rtol=0)


def test_forward_keypoints_of_a_set_without_a_source_raises(body):
    """forward_keypoints follows keypoint_regressor: SMPL-24 (kinematic joints) has no source in
    COCO-23, so it raises (before: anny's folded path returned 24 points at (0, 0, 0))."""
    with pytest.raises(Key2MeshError, match="kinematic"):
        body.forward_keypoints(identity(1), keypoint_set="smpl24")
    with pytest.raises(Key2MeshError, match="kinematic"):
        body.keypoint_regressor("smpl24")
    kp = body.forward_keypoints(identity(1), keypoint_set="h36m17")
    ref = body.regress(body(identity(1)).vertices, "h36m17")
    torch.testing.assert_close(kp, ref, atol=1e-5, rtol=0)


def test_anny_only_a_float32_body_claims_batch_invariance():
    """MKL's dgemm gives a row other last bits at odd positions of a GEMM, so a float64 body's
    rows depend on their batch (2e-16 m; /tmp/review_body/r3): it must not claim invariance
    (callers then pad, and expect no bitwise equality). float32 keeps it, and the flag asked for."""
    from key2mesh.body.anny_backend import AnnyBody

    body = AnnyBody()
    assert body.batch_invariant
    body.double()
    assert not body.batch_invariant
    body.float()
    assert body.batch_invariant
    body.batch_invariant = False
    assert not body.batch_invariant
    assert not AnnyBody(dtype=torch.float64).batch_invariant


def test_anny_used_body_pickles(anny_body):
    """A body that has run (Warp launchers built) pickles and deep-copies (for process workers),
    and the copy gives the same mesh (before: pickle raised "Can't pickle local object
    'AnnyBody._fk_launcher.<locals>.launch'")."""
    import copy

    g = torch.Generator().manual_seed(15)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(3, 24, 3, generator=g))
    shape = torch.rand(3, 6, generator=g)
    with torch.no_grad():
        ref = anny_body(rot, shape).vertices
        assert anny_body.__dict__["_warp_launchers"]
        for twin in (pickle.loads(pickle.dumps(anny_body)), copy.deepcopy(anny_body)):
            assert torch.equal(twin(rot, shape).vertices, ref)


def test_anny_pose_gradients_survive_a_second_large_batch(anny_body):
    """Autograd on the pose with fixed shapes, > 16 distinct in one cell: the rest vertices must
    not sit in the scratch buffer that the next large batch overwrites, since anny's skinning
    keeps them for its backward (before: a second forward before backward silently changed the
    first body's pose gradient by 16.7 of 716)."""
    g = torch.Generator().manual_seed(16)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(2, 20, 24, 3, generator=g))
    shape = 0.4 + 0.05 * torch.rand(2, 20, 6, generator=g)
    shape[..., 1] = 0.6 + 0.03 * torch.rand(2, 20, generator=g)  # all in one cell: no row copy
    assert len(anny_body._cells.locate(shape.reshape(-1, 6))[0].unique()) == 1
    first = rot[0].clone().requires_grad_(True)
    anny_body(first, shape[0]).vertices.square().sum().backward()
    alone = first.grad.clone()
    first.grad = None
    loss = anny_body(first, shape[0]).vertices.square().sum()
    second = anny_body(rot[1].requires_grad_(True), shape[1]).vertices.square().sum()
    (loss + second).backward()
    assert torch.equal(first.grad, alone)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_anny_half_precision_is_refused_clearly(anny_body, dtype):
    """anny's kernels and caches run in float32/float64 only: a half-precision body says so
    (before: KeyError torch.float16 from the skinning launcher, TypeError 'Got unsupported
    ScalarType BFloat16' from the rest cache)."""
    import copy

    from key2mesh.body.anny_backend import AnnyBody

    with pytest.raises(Key2MeshError, match="float32 or float64"):
        AnnyBody(dtype=dtype)
    half = copy.deepcopy(anny_body).to(dtype)
    with pytest.raises(Key2MeshError, match="float32 or float64"):
        half(identity(1).to(dtype))
    with pytest.raises(Key2MeshError, match="float32 or float64"):
        half.forward_keypoints(identity(1).to(dtype))


def test_the_low_res_regressor_cache_is_written_atomically(tmp_path, monkeypatch):
    """The transferred COCO-23 regressor of a reduced mesh is cached by a rename: a write that
    fails half-way (a full disk, a killed rank) leaves no file that a later body (or another
    torchrun rank building at the same time) would read as the regressor."""
    from key2mesh.body import anny_backend

    monkeypatch.setenv("KEY2MESH_CACHE_DIR", str(tmp_path))
    model = anny_backend._build_anny(anny_backend.TRAIN_RIG, anny_backend.TRAIN_TOPOLOGY)
    real_save = anny_backend.np.save

    def broken_save(file, arr, *args, **kwargs):
        Path(file).write_bytes(b"\x93NUMPY half")  # the start of a file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(anny_backend.np, "save", broken_save)
    with pytest.raises((OSError, Key2MeshError)):
        anny_backend._coco23_regressor(model, anny_backend.TRAIN_RIG, anny_backend.TRAIN_TOPOLOGY)
    assert list((tmp_path / "regressors").glob("*.npy")) == []  # nothing under the final name
    monkeypatch.setattr(anny_backend.np, "save", real_save)
    reg = anny_backend._coco23_regressor(model, anny_backend.TRAIN_RIG, anny_backend.TRAIN_TOPOLOGY)
    (cached,) = (tmp_path / "regressors").iterdir()
    assert torch.equal(torch.from_numpy(np.load(cached)), reg) and reg.shape[0] == 23


def test_a_body_pickled_before_the_invariance_property_loads(anny_body):
    """An AnnyBody pickled when ``batch_invariant`` was a plain attribute (no ``_invariant``)
    loads with that setting instead of failing on first use."""
    import pickle

    with torch.no_grad():
        anny_body(torch.eye(3).expand(1, 24, 3, 3), anny_body.default_shape(1))
    state = anny_body.__getstate__()
    old = {k: v for k, v in state.items() if k != "_invariant"}
    for setting in (False, True):
        body = type(anny_body).__new__(type(anny_body))
        body.__setstate__({**old, "batch_invariant": setting})
        assert body.batch_invariant is setting and "batch_invariant" not in body.__dict__
    again = pickle.loads(pickle.dumps(anny_body))
    assert again.batch_invariant is anny_body.batch_invariant


def test_load_body_model_refuses_options_it_does_not_take():
    """A misspelt option ('topolgy') was dropped silently and the default body built; now one
    line naming it and the options the backend takes (before any model is built)."""
    from key2mesh.body import load_body_model

    with pytest.raises(Key2MeshError, match=r"unknown option\(s\) 'topolgy' for the anny body"):
        load_body_model("anny", topolgy="anny")
    with pytest.raises(Key2MeshError, match="it takes model_dir, gender, joint_regressor_h36m"):
        load_body_model("smpl", rig="x", gender="male")
    with pytest.raises(Key2MeshError, match="unknown body model 'mano'"):
        load_body_model("mano")

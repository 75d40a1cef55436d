"""Keypoint sets and conversions between them, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.keypoints import (
    KEYPOINT_SETS,
    canonical_set_name,
    conversion_matrix,
    convert_keypoints,
    flip_permutation,
    keypoint_names,
    num_keypoints,
)

B25 = {n: i for i, n in enumerate(keypoint_names("openpose_body25"))}
C17 = {n: i for i, n in enumerate(keypoint_names("coco17"))}


def _coco17_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """A COCO-17 detection with distinct points: point i at (10 i, 100 + 3 i), confidence 0.9 - 0.05 i."""
    i = torch.arange(17, dtype=torch.float64)
    kp = torch.stack([10 * i, 100 + 3 * i], dim=-1)
    conf = 0.9 - 0.05 * i
    return kp, conf


def test_set_sizes_and_names_are_unique():
    assert {n: num_keypoints(n) for n in KEYPOINT_SETS} == {
        "openpose_body25": 25, "openpose_coco18": 18, "coco17": 17, "coco23": 23,
        "mediapipe33": 33, "h36m17": 17, "smpl24": 24,
    }  # fmt: skip
    for names in KEYPOINT_SETS.values():
        assert len(set(names)) == len(names)


def test_coco17_to_body25_neck_is_mid_shoulders_and_confidence_is_min():
    kp, conf = _coco17_sample()
    out, c = convert_keypoints(kp, conf, "coco17", "openpose_body25")
    assert out.shape == (25, 2) and c.shape == (25,)
    # shoulders: left = point 5 (50, 115) conf 0.65, right = point 6 (60, 118) conf 0.60
    torch.testing.assert_close(out[B25["neck"]], torch.tensor([55.0, 116.5], dtype=torch.float64))
    assert c[B25["neck"]].item() == pytest.approx(0.60)
    # hips: left = point 11 (110, 133) conf 0.35, right = point 12 (120, 136) conf 0.30
    torch.testing.assert_close(
        out[B25["mid_hip"]], torch.tensor([115.0, 134.5], dtype=torch.float64)
    )
    assert c[B25["mid_hip"]].item() == pytest.approx(0.30)
    # points taken by name keep their value and confidence
    torch.testing.assert_close(out[B25["left_wrist"]], kp[C17["left_wrist"]])
    assert c[B25["right_ear"]].item() == pytest.approx(conf[C17["right_ear"]].item())
    # feet cannot be derived from COCO-17: confidence 0 and coordinates 0
    feet = [
        B25[n]
        for n in (
            "left_big_toe",
            "left_small_toe",
            "left_heel",
            "right_big_toe",
            "right_small_toe",
            "right_heel",
        )
    ]
    assert torch.all(c[feet] == 0) and torch.all(out[feet] == 0)


def test_missing_source_makes_derived_point_missing():
    kp, conf = _coco17_sample()
    conf[C17["left_shoulder"]] = 0.0
    _, c = convert_keypoints(kp, conf, "coco17", "openpose_body25")
    assert c[B25["neck"]].item() == 0.0
    assert c[B25["right_shoulder"]].item() == pytest.approx(0.60)


def test_conversion_batches_and_numpy_inputs():
    kp, conf = _coco17_sample()
    batch = np.stack([kp.numpy(), kp.numpy() + 1.0])[None]  # (1, 2, 17, 2)
    out, c = convert_keypoints(batch, None, "coco17", "openpose_body25")
    assert out.shape == (1, 2, 25, 2) and c.shape == (1, 2, 25)
    # no confidence given: every source point counts as 1
    assert c[0, 0, B25["neck"]].item() == 1.0 and c[0, 0, B25["left_heel"]].item() == 0.0
    torch.testing.assert_close(
        out[0, 1, B25["neck"]], torch.tensor([56.0, 117.5], dtype=torch.float64)
    )


def test_body25_coco17_round_trip_keeps_shared_points():
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(4, 25, 2, generator=g) * 500
    conf = torch.rand(4, 25, generator=g)
    kp17, c17 = convert_keypoints(kp, conf, "openpose_body25", "coco17")
    back, cb = convert_keypoints(kp17, c17, "coco17", "openpose_body25")
    shared = [B25[n] for n in keypoint_names("coco17")]
    assert len(shared) == 17
    torch.testing.assert_close(back[:, shared], kp[:, shared])
    torch.testing.assert_close(cb[:, shared], conf[:, shared])
    # neck is re-derived from the shoulders, not the original neck
    expected = 0.5 * (kp[:, B25["left_shoulder"]] + kp[:, B25["right_shoulder"]])
    torch.testing.assert_close(back[:, B25["neck"]], expected)


def test_coco17_to_h36m17_head_top_and_pelvis():
    kp, conf = _coco17_sample()
    out, c = convert_keypoints(kp, conf, "coco17", "h36m17")
    h36m = {n: i for i, n in enumerate(keypoint_names("h36m17"))}
    # ears: left = point 3 (30, 109), right = point 4 (40, 112); neck = (55, 116.5)
    # head_top = 0.75 (left_ear + right_ear) - 0.5 neck = (52.5, 165.75) - (27.5, 58.25)
    torch.testing.assert_close(
        out[h36m["head_top"]], torch.tensor([25.0, 107.5], dtype=torch.float64)
    )
    torch.testing.assert_close(
        out[h36m["pelvis"]], torch.tensor([115.0, 134.5], dtype=torch.float64)
    )
    # spine = mean(mid_hip, neck); its confidence is the min over hips and shoulders
    torch.testing.assert_close(out[h36m["spine"]], torch.tensor([85.0, 125.5], dtype=torch.float64))
    assert c[h36m["spine"]].item() == pytest.approx(0.30)
    assert (c > 0).all()


def test_conversion_matrix_rows_and_mask():
    m, ok = conversion_matrix("coco17", "openpose_body25")
    assert m.shape == (25, 17) and ok.shape == (25,)
    assert ok.sum() == 19  # 17 shared + neck + mid_hip
    np.testing.assert_allclose(m[ok].sum(axis=1), 1.0)
    assert (
        m[B25["neck"], C17["left_shoulder"]] == 0.5 and m[B25["neck"], C17["right_shoulder"]] == 0.5
    )


def test_conversion_rejects_wrong_point_count():
    with pytest.raises(Key2MeshError, match="coco17"):
        convert_keypoints(torch.zeros(3, 18, 2), None, "coco17", "openpose_body25")


def test_conversion_rejects_confidence_of_another_shape():
    """A confidence array that does not fit the keypoints was a RuntimeError traceback from
    inside torch.where; a per-point (K,) confidence shared by every sample still works."""
    kp = torch.rand(2, 17, 2)
    with pytest.raises(Key2MeshError, match=r"confidence must be \(2, 17\).*got shape \(2, 16\)"):
        convert_keypoints(kp, torch.ones(2, 16), "coco17", "openpose_body25")
    with pytest.raises(Key2MeshError, match="confidence must be"):
        convert_keypoints(kp, np.ones((17, 2)), "coco17", "openpose_body25")
    conf = torch.linspace(0.1, 0.9, 17)
    _, shared = convert_keypoints(kp, conf, "coco17", "openpose_body25")
    _, each = convert_keypoints(kp, conf.expand(2, 17), "coco17", "openpose_body25")
    assert shared.shape == (2, 25) and torch.equal(shared, each)


def test_flip_permutation_coco17_swaps_left_right():
    assert flip_permutation("coco17") == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    perm = flip_permutation("openpose_body25")
    assert perm[B25["neck"]] == B25["neck"] and perm[B25["mid_hip"]] == B25["mid_hip"]
    assert perm[B25["left_shoulder"]] == B25["right_shoulder"]
    assert perm[B25["right_heel"]] == B25["left_heel"]


@pytest.mark.parametrize("name", sorted(KEYPOINT_SETS))
def test_flip_permutation_is_an_involution_that_maps_left_to_right(name):
    perm = np.asarray(flip_permutation(name))
    names = keypoint_names(name)
    assert sorted(perm.tolist()) == list(range(len(names)))
    np.testing.assert_array_equal(perm[perm], np.arange(len(names)))
    for i, n in enumerate(names):
        if "left_" in n:
            assert names[perm[i]] == n.replace("left_", "right_")
        elif not {"left", "right"} & set(n.split("_")):  # unsided (mouth_left is sided)
            assert perm[i] == i


def test_flip_permutation_swaps_side_suffixed_mediapipe_mouth_points():
    """MediaPipe names its mouth corners ``mouth_left``/``mouth_right`` (side last): a mirror swaps them."""
    names = keypoint_names("mediapipe33")
    perm = flip_permutation("mediapipe33")
    assert names[perm[names.index("mouth_left")]] == "mouth_right"
    assert names[perm[names.index("mouth_right")]] == "mouth_left"
    # every sided name, side first or last, maps to its partner in every set
    for name in KEYPOINT_SETS:
        names, perm = keypoint_names(name), flip_permutation(name)
        for i, n in enumerate(names):
            tokens = n.split("_")
            if "left" in tokens or "right" in tokens:
                swap = {"left": "right", "right": "left"}
                assert names[perm[i]] == "_".join(swap.get(t, t) for t in tokens), (name, n)


def test_unknown_set_name_raises():
    with pytest.raises(Key2MeshError, match="unknown keypoint set 'body26'"):
        canonical_set_name("body26")
    with pytest.raises(Key2MeshError):
        keypoint_names("")
    with pytest.raises(Key2MeshError):
        convert_keypoints(torch.zeros(17, 2), None, "coco17", "posenet")


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("body25", "openpose_body25"), ("BODY25", "openpose_body25"), ("vitpose", "coco17"), ("ViTPose", "coco17"),
     ("Coco18", "openpose_coco18"), ("coco_wholebody_body", "coco23"), ("blazepose", "mediapipe33"),
     ("openpose_body25", "openpose_body25")],
)  # fmt: skip
def test_aliases_resolve(alias, canonical):
    assert canonical_set_name(alias) == canonical
    assert num_keypoints(alias) == num_keypoints(canonical)


def test_body25_regressor_through_conversion(anny_body):
    w = anny_body.keypoint_regressor("openpose_body25")
    assert w.shape == (25, anny_body.num_vertices)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(25, dtype=w.dtype), atol=1e-5, rtol=0)
    expected_neck = 0.5 * (w[B25["left_shoulder"]] + w[B25["right_shoulder"]])
    torch.testing.assert_close(w[B25["neck"]], expected_neck)
    # a regressed set equals the COCO-23 keypoints converted to that set
    rest = anny_body.forward(torch.eye(3).expand(1, 24, 3, 3).to(anny_body.dtype), None).vertices
    direct = anny_body.regress(rest, "openpose_body25")
    via, conf = convert_keypoints(
        anny_body.regress(rest, "coco23"), None, "coco23", "openpose_body25"
    )
    torch.testing.assert_close(direct, via, atol=1e-5, rtol=1e-5)
    assert (conf == 1).all()
    # and SMPL-24 joints are kinematic, not regressed
    with pytest.raises(Key2MeshError, match="kinematic"):
        anny_body.keypoint_regressor("smpl24")

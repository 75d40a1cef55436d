"""The subject's own body (inference/subject.py): option parsing, the height / sex fit on anny
and on a synthetic SMPL-format model, one shape per track, and the motion in true size."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.inference.subject import (
    Subject,
    fit_subject,
    parse_subject,
    rest_height,
    subject_of,
    subjects_from_options,
    track_shapes,
)
from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

ADULT = np.array([0.45, 0.8, 0.32, 0.57, 0.37, 0.45])  # gender, age, muscle, weight, height, prop.


def test_subject_options_parse():
    assert parse_subject("0:1.80:male") == (0, Subject(1.80, "male"))
    assert parse_subject("3::Female") == (3, Subject(None, "female"))
    assert parse_subject("2:1.65") == (2, Subject(1.65, None))
    subjects = subjects_from_options(1.7, None, ["0::male", "1:1.62:female"])
    assert subjects == {
        None: Subject(1.7, None),
        0: Subject(None, "male"),
        1: Subject(1.62, "female"),
    }
    assert subject_of(subjects, 0) == Subject(1.7, "male")  # every track's height fills it in
    assert subject_of(subjects, 1) == Subject(1.62, "female")
    assert subject_of(subjects, 7) == Subject(1.7, None)
    assert subject_of({}, 0) is None
    assert subjects_from_options() == {}
    for bad, match in (
        ("x:1.8:male", "TRACK:HEIGHT:SEX"),
        ("0:180:male", "metres"),  # centimetres
        ("0:tall", "not a number"),
        ("0:1.8:other", "male, female"),
        ("0:1:2:3", "TRACK:HEIGHT:SEX"),
    ):
        with pytest.raises(Key2MeshError, match=match):
            subjects_from_options(specs=[bad])


def test_subject_yaml(tmp_path):
    f = tmp_path / "people.yaml"
    f.write_text("0: {height: 1.81, sex: male}\n1: {sex: female}\nall: {height: 1.7}\n")
    subjects = subjects_from_options(specs=[str(f)])
    assert subjects[0] == Subject(1.81, "male") and subjects[None] == Subject(1.7, None)
    assert subjects[1] == Subject(None, "female")
    f.write_text("bob: {height: 1.8}\n")
    with pytest.raises(Key2MeshError, match="not a track id"):
        subjects_from_options(specs=[str(f)])
    f.write_text("0: {height: 1.8, weight: 80}\n")
    with pytest.raises(Key2MeshError, match="expected"):
        subjects_from_options(specs=[str(f)])


def test_anny_height_and_sex(anny_body, caplog):
    """The stature reached within 2 mm; sex sets the gender phenotype (male 0, female 1; a male
    anny body of the same phenotypes is taller); the other phenotypes are kept."""
    got = fit_subject(anny_body, ADULT, Subject(1.62, "female"))
    assert got[0] == 1.0 and np.allclose(np.delete(got, [0, 4]), np.delete(ADULT, [0, 4]))
    assert abs(float(rest_height(anny_body, torch.from_numpy(got[None]))[0]) - 1.62) < 0.002
    male = fit_subject(anny_body, ADULT, Subject(None, "male"))
    female = fit_subject(anny_body, ADULT, Subject(None, "female"))
    assert male[0] == 0.0 and male[4] == pytest.approx(ADULT[4])
    h = rest_height(anny_body, torch.from_numpy(np.stack([male, female])))
    assert h[0] > h[1] + 0.05
    tall = fit_subject(anny_body, ADULT, Subject(1.92, "male"))
    assert abs(float(rest_height(anny_body, torch.from_numpy(tall[None]))[0]) - 1.92) < 0.002
    with caplog.at_level(logging.WARNING):
        tiny = fit_subject(anny_body, ADULT, Subject(0.9, None))  # below anny's adult range
    assert tiny[4] == 0.0 and "outside this body model's range" in caplog.text


def test_smpl_height_fit(tmp_path, caplog):
    """SMPL: the least-norm change of betas that gives the stature (rest vertices are linear in
    the betas); --sex is not applied (its sex is the model file's), with a warning."""
    pytest.importorskip("smplx")
    from helpers.synthetic_smpl import write_synthetic_smpl
    from key2mesh.body import load_body_model

    write_synthetic_smpl(tmp_path / "SMPL_NEUTRAL.pkl")
    body = load_body_model("smpl", model_dir=str(tmp_path), gender="neutral")
    betas = np.zeros(10)
    h0 = float(rest_height(body, torch.zeros(1, 10))[0])
    target = h0 * 1.05
    with caplog.at_level(logging.WARNING):
        got = fit_subject(body, betas, Subject(target, "male"))
    assert "not applied to SMPL" in caplog.text
    assert abs(float(rest_height(body, torch.from_numpy(got[None]))[0]) - target) < 0.002
    # the least-norm step: along the stature's gradient only, so other directions stay at zero
    probe = np.eye(10) * 0.05
    grad = (rest_height(body, torch.from_numpy(probe)).numpy() - h0) / 0.05
    cos = got @ grad / np.linalg.norm(got) / np.linalg.norm(grad)
    assert cos > 0.99, cos
    assert np.allclose(fit_subject(body, betas, Subject(None, "female")), betas)


def test_one_shape_per_track_with_its_subject(anny_body):
    rng = np.random.default_rng(0)
    shape = np.clip(ADULT + rng.normal(0, 0.05, (12, 6)), 0, 1).astype(np.float32)
    track = np.array([0] * 6 + [1] * 6)
    shape[0] = 1.0  # one glitched frame: the median ignores it
    out, info = track_shapes(anny_body, shape, track, {1: Subject(1.62, "female")})
    assert np.allclose(out[:6], np.median(shape[:6], 0)) and (out[:6] == out[0]).all()
    assert (out[6:] == out[6]).all() and out[6, 0] == 1.0
    assert info[0]["subject"] is None and info[1]["subject"] == {"height_m": 1.62, "sex": "female"}
    assert info[1]["height_m"] == pytest.approx(1.62, abs=0.002)
    assert 1.3 < info[0]["height_m"] < 2.1


@pytest.mark.skipif(
    not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists(), reason="no shipped checkpoint"
)
def test_motion_in_true_size():
    """The same detections with the subject 10 % taller: the body is, and the camera fit puts
    it ~10 % further away (the image fixes size / depth); the sidecar says what was given."""
    from key2mesh.inference.motion import build_motion, write_params
    from key2mesh.inference.predictor import Key2Mesh

    model = Key2Mesh.from_pretrained("anny-coco17", device="cpu", full_mesh=False)
    coco = np.array(
        [[0.5, 0.08], [0.53, 0.06], [0.47, 0.06], [0.56, 0.07], [0.44, 0.07], [0.62, 0.2],
         [0.38, 0.2], [0.66, 0.36], [0.34, 0.36], [0.68, 0.5], [0.32, 0.5], [0.57, 0.52],
         [0.43, 0.52], [0.58, 0.72], [0.42, 0.72], [0.58, 0.92], [0.42, 0.92]]
    )  # fmt: skip
    kp = np.stack([coco * [180.0, 400.0] + [500 + 3 * f, 150.0] for f in range(6)])
    args = (model, np.arange(6), np.arange(6) / 30.0, np.zeros(6, int), kp, np.full((6, 17), 0.9))
    runs = [
        build_motion(*args, (720, 1280), 30.0, subjects={0: Subject(h, "male")})
        for h in (1.6, 1.76)
    ]
    z = [np.median(m.transl[:, 2]) for m in runs]
    assert z[1] / z[0] == pytest.approx(1.1, abs=0.02)
    assert [m.bodies[0]["height_m"] for m in runs] == pytest.approx([1.6, 1.76], abs=0.003)
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        _, js = write_params(runs[1], Path(d) / "c_params.npz")
        track = json.loads(js.read_text())["tracks"]["0"]
    assert track["subject"] == {"height_m": 1.76, "sex": "male"}
    assert track["height_m"] == pytest.approx(1.76, abs=0.003)
    with pytest.raises(Key2MeshError, match="one shape per track"):
        build_motion(*args, (720, 1280), 30.0, track_shape=False, subjects={0: Subject(1.7)})

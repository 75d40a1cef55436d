"""The pieces both training loops share (train/state.py, train/validation.py): the state, the
source batch, the checkpoint writer and the one scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from key2mesh.data.synth import SynthConfig
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.checkpoint import InputNormalization, load_checkpoint
from key2mesh.model.network import Key2MeshNet, ModelConfig
from key2mesh.train.adapt import AdaptState
from key2mesh.train.pretrain import PretrainState
from key2mesh.train.state import TrainState, source_batch, write_checkpoint
from key2mesh.train.validation import body_errors, keypoint_metrics


class _State(TrainState):
    stage = "test-stage"


class _RecordingSynth:
    """Stands in for the pair synthesiser: keeps its inputs, draws 3 numbers from the generator."""

    def __call__(self, rot, shape, gen):
        self.rot, self.shape = rot, shape
        return torch.rand(3, generator=gen)


class _FixedSampler:
    def sample(self, n):
        return torch.full((n, 1), -1.0)


def _state(tmp_path, **kw) -> _State:
    synth = SynthConfig()
    fields = dict(
        cfg=None,
        out=tmp_path,
        device=torch.device("cpu"),
        body=None,
        kset="coco17",
        body_config={},
        camera=VirtualCamera(),
        normalization=InputNormalization(synth.conf_threshold, synth.missing_value, "bbox"),
        gen=torch.Generator().manual_seed(3),
        synth=_RecordingSynth(),
        jw=torch.ones(17),
        train_idx=np.array([5, 7, 9]),
        rot_all=torch.arange(10.0)[:, None],  # frame f's "rotation" is f
        shapes_all=10 * torch.arange(4.0)[:, None],  # shape s is 10·s
    )
    return _State(**{**fields, **kw})


def test_both_loops_states_are_train_states():
    assert issubclass(PretrainState, TrainState) and issubclass(AdaptState, TrainState)
    assert (PretrainState.stage, AdaptState.stage) == ("pretrain", "adapt")


def test_source_batch_draws_frames_then_shapes_then_synthesis(tmp_path):
    """The recipe both loops used inline: frame indices, shape indices, then the synthesiser's
    draws, all from the run's generator (written out with plain torch calls)."""
    run = _state(tmp_path)
    out = source_batch(run, 6)
    g = torch.Generator().manual_seed(3)
    frames = torch.tensor([5, 7, 9])[torch.randint(3, (6,), generator=g)]
    shapes = torch.randint(4, (6,), generator=g)
    draws = torch.rand(3, generator=g)
    assert torch.equal(run.synth.rot[:, 0], frames.float())
    assert torch.equal(run.synth.shape[:, 0], 10 * shapes.float())
    assert torch.equal(out, draws)
    assert torch.equal(run.gen.get_state(), g.get_state())  # nothing else was drawn


def test_source_batch_with_a_pose_sampler_draws_only_shapes(tmp_path):
    run = _state(tmp_path, sampler=_FixedSampler())
    out = source_batch(run, 4)
    g = torch.Generator().manual_seed(3)
    shapes = torch.randint(4, (4,), generator=g)
    assert torch.equal(run.synth.rot, torch.full((4, 1), -1.0))
    assert torch.equal(run.synth.shape[:, 0], 10 * shapes.float())
    assert torch.equal(out, torch.rand(3, generator=g))


@pytest.fixture
def net(anny_body):
    torch.manual_seed(0)
    cfg = ModelConfig(
        num_keypoints=17,
        shape_dim=anny_body.shape_dim,
        hidden=8,
        critic_hidden=8,
        shape_init=anny_body.default_shape(1)[0].tolist(),
    )
    return Key2MeshNet(cfg)


def test_write_checkpoint_writes_a_loadable_checkpoint(tmp_path, anny_body, net):
    run = _state(tmp_path / "run", body_config=anny_body.config())
    path = write_checkpoint(run, "last.pt", net, step=7, metrics={"pa_mpjpe": 50.0}, note="x")
    assert path == tmp_path / "run" / "last.pt"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left
    ck = load_checkpoint(path, expect_body=anny_body.config(), expect_keypoint_set="coco17")
    assert (ck.stage, ck.step, ck.keypoint_set) == ("test-stage", 7, "coco17")
    assert ck.extra["metrics"] == {"pa_mpjpe": 50.0} and ck.extra["note"] == "x"
    assert all(torch.equal(ck.model[k], v) for k, v in net.state_dict().items())
    with pytest.raises(TypeError, match="step"):
        write_checkpoint(run, "other.pt", net, metrics={})


@pytest.mark.parametrize("broken", ["net", "raw"])
def test_write_checkpoint_never_saves_broken_weights(tmp_path, anny_body, net, broken):
    """Non-finite weights (of the saved network, or of the raw ones behind an average) stop the
    write, naming the step; the checkpoint already on disk is kept byte for byte."""
    run = _state(tmp_path, body_config=anny_body.config())
    path = write_checkpoint(run, "last.pt", net, step=3)
    before = path.read_bytes()
    bad = Key2MeshNet(net.config)
    with torch.no_grad():
        next(bad.parameters())[0, 0] = math.nan
    saved, raw = (bad, None) if broken == "net" else (net, bad)
    with pytest.raises(Key2MeshError, match=r"non-finite at step 9 .*last\.pt is kept"):
        write_checkpoint(run, "last.pt", saved, raw=raw, step=9)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_write_checkpoint_is_atomic(tmp_path, anny_body, net, monkeypatch):
    """A write that dies half way leaves the previous file as it was and no temp file."""
    run = _state(tmp_path, body_config=anny_body.config())
    path = write_checkpoint(run, "best.pt", net, step=1)
    before = path.read_bytes()

    def dies_half_way(obj, fh):
        fh.write(b"PK half a zip")
        raise RuntimeError("killed")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(RuntimeError, match="killed"):
        write_checkpoint(run, "best.pt", net, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def _poses(n: int, seed: int) -> torch.Tensor:
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(0.3 * torch.randn(n, 24, 3, generator=g))


def test_body_errors_see_pose_not_global_rotation(anny_body):
    """The truth scores 0; a body turned about the vertical by 90° keeps PA-MPJPE ~0 (Procrustes
    takes the turn out) while its MPJPE is tens of mm."""
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    rot, shape = _poses(5, 0), anny_body.default_shape(5)
    same = body_errors(anny_body, "coco17", rot, shape, rot, shape, with_vertices=True)
    assert list(same) == ["mpjpe", "pa_mpjpe", "pve"] and all(
        v.shape == (5,) for v in same.values()
    )
    assert all(float(v.abs().max()) < 1e-3 for v in same.values())
    turned = rot.clone()
    turned[:, 0] = axis_angle_to_matrix(torch.tensor([0.0, math.pi / 2, 0.0])) @ rot[:, 0]
    err = body_errors(anny_body, "coco17", turned, shape, rot, shape)
    assert list(err) == ["mpjpe", "pa_mpjpe"]
    assert float(err["pa_mpjpe"].max()) < 0.5 and float(err["mpjpe"].min()) > 20


def test_keypoint_metrics_are_the_means_of_body_errors(anny_body):
    """Chunked means (7 samples, chunks of 3) of the same per-sample errors, in the same order."""
    pred, gt = _poses(7, 1), _poses(7, 2)
    shape = anny_body.default_shape(7)
    per_sample = body_errors(anny_body, "coco17", pred, shape, gt, shape, with_vertices=True)
    means = keypoint_metrics(anny_body, "coco17", pred, shape, gt, shape, chunk=3)
    assert list(means) == ["mpjpe", "pa_mpjpe", "pve"]
    for k, v in per_sample.items():
        assert means[k] == pytest.approx(float(v.mean()), rel=1e-5) and means[k] > 1
    fast = keypoint_metrics(anny_body, "coco17", pred, shape, gt, shape, with_vertices=False)
    assert list(fast) == ["mpjpe", "pa_mpjpe"]

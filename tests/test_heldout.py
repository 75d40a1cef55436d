"""key2mesh.data.heldout: the options of the MoCap held-out samples, and the frames they are
drawn from (an ensemble: only those every member held out)."""

from __future__ import annotations

import pytest
import torch

from key2mesh.data.heldout import mocap_samples
from key2mesh.errors import Key2MeshError


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"split": "test"}, "split must be 'val'"),  # was: the training frames, silently
        ({"split": "validation"}, "split must be 'val'"),
        ({"split": "train", "heldout": "subjects"}, "heldout must be"),  # was: ignored
        ({"split": "val", "heldout": "subject"}, "heldout must be"),
    ],
)
def test_mocap_samples_refuses_unknown_split_and_heldout(kw, match):
    """Checked before the cache is read (the path does not exist)."""
    with pytest.raises(Key2MeshError, match=match):
        mocap_samples("/nonexistent/cache.npz", None, **kw)


# --- ensembles: only frames every member held out -------------------------------------------

CLIP_FRAMES, FREE_CLIPS = 8, 10  # + 2 clips of the held-out subject "subj"


@pytest.fixture(scope="module")
def split_bank(tmp_path_factory, anny_body):
    """12 clips of 8 random poses: clips 0-9 without a subject, 10-11 of subject "subj"."""
    import numpy as np

    from key2mesh.data.cache import PoseBank
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    n = CLIP_FRAMES * (FREE_CLIPS + 2)
    g = torch.Generator().manual_seed(0)
    rot = axis_angle_to_matrix(0.3 * torch.randn(n, 24, 3, generator=g)).numpy()
    bank = PoseBank(
        rot.astype(np.float32),
        np.repeat(np.arange(FREE_CLIPS + 2), CLIP_FRAMES).astype(np.int32),
        [f"c{i}" for i in range(FREE_CLIPS + 2)],
        ["test"] * (FREE_CLIPS + 2),
        anny_body.default_shape(16).numpy(),
        anny_body.config(),
        clip_subjects=[""] * FREE_CLIPS + ["subj", "subj"],
    )
    return str(bank.save(tmp_path_factory.mktemp("split_bank") / "bank.npz"))


def _member(tmp_path, anny_body, seed: int, val_fraction: float = 0.3) -> str:
    """A tiny pre-trained checkpoint whose config holds out its own seeded clips + "subj"."""
    from key2mesh.geometry.camera import VirtualCamera
    from key2mesh.model.checkpoint import InputNormalization, atomic_save, make_checkpoint
    from key2mesh.model.network import Key2MeshNet, ModelConfig

    torch.manual_seed(seed)
    ck = make_checkpoint(
        Key2MeshNet(ModelConfig(num_keypoints=17, hidden=32)).eval(),
        keypoint_set="coco17",
        body_config=anny_body.config(),
        camera=VirtualCamera(),
        normalization=InputNormalization(),
        stage="pretrain",
        config={"seed": seed, "val_fraction": val_fraction, "val_subjects": ["subj"]},
    )
    path = tmp_path / f"seed{seed}.pt"
    atomic_save(ck, path)
    return str(path)


def _clips(bank_path: str, frames) -> set[int]:
    from key2mesh.data.cache import PoseBank

    return set(PoseBank.load(bank_path).clip_index[frames.numpy()].tolist())


def test_an_ensemble_is_scored_only_on_frames_every_member_held_out(
    split_bank, anny_body, tmp_path
):
    """Seeds 0 and 1 hold out free clips {2, 4, 6} and {4, 7, 8} (val_fraction 0.3 of 10) and both
    the subject's clips 10, 11: the ensemble draws from clips 4, 10, 11 only. Before, it drew
    from the first member's held-out clips, 2 and 6 of which the second member trained on."""
    from key2mesh.data.cache import PoseBank
    from key2mesh.inference.predictor import Key2Mesh

    a, b = _member(tmp_path, anny_body, 0), _member(tmp_path, anny_body, 1)
    ens = Key2Mesh.from_pretrained(f"{a}+{b}", device="cpu", full_mesh=False)
    assert [ck.split_options()["seed"] for ck in ens.member_checkpoints] == [0, 1]
    bank = PoseBank.load(split_bank)
    trained = [set(bank.split(**ck.split_options())[0].tolist()) for ck in ens.member_checkpoints]
    assert _clips(split_bank, torch.as_tensor(sorted(trained[1] - trained[0]))) == {2, 6}

    s = mocap_samples(split_bank, ens.member_checkpoints, n=256, seed=7)
    assert s.pool_size == 3 * CLIP_FRAMES and len(s) == 256
    assert not set(s.frames.tolist()) & (trained[0] | trained[1])
    assert _clips(split_bank, s.frames) == {4, 10, 11}  # 256 draws of 24 frames reach each clip
    # each held-out part: the intersection of that part
    clips = mocap_samples(split_bank, ens.member_checkpoints, n=64, heldout="clips")
    subjects = mocap_samples(split_bank, ens.member_checkpoints, n=64, heldout="subjects")
    assert _clips(split_bank, clips.frames) == {4} and clips.pool_size == CLIP_FRAMES
    assert _clips(split_bank, subjects.frames) == {10, 11}
    # split="train": frames every member trained on
    train = mocap_samples(split_bank, ens.member_checkpoints, n=64, split="train")
    assert set(train.frames.tolist()) <= trained[0] & trained[1]


def test_a_single_checkpoint_draws_the_same_samples_as_before(split_bank, anny_body, tmp_path):
    """One checkpoint (alone, in a list, or twice): the frames of the old recipe (its own held-out
    frames, drawn with the seed's generator first), and bit-identical samples."""
    from key2mesh.data.cache import PoseBank
    from key2mesh.model.checkpoint import load_checkpoint
    from key2mesh.train.random import choose

    ck = load_checkpoint(_member(tmp_path, anny_body, 0))
    val = PoseBank.load(split_bank).split(**ck.split_options())[1]
    old_frames = choose(val, 128, torch.Generator().manual_seed(5))
    runs = [mocap_samples(split_bank, c, "detector", n=128, seed=5) for c in (ck, [ck], (ck, ck))]
    assert torch.equal(runs[0].frames, old_frames)
    for other in runs[1:]:
        for k in ("frames", "keypoints2d", "confidence", "rotmats", "shape"):
            assert torch.equal(getattr(runs[0], k), getattr(other, k)), k


def test_members_sharing_no_held_out_frame_are_a_one_line_error(split_bank, anny_body, tmp_path):
    """Seeds 1 and 3 hold out clips {4, 7, 8} and {0, 6, 9}: no held-out clip in common."""
    from key2mesh.model.checkpoint import load_checkpoint

    cks = [load_checkpoint(_member(tmp_path, anny_body, s)) for s in (1, 3)]
    with pytest.raises(Key2MeshError, match="no frame .clips set. is held out by all 2") as exc:
        mocap_samples(split_bank, cks, n=8, heldout="clips")
    assert "\n" not in str(exc.value) and split_bank in str(exc.value)
    assert len(mocap_samples(split_bank, cks, n=8, heldout="subjects")) == 8  # subjects: shared


def test_evaluate_mocap_heldout_scores_an_ensemble_on_frames_both_held_out(
    split_bank, anny_body, tmp_path, monkeypatch, capsys
):
    """`key2mesh evaluate --dataset mocap-heldout --checkpoint a.pt+b.pt`; with --heldout clips
    and members sharing no held-out clip, exit 2 with the one-line error."""
    import key2mesh.data.heldout as heldout
    from key2mesh.cli import main

    drawn = []

    def recording(*args, **kw):
        drawn.append(mocap_samples(*args, **kw))
        return drawn[-1]

    monkeypatch.setattr(heldout, "mocap_samples", recording)
    a, b = _member(tmp_path, anny_body, 0), _member(tmp_path, anny_body, 1)
    argv = ["evaluate", "--dataset", "mocap-heldout", "--cache", split_bank, "--checkpoint",
            f"{a}+{b}", "--num", "256", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert _clips(split_bank, drawn[0].frames) == {4, 10, 11}
    c = _member(tmp_path, anny_body, 3)
    assert main([*argv[:5], "--checkpoint", f"{b}+{c}", "--heldout", "clips", "--num", "8"]) == 2
    err = capsys.readouterr().err
    assert "no frame (clips set) is held out by all 2 networks" in err

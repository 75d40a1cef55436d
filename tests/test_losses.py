import torch

from key2mesh.geometry.camera import VirtualCamera
from key2mesh.geometry.normalize import bbox_normalize
from key2mesh.keypoints.weights import joint_weights
from key2mesh.model.network import DomainCritic, Key2MeshNet, ModelConfig
from key2mesh.train.losses import (
    PretrainWeights,
    feature_regularizer,
    gradient_penalty,
    pretrain_loss,
    reprojection_loss,
    wasserstein_distance,
)


def test_joint_weights_official_values():
    w = joint_weights("coco17")
    names = dict(zip(["nose", "l_sh", "r_sh"], [w[0], w[5], w[6]]))
    assert names == {"nose": 1.0, "l_sh": 2.0, "r_sh": 2.0}
    assert w[9] == 8 and w[15] == 8 and w[7] == 4 and w[13] == 4 and w[11] == 2


def test_reprojection_loss_zero_for_exact_and_hand_value():
    cam = VirtualCamera()
    kp3d = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.0]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    target, _ = bbox_normalize(cam.project(kp3d), valid.float())
    assert reprojection_loss(kp3d, target, valid, cam).item() < 1e-6
    shifted = target.clone()
    shifted[0, 0, 0] += 0.1  # one coordinate off by 0.1 → mean over 3 joints × 2 coords = 0.1/6
    assert abs(reprojection_loss(kp3d, shifted, valid, cam).item() - 0.1 / 6) < 1e-6


def test_pretrain_loss_hand_built():
    w = PretrainWeights()
    r = torch.eye(3).repeat(2, 24, 1, 1)
    s = torch.zeros(2, 6)
    kp = torch.randn(2, 5, 3) * 0.3
    target, _ = bbox_normalize(VirtualCamera().project(kp), torch.ones(2, 5))
    loss, terms = pretrain_loss(r, s + 0.1, kp + 0.02, r, s, kp, target, VirtualCamera(), w)
    assert (
        abs(terms["shape"] - 0.1) < 1e-6 and abs(terms["kp3d"] - 0.02) < 1e-6 and terms["pose"] == 0
    )
    # a pure translation of the prediction keeps the box-normalised 2D projection almost the same
    assert terms["kp2d"] < 0.02
    assert abs(loss.item() - (100 * 0.1 + 50 * 0.02 + 50 * terms["kp2d"])) < 1e-4


def test_gradient_penalty_linear_critic_known_value():
    critic = torch.nn.Linear(4, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))  # ‖∇D‖ = 5 everywhere
    gp = gradient_penalty(lambda x: critic(x).squeeze(-1), torch.randn(6, 4), torch.randn(6, 4))
    assert abs(gp.item() - 16.0) < 1e-5  # (5 − 1)²


def test_wasserstein_and_regularizer_values():
    assert wasserstein_distance(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item() == 1.5
    assert feature_regularizer(torch.ones(2, 4), torch.zeros(2, 4)).item() == 1.0


def test_network_shapes_and_init_predicts_rest_pose():
    cfg = ModelConfig(num_keypoints=25, shape_dim=6, hidden=64)
    net = Key2MeshNet(cfg).eval()
    rot, shape = net(torch.rand(3, 25, 2))
    assert rot.shape == (3, 24, 3, 3) and shape.shape == (3, 6)
    assert (rot - torch.eye(3)).abs().max() < 0.2  # starts near identity rotations
    assert (shape - 0.5).abs().max() < 0.2
    critic = DomainCritic(cfg)
    assert critic(torch.randn(5, 64)).shape == (5,)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in critic.modules())


def test_weighted_keypoint_losses_use_lgd_reduction():
    """mean(w·|e|) over all entries (not divided by Σw), and the joint weights apply in 3D too."""
    cam = VirtualCamera()
    kp3d = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    target, _ = bbox_normalize(cam.project(kp3d), valid.float(), valid=valid)
    shifted = target.clone()
    shifted[0, 0, 0] += 0.1
    w = torch.tensor([8.0, 1.0, 1.0])
    # 3 joints × 2 coordinates = 6 entries; joint 0 weighs 8; joint 2 is invalid (weight 0)
    assert abs(reprojection_loss(kp3d, shifted, valid, cam, w).item() - 8 * 0.1 / 6) < 1e-6
    r = torch.eye(3).repeat(1, 24, 1, 1)
    s = torch.zeros(1, 6)
    pred = kp3d.clone()
    pred[0, 2, 1] += 0.03  # 3 cm on one coordinate of the last joint (weight 1)
    pred[0, 0, 2] += 0.01  # 1 cm on joint 0 (weight 8)
    full, _ = bbox_normalize(cam.project(kp3d), torch.ones(1, 3))
    _, terms = pretrain_loss(r, s, pred, r, s, kp3d, full, cam, PretrainWeights(), w)
    assert abs(terms["kp3d"] - (0.03 * 1 + 0.01 * 8) / 9) < 1e-6


def test_critic_matches_official_layers():
    cfg = ModelConfig(num_keypoints=17, hidden=32, critic_hidden=16)
    kinds = [type(m).__name__ for m in DomainCritic(cfg).net]
    assert kinds == ["Linear", "PReLU", "Dropout", "Linear", "PReLU", "Dropout", "Linear"]
    assert (
        DomainCritic(cfg).net[3].in_features == 16 and DomainCritic(cfg).net[-1].out_features == 1
    )


def test_critic_steps_are_detached_and_wd_has_the_right_sign():
    """The critic learns D(source) > D(target) (L_wd > 0) without any gradient reaching the
    extractor; one extractor step on +L_wd then moves the target features toward the source
    (the critic's new distance falls)."""
    from key2mesh.train.adapt import critic_steps
    from key2mesh.train.losses import wasserstein_distance

    torch.manual_seed(0)
    cfg = ModelConfig(num_keypoints=17, hidden=8, critic_hidden=16)
    critic = DomainCritic(cfg, dropout=0.0)
    extractor = torch.nn.Linear(8, 8)
    f_src = torch.randn(64, 8) + 2.0  # the source features sit elsewhere
    x_tgt = torch.randn(64, 8)
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    f_tgt = extractor(x_tgt)
    wd = critic_steps(critic, opt_d, f_src, f_tgt, 50, 10.0, gen)
    assert wd > 0.5  # the critic scores the source higher than the target
    assert all(p.grad is None for p in extractor.parameters())  # detached
    opt_f = torch.optim.SGD(extractor.parameters(), lr=0.1)
    lwd = wasserstein_distance(critic(f_src), critic(extractor(x_tgt)))
    opt_f.zero_grad()
    lwd.backward()  # the extractor minimises +L_wd
    assert all(p.grad is not None for p in extractor.parameters())
    opt_f.step()
    after = wasserstein_distance(critic(f_src), critic(extractor(x_tgt)))
    assert float(after.detach()) < float(lwd.detach())
    # the critic's own dropout, independent of the model's
    assert DomainCritic(cfg).net[2].p == 0.2 and DomainCritic(cfg, 0.5).net[2].p == 0.5


def test_pretrain_2d_term_leaves_out_joints_behind_the_camera():
    """A joint behind the camera (a short synth.distance_range) has no pixel: the 2D term is
    normalised over the joints in front only, so it still sees their errors and not the hidden
    joint's meaningless pixel (before: its pixel set the box and hid a 10 cm error, 0.000066)."""
    cam = VirtualCamera()
    kp = torch.tensor(
        [[[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.3, -0.4, 0.0], [-0.3, 0.2, 0.1], [0.1, 0.3, 0.6]]]
    )
    dist = torch.tensor([0.5])  # joint 4 (z = 0.6 m towards the camera) is behind it
    front = cam.in_front(kp, dist)
    assert front.tolist() == [[True, True, True, True, False]]
    target_all, _ = bbox_normalize(cam.project(kp, dist), torch.ones(1, 5))  # as synthesised
    r, s = torch.eye(3).repeat(1, 24, 1, 1), torch.zeros(1, 6)
    wrong = kp.clone()
    wrong[0, 2, 0] += 0.10  # 10 cm off on an in-front joint
    _, terms = pretrain_loss(r, s, wrong, r, s, kp, target_all, cam, PretrainWeights(), None, dist)
    target_front, _ = bbox_normalize(cam.project(kp, dist), front.float(), valid=front)
    expected = reprojection_loss(wrong, target_front, front, cam, None, dist).item()
    assert expected > 0.01 and abs(terms["kp2d"] - expected) < 1e-7
    hidden = kp.clone()
    hidden[0, 4, 0] += 0.001  # the hidden joint moves: no 2D evidence about it
    _, terms = pretrain_loss(r, s, hidden, r, s, kp, target_all, cam, PretrainWeights(), None, dist)
    assert terms["kp2d"] < 1e-7
    # every joint in front: the synthesised target is used as before (same value)
    far = torch.tensor([3.0])
    target_far, _ = bbox_normalize(cam.project(kp, far), torch.ones(1, 5))
    _, terms = pretrain_loss(r, s, wrong, r, s, kp, target_far, cam, PretrainWeights(), None, far)
    full = reprojection_loss(wrong, target_far, torch.ones(1, 5, dtype=torch.bool), cam, None, far)
    assert terms["kp2d"] == full.item()


def test_rotations_are_orthonormal_under_bf16_autocast():
    """amp / amp_cpu autocast the network's GEMMs to bf16; the 6D → matrix Gram-Schmidt still runs
    in float32, so the losses and the body get rotations (before: |RᵀR − I| up to 5.6e-3,
    det 0.994 to 1.006)."""
    torch.manual_seed(0)
    net = Key2MeshNet(ModelConfig(num_keypoints=17, hidden=64))
    x = torch.rand(256, 17, 2)
    for mode in ("train", "eval"):
        getattr(net, mode)()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            rot, _ = net.predict(x)
        assert rot.dtype == torch.float32
        err = (rot.transpose(-1, -2) @ rot - torch.eye(3)).abs().max()
        assert err < 1e-5, (mode, float(err))

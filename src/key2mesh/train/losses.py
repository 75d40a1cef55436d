"""Losses of pre-training (L_PT) and domain adaptation (L_DA), paper's weights by default."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from key2mesh.geometry.camera import VirtualCamera
from key2mesh.geometry.normalize import bbox_normalize


@dataclass
class PretrainWeights:
    """L_PT = w_pose·|θ̂−θ|₁ + w_shape·|β̂−β|₁ + w_2d·|x̂−x|₁ + w_3d·|X̂−X|₁ (paper: 100/100/50/50)."""

    pose: float = 100.0
    shape: float = 100.0
    kp2d: float = 50.0
    kp3d: float = 50.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdaptWeights:
    """L_DA = w_2d·L2D^t + w_wd·L_wd + w_reg·L_reg (paper: 10/0.1/20); zero a weight to ablate.

    ``mv`` weighs L_mv, the multi-view consistency of synchronised views (beyond the paper, see
    :func:`multiview_consistency`); it is used only when the target's views are grouped."""

    kp2d: float = 10.0
    wd: float = 0.1
    reg: float = 20.0
    mv: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def reprojection_loss(
    pred_kp3d: torch.Tensor,
    target2d: torch.Tensor,
    valid: torch.Tensor,
    camera: VirtualCamera,
    joint_weights: torch.Tensor | None = None,
    distance: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted L1 between box-normalised projections and box-normalised targets.

    pred_kp3d (B,K,3) metres, root at origin; target2d (B,K,2) already normalised with
    :func:`bbox_normalize` over ``valid`` (B,K). The prediction is projected by the fixed camera
    and normalised over the same valid joints, which makes the loss independent of the unknown
    scale/offset of real detections. Reduction as in the authors' base code (LGD):
    mean(w·|e|) over all B·K·2 entries, w = valid · joint weight (not divided by Σw).
    """
    proj = camera.project(
        pred_kp3d, distance
    )  # distance (B,): the sample's own camera, if augmented
    norm, _ = bbox_normalize(proj, valid.to(proj.dtype), valid=valid)
    w = valid.to(proj.dtype)
    if joint_weights is not None:
        w = w * joint_weights.to(proj)
    return ((norm - target2d).abs() * w[..., None]).mean()


def pretrain_loss(
    pred_rotmats: torch.Tensor,
    pred_shape: torch.Tensor,
    pred_kp3d: torch.Tensor,
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    kp3d: torch.Tensor,
    target2d: torch.Tensor,
    camera: VirtualCamera,
    weights: PretrainWeights,
    joint_weights: torch.Tensor | None = None,
    distance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_PT and its terms. Rotations compared as matrices (B,24,3,3); kp3d (B,K,3) metres.
    ``joint_weights`` (K,) weight both keypoint terms, reduced as mean(w·|e|) (LGD).

    target2d (B,K,2) is the clean projection of ``kp3d`` box-normalised over every joint. A joint
    behind the camera (a short ``synth.distance_range``) has no pixel: in its sample the 2D term
    is normalised over the joints in front of the camera only and leaves it out (its 3D term
    stays)."""
    front = camera.in_front(kp3d, distance)  # (B,K)
    in_front, _ = bbox_normalize(camera.project(kp3d, distance), front.to(kp3d.dtype), valid=front)
    target2d = torch.where(front.all(-1)[:, None, None], target2d, in_front)
    w3d = (
        torch.ones(1, device=kp3d.device)
        if joint_weights is None
        else joint_weights.to(kp3d)[:, None]
    )
    terms = {
        "pose": (pred_rotmats - rotmats).abs().mean(),
        "shape": (pred_shape - shape).abs().mean(),
        "kp2d": reprojection_loss(pred_kp3d, target2d, front, camera, joint_weights, distance),
        "kp3d": ((pred_kp3d - kp3d).abs() * w3d).mean(),
    }
    w = weights.to_dict()
    total = sum(w[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def wasserstein_distance(critic_source: torch.Tensor, critic_target: torch.Tensor) -> torch.Tensor:
    """L_wd = mean D(source features) − mean D(target features)."""
    return critic_source.mean() - critic_target.mean()


def gradient_penalty(
    critic: torch.nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP: mean (‖∇D(φ̂)‖₂ − 1)² at φ̂ uniformly on segments between paired source/target
    features (B, d); uses the first min(B_s, B_t) of each."""
    from key2mesh.train.random import rand

    n = min(source.shape[0], target.shape[0])
    alpha = rand((n, 1), generator, source.device, source.dtype)
    mixed = (alpha * source[:n] + (1 - alpha) * target[:n]).detach().requires_grad_(True)
    out = critic(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def feature_regularizer(features: torch.Tensor, features_pt: torch.Tensor) -> torch.Tensor:
    """L_reg: mean squared distance between adapted and pre-trained features of the same input."""
    return ((features - features_pt) ** 2).mean()


def body_frame(keypoints: torch.Tensor, root_rotation: torch.Tensor) -> torch.Tensor:
    """Predicted keypoints (B,K,3) metres, root at the origin, in the frame of the predicted
    global orientation (B,3,3) (rotmats[:, 0]) → the same keypoints in the body's own frame
    (global orientation undone), centred on their mean. The same pose seen by two cameras gives
    the same result."""
    local = torch.einsum("bji,bkj->bki", root_rotation.to(keypoints), keypoints)  # Rᵀ·X
    return local - local.mean(1, keepdim=True)


def multiview_consistency(
    local_keypoints: torch.Tensor, groups: torch.Tensor, scale_free: bool = True
) -> torch.Tensor:
    """L_mv: mean distance (metres) of each body-frame keypoint to its group's mean.

    local_keypoints (B,K,3) from :func:`body_frame`; groups (B,) int64: samples of one group are
    synchronised views of one person at one instant (-1: no group). Samples in groups of at least
    two count; zero when there are none. One person's pose does not depend on the camera, so the
    views must agree; with L2D^t on every view this asks for the pose that explains all views.

    ``scale_free`` (default): each view is first divided by its own size (RMS distance of its
    keypoints from their centre) and brought back to metres by its group's mean size, held
    constant. L2D^t is blind to scale, so a loss in metres could fall by shrinking every view
    (measured: body size ×0.82, MPJPE +38 % with L2D^t + L_mv); scale-free, it compares poses only
    and has no gradient along a view's size."""
    groups = groups.to(local_keypoints.device)
    _, inverse = torch.unique(groups, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    counts = torch.bincount(inverse, minlength=n_groups)

    def group_mean(values: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros(
            (n_groups, *values.shape[1:]), dtype=values.dtype, device=values.device
        ).index_add_(0, inverse, values)
        return sums / counts.clamp(min=1).to(values).reshape(-1, *[1] * (values.dim() - 1))

    x = local_keypoints
    if scale_free:
        size = (x - x.mean(1, keepdim=True)).pow(2).sum(-1).mean(-1).add(1e-12).sqrt()  # (B,)
        x = x / size[:, None, None] * group_mean(size.detach())[inverse][:, None, None]
    diff = x - group_mean(x)[inverse]
    dist = (diff.pow(2).sum(-1) + 1e-12).sqrt().mean(-1)  # (B,); eps: finite gradient at 0
    use = ((groups >= 0) & (counts[inverse] >= 2)).to(dist)
    return (dist * use).sum() / use.sum().clamp(min=1)

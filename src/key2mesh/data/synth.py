"""On-the-fly synthesis of (2D keypoints, 3D body) training pairs, batched on the training device.

For a batch of MoCap poses and sampled shapes: random global rotation (yaw ±180°, roll/pitch
±20°, composed Rz(roll)·Ry(yaw)·Rx(pitch)), the body's 3D keypoints, projection through the fixed virtual camera, occlusion
(p = 0.2), Gaussian jitter (σ = 1 px), an optional detector-like noise profile, and
bounding-box normalisation — the paper's recipe, with every range configurable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from key2mesh.body.base import BodyModel
from key2mesh.data.noise import PROFILES, apply_noise_profile
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.geometry.normalize import bbox_normalize
from key2mesh.geometry.rotations import DEG, rotation_x, rotation_y, rotation_z
from key2mesh.keypoints.sets import canonical_set_name, keypoint_names
from key2mesh.options import rule
from key2mesh.train.random import rand, randn


@dataclass
class SynthConfig:
    """Augmentation ranges (degrees, pixels, probabilities)."""

    yaw_deg: float = field(default=180.0, metadata=rule(ge=0, le=180))
    roll_deg: float = field(default=20.0, metadata=rule(ge=0, le=180))
    pitch_deg: float = field(default=20.0, metadata=rule(ge=0, le=180))
    occlusion_prob: float = field(default=0.2, metadata=rule(ge=0, le=1))
    jitter_px: float = field(default=1.0, metadata=rule(ge=0))
    # a key of key2mesh.data.noise.PROFILES
    noise_profile: str = field(default="none", metadata=rule(choices=tuple(PROFILES)))
    conf_threshold: float = field(default=0.1, metadata=rule(ge=0, lt=1))
    missing_value: float = -1.0
    # camera distance per sample, uniform in [min, max] metres (e.g. [2.5, 8]); None: the fixed
    # virtual camera's distance (the paper). Real cameras are often closer (pose2sim: 3.3 m).
    distance_range: list[float] | None = field(
        default=None, metadata=rule(gt=0, length=2, ascending=True)
    )
    # keypoints of the model's set that are always given as missing (a detector that has no such
    # point, e.g. MediaPipe's feet have a heel and a toe tip but no small toe: coco23 inputs
    # converted from it never hold left_small_toe / right_small_toe)
    drop_keypoints: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SynthBatch:
    """One synthesised batch. Shapes: B samples, K keypoints of the model's set.

    inputs (B,K,2) normalised network input (missing = ``missing_value``); valid (B,K) bool;
    keypoints2d (B,K,2) corrupted pixels; confidence (B,K); target2d (B,K,2) clean projection,
    box-normalised over all joints; keypoints3d (B,K,3) metres, root at origin;
    rotmats (B,24,3,3) with the augmented global rotation; shape (B,S).
    """

    inputs: torch.Tensor
    valid: torch.Tensor
    keypoints2d: torch.Tensor
    confidence: torch.Tensor
    target2d: torch.Tensor
    keypoints3d: torch.Tensor
    rotmats: torch.Tensor
    shape: torch.Tensor
    distance: torch.Tensor | None = None  # (B,) camera distance per sample when augmented


def random_global_rotation(
    batch: int,
    config: SynthConfig,
    generator: torch.Generator | None = None,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """(B, 3, 3) = Rz(roll) · Ry(yaw) · Rx(pitch), angles uniform in ±range (y is up), composed in
    the official code's order (roll outermost)."""

    def uniform(limit_deg: float) -> torch.Tensor:
        u = rand(batch, generator, device, dtype)
        return (2 * u - 1) * limit_deg * DEG

    yaw, pitch, roll = uniform(config.yaw_deg), uniform(config.pitch_deg), uniform(config.roll_deg)
    return rotation_z(roll) @ rotation_y(yaw) @ rotation_x(pitch)


class PairSynthesizer:
    """Turns (poses, shapes) into network inputs and targets, fully batched."""

    def __init__(
        self,
        body: BodyModel,
        keypoint_set: str = "openpose_body25",
        camera: VirtualCamera | None = None,
        config: SynthConfig | None = None,
    ):
        self.body = body
        self.keypoint_set = canonical_set_name(keypoint_set)
        self.camera = camera or VirtualCamera()
        self.config = config or SynthConfig()
        if self.config.noise_profile not in PROFILES:
            raise Key2MeshError(
                f"unknown noise profile {self.config.noise_profile!r}; known: {', '.join(PROFILES)}"
            )
        names = keypoint_names(self.keypoint_set)
        unknown = [n for n in self.config.drop_keypoints if n not in names]
        if unknown:
            raise Key2MeshError(
                f"drop_keypoints: {unknown} are not keypoints of {self.keypoint_set} ({', '.join(names)})"
            )
        self._dropped = torch.tensor(
            [names.index(n) for n in self.config.drop_keypoints], dtype=torch.long
        )

    @torch.no_grad()
    def __call__(
        self, rotmats: torch.Tensor, shape: torch.Tensor, generator: torch.Generator | None = None
    ) -> SynthBatch:
        cfg = self.config
        dev, dt = self.body.device, self.body.dtype
        rotmats = rotmats.to(dev, dt).clone()
        shape = shape.to(dev, dt)
        b = rotmats.shape[0]
        rotmats[:, 0] = random_global_rotation(b, cfg, generator, dev, dt) @ rotmats[:, 0]
        kp3d = self.body.forward_keypoints(rotmats, shape, self.keypoint_set)
        distance = None
        if cfg.distance_range is not None:
            lo, hi = cfg.distance_range
            distance = lo + (hi - lo) * rand(b, generator, dev, dt)
        clean = self.camera.project(kp3d, distance)
        # joints behind the camera (a camera closer than the body's reach) have no pixel
        front = self.camera.in_front(kp3d, distance)
        conf = front.to(dt)
        noisy = clean + cfg.jitter_px * randn(clean.shape, generator, dev, dt)
        profile = PROFILES[cfg.noise_profile]
        if profile is not None:
            noisy, conf = apply_noise_profile(noisy, conf, self.keypoint_set, profile, generator)
        # (a joint behind the camera already has confidence 0, in its own slot or, after a
        # left/right swap of the noise profile, in the slot now holding its pixel)
        occluded = rand(conf.shape, generator, dev, dt) < cfg.occlusion_prob
        conf = torch.where(occluded, torch.zeros_like(conf), conf)
        if len(self._dropped):
            conf[:, self._dropped.to(dev)] = 0.0
        # confidence 0 (occluded, dropped, behind the camera) is missing whatever the threshold:
        # conf_threshold=0 must not turn every occluded joint back into an input
        valid = (conf >= cfg.conf_threshold) & (conf > 0)
        inputs, valid = bbox_normalize(noisy, conf, missing_value=cfg.missing_value, valid=valid)
        target2d, _ = bbox_normalize(
            clean, torch.ones_like(conf), cfg.conf_threshold, cfg.missing_value
        )
        return SynthBatch(inputs, valid, noisy, conf, target2d, kp3d, rotmats, shape, distance)

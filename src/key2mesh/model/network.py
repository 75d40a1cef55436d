"""The Key2Mesh MLP (paper §Model, sizes as in the official code by default).

Feature extractor F: R^{K·2} → R^d = Linear(K·2 → d) + BN + PReLU + Dropout, then residual
blocks of two [Linear(d) + BN + PReLU + Dropout]. Head H: residual blocks + Linear(d → 6·24 + S)
giving 6D rotations (Zhou et al.) and shape. Critic D: 2 × [Linear + PReLU + Dropout(0.2)], then
Linear(→1), no normalisation layers (WDGRL's gradient penalty forbids batch statistics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from key2mesh.geometry.rotations import rot6d_to_matrix
from key2mesh.options import rule


@dataclass
class ModelConfig:
    """Everything that fixes the network's shapes. ``shape_init``: initial shape output
    (e.g. 0.5 for anny phenotypes, 0 for SMPL betas)."""

    num_keypoints: int = field(default=25, metadata=rule(ge=1))
    num_joints: int = field(default=24, metadata=rule(ge=1))
    shape_dim: int = field(default=6, metadata=rule(ge=1))
    hidden: int = field(default=1024, metadata=rule(ge=1))
    extractor_blocks: int = field(default=2, metadata=rule(ge=0))
    head_blocks: int = field(default=1, metadata=rule(ge=0))
    critic_hidden: int = field(default=1024, metadata=rule(ge=1))
    critic_layers: int = field(default=2, metadata=rule(ge=1))
    dropout: float = field(default=0.2, metadata=rule(ge=0, lt=1))
    shape_init: list[float] = field(default_factory=lambda: [0.5] * 6)

    def to_dict(self) -> dict:
        return asdict(self)


def _rotations(rot6d: torch.Tensor) -> torch.Tensor:
    """(B, J, 6) → (B, J, 3, 3) by :func:`rot6d_to_matrix`, in at least float32: under bf16/fp16
    autocast (``amp``) the output layer gives half precision, in which Gram-Schmidt is off by
    ~5e-3 (det 0.994–1.006); autocast is meant for the GEMMs only."""
    if rot6d.dtype in (torch.float16, torch.bfloat16):
        rot6d = rot6d.float()
    return rot6d_to_matrix(rot6d)


def _layer(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.PReLU(), nn.Dropout(dropout)
    )


def _layer_eval(layer: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A :func:`_layer` in eval mode through the functional ops its modules call (the same
    numbers, without the modules' call overhead; dropout is the identity)."""
    lin, bn, act, _ = layer
    x = F.linear(x, lin.weight, lin.bias)
    x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.prelu(x, act.weight)


def _blocks_eval(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Residual blocks in eval mode (see :func:`_layer_eval`)."""
    for block in blocks:
        a, b = block.body
        x = x + _layer_eval(b, _layer_eval(a, x))
    return x


class ResidualBlock(nn.Module):
    """x + [Linear-BN-PReLU-Dropout] x 2."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(_layer(dim, dim, dropout), _layer(dim, dim, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FeatureExtractor(nn.Module):
    """(B, K, 2) normalised keypoints → (B, d) features."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.inp = _layer(cfg.num_keypoints * 2, cfg.hidden, cfg.dropout)
        self.blocks = nn.Sequential(
            *[ResidualBlock(cfg.hidden, cfg.dropout) for _ in range(cfg.extractor_blocks)]
        )

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.inp(keypoints.flatten(1)))


class ParamHead(nn.Module):
    """(B, d) features → rotations (B, 24, 3, 3) and shape (B, S).

    The output layer starts at identity rotations and ``shape_init`` (small random weights), so
    an untrained network predicts the rest pose and the mean shape."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_joints, self.shape_dim = cfg.num_joints, cfg.shape_dim
        self.blocks = nn.Sequential(
            *[ResidualBlock(cfg.hidden, cfg.dropout) for _ in range(cfg.head_blocks)]
        )
        self.out = nn.Linear(cfg.hidden, 6 * cfg.num_joints + cfg.shape_dim)
        with torch.no_grad():
            self.out.weight.mul_(0.01)
            ident = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).repeat(cfg.num_joints)
            self.out.bias.copy_(
                torch.cat([ident, torch.tensor(cfg.shape_init, dtype=torch.float32)])
            )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.out(self.blocks(features))
        rot6d = y[:, : 6 * self.num_joints].reshape(-1, self.num_joints, 6)
        return _rotations(rot6d), y[:, 6 * self.num_joints :]


class Key2MeshNet(nn.Module):
    """F then H: normalised keypoints (B, K, 2) → (rotmats (B,24,3,3), shape (B,S))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.extractor = FeatureExtractor(cfg)
        self.head = ParamHead(cfg)

    def forward(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.extractor(keypoints))

    def predict(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for inference: in eval mode the layers run as functional ops (the
        same numbers without ~50 module calls, a third of a batch-1 call's time); in training
        mode it is :meth:`forward`."""
        if self.training:
            return self(keypoints)
        ext, head = self.extractor, self.head
        x = _blocks_eval(ext.blocks, _layer_eval(ext.inp, keypoints.flatten(1)))
        y = F.linear(_blocks_eval(head.blocks, x), head.out.weight, head.out.bias)
        rot6d = y[:, : 6 * head.num_joints].reshape(-1, head.num_joints, 6)
        return _rotations(rot6d), y[:, 6 * head.num_joints :]


class DomainCritic(nn.Module):
    """Wasserstein critic D: (B, d) → (B,), as in the official code: ``critic_layers`` ×
    [Linear(→ critic_hidden) + PReLU + Dropout(``dropout``)], then Linear(→ 1); no normalisation
    layers. ``dropout`` is the critic's own (official code 0.2), not the model's (0 in the shipped
    stage-2 models)."""

    def __init__(self, cfg: ModelConfig, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        d = cfg.hidden
        for _ in range(cfg.critic_layers):
            layers += [nn.Linear(d, cfg.critic_hidden), nn.PReLU(), nn.Dropout(dropout)]
            d = cfg.critic_hidden
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)

"""The Key2Mesh MLP (paper §Model, sizes as in the official code by default).

Feature extractor F: R^{K·2} → R^d = Linear(K·2 → d) + BN + PReLU + Dropout, then residual
blocks of two [Linear(d) + BN + PReLU + Dropout]. Head H: residual blocks + Linear(d → 6·24 + S)
giving 6D rotations (Zhou et al.) and shape. Critic D: 2 × [Linear + PReLU + Dropout(0.2)], then
Linear(→1), no normalisation layers (WDGRL's gradient penalty forbids batch statistics).
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from key2mesh import dense
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
    """A :func:`_layer` in eval mode through functional ops (without the modules' call overhead;
    dropout is the identity): the Linear by :func:`key2mesh.dense.linear` (oneDNN without
    autograd on the CPU: a row's numbers do not depend on its batch)."""
    lin, bn, act, _ = layer
    x = dense.linear(x, lin.weight, lin.bias)
    x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.prelu(x, act.weight)


def _blocks_eval(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Residual blocks in eval mode (see :func:`_layer_eval`)."""
    for block in blocks:
        a, b = block.body
        x = x + _layer_eval(b, _layer_eval(a, x))
    return x


def fold_layer(layer: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """A :func:`_layer`'s Linear with its eval-mode BatchNorm folded in, detached: weight
    ``W' = W·γ/σ`` (out, in) (per output row) and bias ``b' = (b − μ)·γ/σ + β`` (out,),
    σ = sqrt(var + eps)."""
    lin, bn = layer[0], layer[1]
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = (lin.weight * scale[:, None]).contiguous()
        return weight, (lin.bias - bn.running_mean) * scale + bn.bias


# Key2MeshNet → (what its folded layers were built from, the layers): see Key2MeshNet._folded
_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
        """In eval mode without autograd this is :meth:`predict` (the same numbers whichever is
        called); otherwise, and in a traced or exported graph, the modules."""
        if not self.training and not torch.is_grad_enabled() and not torch.jit.is_tracing():
            return self.predict(keypoints)
        return self.head(self.extractor(keypoints))

    @property
    def batch_invariant(self) -> bool:
        """Whether :meth:`predict` (eval mode, no autograd) gives a row the same numbers in any
        batch, 1 row included (:func:`key2mesh.dense.rows_independent`): callers need not pad."""
        w = self.head.out.weight
        return not self.training and dense.rows_independent(w.device, w.dtype)

    def predict(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for inference. In eval mode without autograd: the layers with their
        BatchNorm folded in (:meth:`_folded`), each Linear and its PReLU one
        :func:`key2mesh.dense.linear` call (oneDNN on the CPU: a row's numbers do not depend on
        its batch; ~2× faster than the modules at batch 1); in eval mode with autograd: the
        modules' functional ops (gradients to every parameter); in training mode:
        :meth:`forward`."""
        if self.training:
            return self.head(self.extractor(keypoints))
        if torch.is_grad_enabled():
            ext, head = self.extractor, self.head
            x = _blocks_eval(ext.blocks, _layer_eval(ext.inp, keypoints.flatten(1)))
            y = F.linear(_blocks_eval(head.blocks, x), head.out.weight, head.out.bias)
        else:
            layers = self._folded()
            x = keypoints.flatten(1).contiguous()
            # one check, then the layers back to back (see dense.Prepared)
            fast = all(p.packed is not None for p in layers) and dense.ready(x)
            run = [p.fast if fast else p for p in layers]
            x = run[0](x)
            for i in range(1, len(run) - 1, 2):  # residual blocks of two layers
                x = x + run[i + 1](run[i](x))
            y = run[-1](x)
        head = self.head
        rot6d = y[:, : 6 * head.num_joints].reshape(-1, head.num_joints, 6)
        return _rotations(rot6d), y[:, 6 * head.num_joints :]

    def _folded(self) -> list[dense.Prepared]:
        """The eval-mode network as layers (:class:`key2mesh.dense.Prepared`: weight (out, in),
        bias (out,), PReLU slope or None): the input layer, the blocks' layers, the output
        layer, BatchNorm folded in (:func:`fold_layer`), weights packed for oneDNN. Kept until a
        parameter or statistic changes (another tensor, data pointer or version: an optimizer
        step, ``load_state_dict``, ``.to()``), checked on every call (~10 µs)."""
        hit = _FOLDED.get(self)
        if hit is not None and all(
            owner.get(name) is t and t.data_ptr() == ptr and t._version == version
            for owner, name, t, ptr, version in hit[0]
        ):
            return hit[1]
        ext, head = self.extractor, self.head
        layers = [ext.inp] + [layer for blk in (*ext.blocks, *head.blocks) for layer in blk.body]
        sources = []
        for layer in layers:
            lin, bn, act = layer[0], layer[1], layer[2]
            sources += [(lin._parameters, n) for n in ("weight", "bias")]
            sources += [(bn._parameters, n) for n in ("weight", "bias")]
            sources += [(bn._buffers, n) for n in ("running_mean", "running_var")]
            sources.append((act._parameters, "weight"))
        sources += [(head.out._parameters, n) for n in ("weight", "bias")]
        with torch.no_grad():
            folded: list[dense.Prepared] = []
            for layer in layers:
                act = layer[2]
                if act.weight.numel() != 1:  # one slope per channel: not a fused activation
                    raise ValueError("the eval path needs PReLU layers with one slope")
                folded.append(dense.Prepared(*fold_layer(layer), float(act.weight)))
            folded.append(dense.Prepared(head.out.weight, head.out.bias))
        stamp = [(o, n, o[n], o[n].data_ptr(), o[n]._version) for o, n in sources]
        _FOLDED[self] = (stamp, folded)
        return folded


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

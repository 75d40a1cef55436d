"""An int8 copy of the network for CPU inference (opt-in: ``Key2Mesh(..., int8=True)``,
``key2mesh predict --int8``, ``key2mesh demo --int8``).

At batch 1 the 1024-wide network is limited by reading its ~26 MB of float32 weights once per
call; int8 weights are a quarter of that. Two steps:

1. :func:`fold_batchnorm`: every eval-mode Linear → BatchNorm pair becomes one Linear (exact up
   to float rounding), so the network is Linear/PReLU only.
2. :func:`quantize_int8`: PyTorch's dynamic quantization of those Linears (per-output-channel
   int8 weights; activations quantized per call from their range; fbgemm/x86 kernels).

Activation scales are computed per call over the whole batch, so unlike the float network a
row's numbers depend slightly on the other rows of its batch. The accuracy cost is measured in
``benchmarks/compare.py`` (the ``Key2Mesh int8`` row).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from key2mesh.errors import Key2MeshError
from key2mesh.model.network import Key2MeshNet, _rotations, fold_layer


def _fold(layer: nn.Sequential) -> nn.Linear:
    """[Linear, BatchNorm1d (eval statistics), PReLU, Dropout] → the Linear with the BatchNorm
    folded in (:func:`~key2mesh.model.network.fold_layer`)."""
    lin = layer[0]
    out = nn.Linear(lin.in_features, lin.out_features)
    weight, bias = fold_layer(layer)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


class FoldedNet(nn.Module):
    """:class:`Key2MeshNet` in eval mode as Linear + PReLU layers (BatchNorm folded, no dropout):
    normalised keypoints (B, K, 2) → (rotmats (B, 24, 3, 3), shape (B, S))."""

    def __init__(self, net: Key2MeshNet):
        super().__init__()
        if net.training:
            raise Key2MeshError("fold_batchnorm needs the network in eval mode (net.eval())")
        ext, head = net.extractor, net.head
        self.num_joints = head.num_joints
        self.inp = _fold(ext.inp)
        self.inp_act = _prelu(ext.inp[2])
        layers = [layer for block in (*ext.blocks, *head.blocks) for layer in block.body]
        self.linears = nn.ModuleList(_fold(layer) for layer in layers)
        self.acts = nn.ModuleList(_prelu(layer[2]) for layer in layers)
        self.out = nn.Linear(head.out.in_features, head.out.out_features)
        self.out.load_state_dict(head.out.state_dict())
        self.eval()

    def forward(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inp_act(self.inp(keypoints.flatten(1)))
        for i in range(0, len(self.linears), 2):  # residual blocks of two layers
            h = self.acts[i](self.linears[i](x))
            x = x + self.acts[i + 1](self.linears[i + 1](h))
        y = self.out(x)
        rot6d = y[:, : 6 * self.num_joints].reshape(-1, self.num_joints, 6)
        # the float network's 6D -> matrix step (float32 even under bf16/fp16 autocast)
        return _rotations(rot6d), y[:, 6 * self.num_joints :]

    def predict(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The :meth:`Key2MeshNet.predict` interface."""
        return self(keypoints)


def _prelu(act: nn.PReLU) -> nn.PReLU:
    out = nn.PReLU(act.num_parameters)
    out.load_state_dict(act.state_dict())
    return out


def fold_batchnorm(net: Key2MeshNet) -> FoldedNet:
    """The eval-mode network with every BatchNorm folded into its Linear (float32, same numbers
    within rounding), on the CPU; ``net`` itself is left as it is (any device)."""
    return FoldedNet(net)


def quantize_int8(net: Key2MeshNet) -> FoldedNet:
    """The network with BatchNorm folded and every Linear dynamically quantized to int8
    (per output channel), for CPU inference. Raises :class:`Key2MeshError` where this PyTorch
    build has no quantized CPU kernels."""
    folded = fold_batchnorm(net)
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        engines = torch.backends.quantized.supported_engines
        engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in engines), None)
        if engine is None:
            raise RuntimeError(f"no quantized engine (supported: {engines})")
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            # torch.ao.quantization announces its move to torchao; torchao's CPU int8 kernels
            # were slower than float32 at batch 1 here, so the built-in ones are used
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            return quantize_dynamic(
                folded, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
    except (ImportError, RuntimeError, AttributeError) as exc:
        raise Key2MeshError(
            f"int8 inference is not available with this PyTorch build ({torch.__version__}): {exc}"
        ) from None

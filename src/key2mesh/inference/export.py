"""Export the network (with its input normalisation) to ONNX and TorchScript.

The exported graph takes pixel keypoints (B, K, 2) in the model's keypoint set and
confidences (B, K), normalises them exactly like training, and returns rotation matrices
(B, 24, 3, 3) and shape (B, S). The body model stays in Python (anny/SMPL forward).
Files are written atomically (a temporary file in the same folder, then renamed).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.normalize import bbox_normalize
from key2mesh.model.checkpoint import Checkpoint, build_network
from key2mesh.safe_paths import atomic_path


class ExportableKey2Mesh(nn.Module):
    """Normalisation + network, in eval mode, for export."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.net = build_network(checkpoint, "cpu").eval()
        self.threshold = float(checkpoint.normalization.conf_threshold)
        self.missing = float(checkpoint.normalization.missing_value)

    def forward(
        self, keypoints: torch.Tensor, confidence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = bbox_normalize(keypoints, confidence, self.threshold, self.missing)
        return self.net(x)


def _example(checkpoint: Checkpoint, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    k = checkpoint.model_config.num_keypoints
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, k, 2, generator=g) * 200, torch.rand(batch, k, generator=g)


def export_onnx(checkpoint: Checkpoint, path: str | Path, opset: int = 18) -> Path:
    """Write an ONNX model with a dynamic batch axis; returns the path."""
    path = Path(path)
    model = ExportableKey2Mesh(checkpoint)
    try:
        with atomic_path(path) as tmp:
            torch.onnx.export(
                model,
                _example(checkpoint),
                str(tmp),
                input_names=["keypoints", "confidence"],
                output_names=["rotmats", "shape"],
                opset_version=opset,
                dynamo=False,
                dynamic_axes={
                    "keypoints": {0: "batch"},
                    "confidence": {0: "batch"},
                    "rotmats": {0: "batch"},
                    "shape": {0: "batch"},
                },
            )
    except ImportError as exc:
        raise Key2MeshError(
            f"ONNX export needs the onnx package: pip install onnx ({exc})"
        ) from exc
    return path


def export_torchscript(checkpoint: Checkpoint, path: str | Path) -> Path:
    path = Path(path)
    traced = torch.jit.trace(ExportableKey2Mesh(checkpoint), _example(checkpoint))
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    return path


def max_onnx_difference(checkpoint: Checkpoint, path: str | Path, batch: int = 16) -> float:
    """Largest absolute difference between onnxruntime and PyTorch outputs on random inputs."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise Key2MeshError(
            "checking the ONNX model needs onnxruntime: pip install onnxruntime"
        ) from exc
    kp, conf = _example(checkpoint, batch)
    conf[:, :3] = 0.0  # exercise the missing-joint path too
    with torch.no_grad():
        ref = ExportableKey2Mesh(checkpoint)(kp, conf)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"keypoints": kp.numpy(), "confidence": conf.numpy()})
    return max(float((torch.from_numpy(o) - r).abs().max()) for o, r in zip(outs, ref))

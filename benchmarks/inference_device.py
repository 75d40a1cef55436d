"""Keypoints → full anny mesh through the public API on one device (``scripts/gpu_check.sh`` runs it
on CUDA): ``Key2Mesh.predict`` at batch 1 (a new shape every call) and batch 512, timed with the
device synchronised. The last line is ``RESULT device_mesh_b1_ms=... device_meshes_per_s_b512=...``.

    .venv/bin/python benchmarks/inference_device.py [--device cuda] [--checkpoint anny-coco17]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import record_results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--checkpoint", default="anny-coco17")
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    record_results(
        f"inference_device_{a.device.replace(':', '')}", f"Keypoints to mesh on {a.device}"
    )
    from key2mesh.devices import check_device
    from key2mesh.inference.predictor import Key2Mesh

    check_device(a.device)
    model = Key2Mesh.from_pretrained(a.checkpoint, device=a.device)
    k = model.checkpoint.model_config.num_keypoints
    dev = torch.device(a.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    res = {}
    g = torch.Generator().manual_seed(0)
    for batch in (1, 512):
        x = 300 * torch.rand(a.repeats + 1, batch, k, 2, generator=g)  # a new shape every call
        model.predict(x[0])  # warm-up (kernels, caches)
        sync()
        times = []
        for i in range(1, a.repeats + 1):
            t0 = time.perf_counter()
            out = model.predict(x[i])
            sync()
            times.append(time.perf_counter() - t0)
        t = sorted(times)[len(times) // 2]
        assert out.vertices.shape == (batch, model.mesh_body.num_vertices, 3)
        print(f"{a.device} batch {batch}: {1000 * t:.2f} ms ({batch / t:.0f} meshes/s)")
        res["device_mesh_b1_ms" if batch == 1 else "device_meshes_per_s_b512"] = (
            1000 * t if batch == 1 else batch / t
        )
    print(
        f"RESULT device_mesh_b1_ms={res['device_mesh_b1_ms']:.2f} "
        f"device_meshes_per_s_b512={res['device_meshes_per_s_b512']:.0f} device={a.device}"
    )


if __name__ == "__main__":
    main()

"""Latency and throughput of inference on this CPU: keypoints → parameters and keypoints → mesh
(low-res 1,229 and full 13,718-vertex anny), at batch 1 and 512.

    .venv/bin/python benchmarks/inference.py [--checkpoint anny-body25] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from _common import timeit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="anny-body25")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from key2mesh.inference.predictor import Key2Mesh

    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu")
    k = model.checkpoint.model_config.num_keypoints
    print(
        f"checkpoint {a.checkpoint}: hidden {model.checkpoint.model_config.hidden}, threads {a.threads}"
    )
    print(
        f"{'batch':>5} {'params ms':>10} {'mesh(low) ms':>13} {'mesh(full) ms':>14} {'meshes/s (full)':>16}"
    )
    for batch in (1, 512):
        x = torch.rand(batch, k, 2)
        conf = torch.ones(batch, k)
        with torch.no_grad():
            t_params = timeit(
                lambda: model.net(model.normalize(x * 300, conf)[0]), 20 if batch == 1 else 5
            )
            t_low = timeit(
                lambda: model.body(*model.net(model.normalize(x * 300, conf)[0])),
                10 if batch == 1 else 3,
            )
            t_full = timeit(
                lambda: model.mesh_body(*model.net(model.normalize(x * 300, conf)[0])),
                10 if batch == 1 else 3,
            )
        print(
            f"{batch:>5} {1000 * t_params:>10.2f} {1000 * t_low:>13.2f} {1000 * t_full:>14.2f} {batch / t_full:>16.0f}"
        )


if __name__ == "__main__":
    main()

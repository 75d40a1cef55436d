"""Latency and throughput of inference on this CPU: keypoints → parameters and keypoints → mesh
(low-res 1,229 and full 13,718-vertex anny), at batch 1 and 512.

    .venv/bin/python benchmarks/inference.py [--checkpoint anny-body25] [--threads 2]

"mesh" times are keypoints → network → body model, with a new shape every call (the body's
shape-only rest model is recomputed); "tracked" reuses one shape (a tracked person whose shape is
held fixed: the rest mesh comes from the body's cache). "anny" is anny's own forward (rest model,
Warp skinning, dense regressor) on the same parameters, for the ratio in the same process.
"params" is the network on normalised keypoints (at batch 1 on 1 row, as "mesh" runs it);
``predict_b1_ms`` is ``Key2Mesh.predict(..., mesh=False)`` at batch 1 (input checks, the network
unpadded where oneDNN's rows are batch-invariant (``key2mesh.dense``), the training body's 3D
keypoints) and
``predict_mesh_b1_ms`` the same with the full mesh of a new shape: what a caller of the API
waits for one detection. Every row is measured in ``--rounds`` rounds ``--pause`` seconds apart
(this shared machine's speed drifts by tens of per cent over minutes); the figures are the
medians over the rounds, and the full mesh's fastest and slowest rounds are recorded too
(``*_min_ms``/``*_max_ms``). The last line is ``RESULT params_b1_ms=... mesh_full_b1_ms=...
meshes_per_s_b512=... ...``. Like the ``key2mesh`` command, it sets ``THP_MEM_ALLOC_ENABLE=1``
(transparent huge pages for large CPU buffers) unless the environment says otherwise, and keeps
large freed arrays for reuse (``key2mesh.allocator``).
``*_int8`` rows use the int8 network (``Key2Mesh(..., int8=True)``,
:mod:`key2mesh.model.int8`) with the same body model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the key2mesh command sets it
import torch  # noqa: E402
from _common import record_results, result_line, timeit  # noqa: E402

from key2mesh.allocator import keep_large_allocations  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="anny-body25")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="rounds of every row (medians reported)")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between rounds")
    a = p.parse_args()
    record_results(f"inference_threads{a.threads}", "Inference latency and throughput, CPU")
    torch.set_num_threads(a.threads)
    keep_large_allocations()  # as the key2mesh command does
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.model.int8 import quantize_int8

    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu")
    net_int8 = quantize_int8(model.net)
    k = model.checkpoint.model_config.num_keypoints
    full, low = model.mesh_body, model.body
    print(
        f"checkpoint {a.checkpoint}: hidden {model.checkpoint.model_config.hidden}, threads {a.threads}"
    )

    def anny_forward(body, r, s):
        """anny's own pipeline (what key2mesh called before its inference path)."""
        r, s = body._check_pose(r, s)
        m = body.model
        rest = m.get_rest_model(body.blendshape_coefficients(s))
        tr, _ = m.get_bone_transforms(body._anny_delta(r), rest["rest_bone_poses"])
        v = m.get_skinned_vertices(rest["rest_vertices"], tr) @ body.frame
        return torch.einsum("kv,bvd->bkd", body.coco23_regressor, v)

    res: dict[str, float] = {}
    g = torch.Generator().manual_seed(0)
    print(
        f"{'batch':>5} {'params ms':>10} {'mesh(low) ms':>13} {'mesh(full) ms':>14} "
        f"{'tracked ms':>11} {'anny ms':>8} {'meshes/s (full)':>16} "
        f"{'params int8 ms':>15} {'meshes/s int8':>14}"
    )
    for batch in (1, 512):
        reps = 20 if batch == 1 else 7
        x = 300 * torch.rand(batch, k, 2, generator=g)
        conf = torch.ones(batch, k)

        def params(net=model.net):
            return net.predict(model.normalize(x, conf)[0])

        def mesh(body, net=model.net):
            body.clear_cache()  # a new shape every call
            return body(*params(net))

        def one_round() -> dict[str, float]:
            """Every row once (median of ``reps`` calls each), seconds."""
            with torch.no_grad():
                r, s = params()
                for _ in range(50 if batch == 1 else 2):  # back to speed after the pause
                    mesh(full)
                t = {
                    "params": timeit(params, 2 * reps),
                    # the API: validation, body keypoints included
                    "predict": timeit(lambda: model.predict(x, conf, mesh=False), 2 * reps),
                    "low": timeit(lambda: mesh(low), reps),
                    "full": timeit(lambda: mesh(full), reps),
                    "tracked": timeit(lambda: full(params()[0], s), reps),
                    "anny": timeit(lambda: anny_forward(full, *params()), reps),
                    "params_int8": timeit(lambda: params(net_int8), 2 * reps),
                    "full_int8": timeit(lambda: mesh(full, net_int8), reps),
                }
                if batch == 1:  # the API's wait for one detection (recorded at batch 1 only)
                    t["predict_mesh"] = timeit(
                        lambda: (full.clear_cache(), low.clear_cache(), model.predict(x, conf)),
                        reps,
                    )
            return t

        rounds = []
        for i in range(a.rounds):
            if i:
                time.sleep(a.pause)  # rounds spread over time: this machine's speed drifts
            rounds.append(one_round())
        t = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        full_ms = sorted(1000 * r["full"] for r in rounds)
        print(
            f"{batch:>5} {1000 * t['params']:>10.2f} {1000 * t['low']:>13.2f} "
            f"{1000 * t['full']:>14.2f} {1000 * t['tracked']:>11.2f} {1000 * t['anny']:>8.2f} "
            f"{batch / t['full']:>16.0f} {1000 * t['params_int8']:>15.2f} "
            f"{batch / t['full_int8']:>14.0f}"
        )
        print(
            f"      mesh(full) ms in each of the {a.rounds} rounds: "
            + ", ".join(f"{v:.2f}" for v in full_ms)
        )
        if batch == 1:
            res.update(
                params_b1_ms=1000 * t["params"],
                params_b1_int8_ms=1000 * t["params_int8"],
                mesh_full_b1_int8_ms=1000 * t["full_int8"],
                predict_b1_ms=1000 * t["predict"],
                predict_mesh_b1_ms=1000 * t["predict_mesh"],
                mesh_full_b1_ms=1000 * t["full"],
                mesh_full_b1_min_ms=full_ms[0],
                mesh_full_b1_max_ms=full_ms[-1],
                mesh_full_b1_tracked_ms=1000 * t["tracked"],
                mesh_low_b1_ms=1000 * t["low"],
                anny_full_b1_ms=1000 * t["anny"],
            )
        else:
            res.update(
                params_b512_ms=1000 * t["params"],
                meshes_per_s_b512=batch / t["full"],
                meshes_per_s_b512_min=batch / (full_ms[-1] / 1000),
                meshes_per_s_b512_max=batch / (full_ms[0] / 1000),
                meshes_per_s_b512_int8=batch / t["full_int8"],
                anny_meshes_per_s_b512=batch / t["anny"],
            )
    print(result_line(res, threads=a.threads))


if __name__ == "__main__":
    main()

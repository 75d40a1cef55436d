"""glibc's default malloc vs key2mesh's (``key2mesh.allocator.keep_large_allocations``: large
freed arrays kept for reuse) on this CPU: a fresh 84 MB array (a batch of 512 full meshes'
vertices) and the keypoints → full mesh path at batch 512 and 1, new shapes.

    .venv/bin/python benchmarks/allocator.py [--threads 2] [--rounds 3]

mallopt is process-wide and cannot be undone exactly, so each measurement is a child process
(``KEY2MESH_MALLOC=system`` for glibc's defaults), the two settings alternating for
``--rounds`` rounds; the figures are the medians over the rounds. Both set
``THP_MEM_ALLOC_ENABLE=1`` as the ``key2mesh`` command does. The last line is
``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def child(threads: int) -> dict[str, float]:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import torch

    from key2mesh.allocator import keep_large_allocations

    torch.set_num_threads(threads)
    tuned = keep_large_allocations()
    from _common import timeit  # the script's folder is on the path, as a script or a child

    from key2mesh.inference.predictor import Key2Mesh

    def median_ms(fn, n: int) -> float:
        return 1000 * timeit(fn, n)

    out = {"tuned": float(tuned)}
    out["fresh_84mb_ms"] = median_ms(lambda: torch.empty(512, 41154).fill_(1.0), 15)
    model = Key2Mesh.from_pretrained("anny-body25", device="cpu")
    full, net = model.mesh_body, model.net
    g = torch.Generator().manual_seed(0)
    k = model.checkpoint.model_config.num_keypoints
    with torch.no_grad():
        for batch, reps in ((512, 7), (1, 60)):
            x = model.normalize(300 * torch.rand(batch, k, 2, generator=g))[0]

            def mesh():
                full.clear_cache()  # a new shape every call
                return full(*net.predict(x))

            out[f"mesh_b{batch}_ms"] = median_ms(mesh, reps)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.threads)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import record_results, result_line

    record_results(f"allocator_threads{a.threads}", "glibc's malloc vs key2mesh's, CPU")
    runs: dict[str, list[dict[str, float]]] = {"system": [], "key2mesh": []}
    for _ in range(a.rounds):
        for name in runs:
            env = dict(os.environ)
            env.pop("KEY2MESH_MALLOC", None)
            if name == "system":
                env["KEY2MESH_MALLOC"] = "system"
            res = subprocess.run(
                [sys.executable, __file__, "--child", "--threads", str(a.threads)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"{a.threads} threads; medians of {a.rounds} child processes per setting, alternating")
    result = {}
    print(f"{'':<16} {'system':>10} {'key2mesh':>10}")
    for key in ("fresh_84mb_ms", "mesh_b512_ms", "mesh_b1_ms"):
        sys_ms = statistics.median(r[key] for r in runs["system"])
        k2m_ms = statistics.median(r[key] for r in runs["key2mesh"])
        print(f"{key:<16} {sys_ms:>10.2f} {k2m_ms:>10.2f}")
        result[f"{key}_system"], result[f"{key}_key2mesh"] = sys_ms, k2m_ms
    result["meshes_per_s_b512_system"] = 512e3 / result["mesh_b512_ms_system"]
    result["meshes_per_s_b512_key2mesh"] = 512e3 / result["mesh_b512_ms_key2mesh"]
    print(
        f"meshes/s at 512: system {result['meshes_per_s_b512_system']:.0f}, "
        f"key2mesh {result['meshes_per_s_b512_key2mesh']:.0f}"
    )
    tuned = all(r["tuned"] for r in runs["key2mesh"])
    print(result_line(result, 4, tuned=int(tuned), threads=a.threads))


if __name__ == "__main__":
    main()

"""Skinning of anny's full mesh (13,718 vertices) on this CPU: the Warp kernel with one vertex per
Warp thread (anny's layout) against runs of ``SKIN_BLOCK`` vertices per thread (the default),
interleaved in one process so that the ratio is measured on the same machine state.

Warp's CPU backend calls the kernel function once per thread; with one vertex per thread that call
cost as much as the vertex's arithmetic. Both layouts give the same bits (tested in
``tests/test_body_models.py``, and checked here before timing). Rows: batch 1, 16 and 512 (the
batch split over the torch threads as ``AnnyBody._skin`` does); times include the output tensor.

    .venv/bin/python benchmarks/skinning.py [--threads 2] [--rounds 10]

The last line is ``RESULT skin_b512_ms=... skin_b512_block1_ms=... speedup_b512=... ...``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the key2mesh command sets it
import torch  # noqa: E402
from _common import random_poses, record_results, result_line, timeit_interleaved  # noqa: E402

from key2mesh.allocator import keep_large_allocations  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds per batch size")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keep_large_allocations()  # as the key2mesh command does
    record_results(f"skinning_threads{a.threads}", "Skinning of anny's full mesh, CPU")
    from key2mesh.body import anny_backend
    from key2mesh.body.anny_backend import AnnyBody

    block = anny_backend.SKIN_BLOCK
    body = AnnyBody(topology="anny")
    g = torch.Generator().manual_seed(0)
    res: dict[str, float] = {}
    print(f"{a.threads} threads; median of {a.rounds} interleaved rounds")
    print(
        f"{'batch':>5} {'1 vertex/thread ms':>19} {f'{block} vertices/thread ms':>24} {'ratio':>6}"
    )
    for batch in (1, 16, 512):
        rot = random_poses(batch, seed=batch)
        shape = torch.rand(batch, 6, generator=g)
        reps = max(1, 2048 // batch)
        with torch.no_grad():
            poses, _, rest, rows = body._rest(shape, vertices=True)
            rest = torch.cat(rest) if isinstance(rest, list) else rest  # one array per cell
            rest = rest if rows is None else rest[rows]  # one rest mesh per sample, as before
            t_rot, t_trans, _ = body._bone_transforms(rot, poses)

            def skin(run: int):
                anny_backend.SKIN_BLOCK = run
                return body._skin(rest, t_rot, t_trans)

            if not torch.equal(skin(1), skin(block)):
                raise SystemExit("the two layouts gave different vertices")
            times = timeit_interleaved(
                {1: lambda: skin(1), block: lambda: skin(block)}, a.rounds, reps
            )
        anny_backend.SKIN_BLOCK = block
        one, many = (1000 * times[b] for b in (1, block))
        print(f"{batch:>5} {one:>19.3f} {many:>24.3f} {one / many:>6.2f}")
        res[f"skin_b{batch}_ms"] = many
        res[f"skin_b{batch}_block1_ms"] = one
        res[f"speedup_b{batch}"] = one / many
    print(result_line(res, block=block, threads=a.threads))


if __name__ == "__main__":
    main()

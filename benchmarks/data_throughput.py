"""Samples/s of the data path alone: pair synthesis (rotation augmentation, anny keypoints,
projection, occlusion, jitter, normalisation) at batch 256 on the low-res anny body.

    .venv/bin/python benchmarks/data_throughput.py [--threads 2] [--profile detector]

Reports anny's own forward (all vertices, then regression) vs key2mesh's keypoint path as a
ratio measured in the same run. The last line is ``RESULT pairs_per_s=... keypoints_per_s=...``;
the output is also written to ``benchmarks/results/data_throughput_threads<N>.md``.
"""

from __future__ import annotations

import argparse

import torch
from _common import random_poses, record_results, timeit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--profile", default="none")
    a = p.parse_args()
    record_results(f"data_throughput_threads{a.threads}", "Data path throughput")
    torch.set_num_threads(a.threads)
    from key2mesh.body import load_body_model
    from key2mesh.data.synth import PairSynthesizer, SynthConfig

    body = load_body_model("anny")
    synth = PairSynthesizer(body, "openpose_body25", config=SynthConfig(noise_profile=a.profile))
    rot, shape = random_poses(a.batch), body.default_shape(a.batch)
    g = torch.Generator().manual_seed(0)
    t_synth = timeit(lambda: synth(rot, shape, g))
    with torch.no_grad():
        t_full = timeit(lambda: body.regress(body(rot, shape).vertices, "openpose_body25"))
        t_kp = timeit(lambda: body.forward_keypoints(rot, shape, "openpose_body25"))
        delta = body._anny_delta(rot)
        t_anny = timeit(
            lambda: body.regress(
                body.model(delta, phenotype_kwargs=shape)["vertices"], "openpose_body25"
            )
        )
    print(f"threads={a.threads} batch={a.batch} profile={a.profile}")
    print(f"pair synthesis:                    {a.batch / t_synth:8.0f} pairs/s")
    print(f"body keypoints, anny.Anny.forward: {a.batch / t_anny:8.0f} samples/s")
    print(f"body keypoints, full forward:      {a.batch / t_full:8.0f} samples/s")
    print(
        f"body keypoints, key2mesh fast path: {a.batch / t_kp:8.0f} samples/s  (x{t_full / t_kp:.2f} vs full, x{t_anny / t_kp:.2f} vs anny)"
    )
    print(
        f"RESULT pairs_per_s={a.batch / t_synth:.0f} keypoints_per_s={a.batch / t_kp:.0f} "
        f"keypoints_vs_anny={t_anny / t_kp:.2f} keypoints_vs_full={t_full / t_kp:.2f} "
        f"batch={a.batch} threads={a.threads}"
    )


if __name__ == "__main__":
    main()

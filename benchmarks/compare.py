"""Key2Mesh vs the optimisation baseline (SMPLify-style fit) vs Key2Mesh + refinement, on the same
inputs in one run: held-out MoCap clips projected with a detector-like noise profile.

    .venv/bin/python benchmarks/compare.py --checkpoint anny-body25 --cache cache/mocap_anny.npz \
        [--num 256] [--iters 100] [--out benchmarks/results/compare.md]

Accuracy: PA-MPJPE / MPJPE (mm, 14 H36M joints, mid-hip pelvis). Latency: batch 1 and batch 512.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="anny-body25")
    p.add_argument("--cache", default="cache/mocap_anny.npz")
    p.add_argument("--profile", default="detector")
    p.add_argument("--num", type=int, default=512, help="inputs; the whole set is one batch (latency column 'batch N')")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--refine-iters", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/compare.md")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from key2mesh.eval.evaluate import score_bodies
    from key2mesh.eval.fit import fit_to_keypoints
    from key2mesh.inference.predictor import Key2Mesh

    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu", full_mesh=False)
    body, kset = model.body, model.keypoint_set
    # the same inputs for every method: pixel keypoints + confidences of held-out clips
    from key2mesh.data.cache import PoseBank
    from key2mesh.data.synth import PairSynthesizer, SynthConfig

    bank = PoseBank.load(a.cache)
    _, val_idx = bank.split(0.1, 0)
    g = torch.Generator().manual_seed(7)
    sel = torch.from_numpy(val_idx)[torch.randint(len(val_idx), (a.num,), generator=g)]
    shapes = torch.from_numpy(bank.shapes)[torch.randint(len(bank.shapes), (a.num,), generator=g)]
    batch = PairSynthesizer(body, kset, model.camera, SynthConfig(noise_profile=a.profile))(torch.from_numpy(bank.rotmats)[sel], shapes, g)
    kp, conf = batch.keypoints2d, batch.confidence

    def k2m(k, c):
        with torch.no_grad():
            pr = model.predict(k, c, mesh=False)
        return pr.rotmats, pr.shape

    def fit(k, c, init=None, iters=a.iters):
        r = fit_to_keypoints(body, k, c, kset, init_rotmats=None if init is None else init[0],
                             init_shape=None if init is None else init[1], iters=iters)
        return r.rotmats.detach(), r.shape.detach()

    methods = {
        "Key2Mesh": lambda k, c: k2m(k, c),
        f"Optimisation baseline ({a.iters} it)": lambda k, c: fit(k, c),
        f"Key2Mesh + refinement ({a.refine_iters} it)": lambda k, c: fit(k, c, k2m(k, c), a.refine_iters),
    }
    rows = []
    for name, fn in methods.items():
        t0 = time.perf_counter()
        r, s = fn(kp, conf)
        t_all = time.perf_counter() - t0  # the whole set as one batch
        err = score_bodies(body, r, s, body, batch.rotmats, batch.shape, "key2mesh")
        t1 = min(_time(lambda: fn(kp[:1], conf[:1])) for _ in range(3))
        rows.append((name, float(err["pa_mpjpe"].mean()), float(err["mpjpe"].mean()), 1000 * t1, 1000 * t_all))
    base1, base512 = rows[1][3], rows[1][4]
    lines = [f"Inputs: {a.num} held-out MoCap frames ({a.cache}), noise profile '{a.profile}', checkpoint {a.checkpoint}; "
             f"{a.threads} CPU threads.", "",
             f"| method | PA-MPJPE (mm) | MPJPE (mm) | batch 1 (ms) | batch {a.num} (ms) | speed-up vs baseline (batch 1 / {a.num}) |",
             "|---|---|---|---|---|---|"]
    for name, pa, mp, t1, t512 in rows:
        lines.append(f"| {name} | {pa:.1f} | {mp:.1f} | {t1:.1f} | {t512:.0f} | {base1 / t1:.0f}x / {base512 / t512:.0f}x |")
    text = "\n".join(lines)
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text + "\n")


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

"""Samples/s of pre-training and adaptation steps (network + body keypoints + losses + Adam) on
this machine, low-res anny body, batch 256; the pre-training step also with the network under
bf16 autocast (``pretrain --amp-cpu``). The last line is ``RESULT pretrain_samples_per_s=...
pretrain_bf16_samples_per_s=...``.

    .venv/bin/python benchmarks/train_throughput.py [--threads 2] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import copy

import torch
from _common import random_poses, record_results, timeit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--critic-steps", type=int, default=3)
    a = p.parse_args()
    record_results(f"train_throughput_threads{a.threads}", "Training step throughput")
    torch.set_num_threads(a.threads)
    from key2mesh.body import load_body_model
    from key2mesh.data.synth import PairSynthesizer
    from key2mesh.geometry.camera import VirtualCamera
    from key2mesh.model.network import DomainCritic, Key2MeshNet, ModelConfig
    from key2mesh.train.losses import (
        PretrainWeights,
        feature_regularizer,
        gradient_penalty,
        pretrain_loss,
        reprojection_loss,
        wasserstein_distance,
    )

    body = load_body_model("anny")
    cam = VirtualCamera()
    synth = PairSynthesizer(body, "openpose_body25")
    cfg = ModelConfig(num_keypoints=25, hidden=a.hidden)
    net = Key2MeshNet(cfg)
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)  # as pre-training's
    rot, shape = random_poses(a.batch), body.default_shape(a.batch)
    g = torch.Generator().manual_seed(0)

    def pretrain_step(bf16: bool = False):
        b = synth(rot, shape, g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            r, s = net(b.inputs)
        r, s = r.float(), s.float()
        kp = body.forward_keypoints(r, s, "openpose_body25")
        loss, _ = pretrain_loss(
            r, s, kp, b.rotmats, b.shape, b.keypoints3d, b.target2d, cam, PretrainWeights()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    net_pt = copy.deepcopy(net).eval()
    extractor = copy.deepcopy(net.extractor).train()
    critic = DomainCritic(cfg)
    opt_f, opt_d = (
        torch.optim.Adam(extractor.parameters(), 1e-4),
        torch.optim.Adam(critic.parameters(), 1e-4),
    )
    target = synth(rot, shape, g)

    def adapt_step():
        src = synth(rot, shape, g)
        with torch.no_grad():
            fs, ftp = net_pt.extractor(src.inputs), net_pt.extractor(target.inputs)
        ft = extractor(target.inputs)
        for _ in range(a.critic_steps):
            ld = -(
                wasserstein_distance(critic(fs), critic(ft.detach()))
                - 50 * gradient_penalty(critic, fs, ft.detach())
            )
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
        r, s = net_pt.head(ft)
        kp = body.forward_keypoints(r, s, "openpose_body25")
        loss = (
            10 * reprojection_loss(kp, target.inputs, target.valid, cam)
            + 0.1 * wasserstein_distance(critic(fs), critic(ft))
            + 20 * feature_regularizer(ft, ftp)
        )
        opt_f.zero_grad()
        loss.backward()
        opt_f.step()

    t_pt, t_ad = timeit(pretrain_step, 5), timeit(adapt_step, 5)
    t_bf = timeit(lambda: pretrain_step(bf16=True), 5)
    print(f"threads={a.threads} batch={a.batch} hidden={a.hidden}")
    print(f"pre-training: {a.batch / t_pt:7.0f} samples/s ({1000 * t_pt:.0f} ms/step)")
    print(f"  bf16 CPU autocast: {a.batch / t_bf:7.0f} samples/s ({1000 * t_bf:.0f} ms/step)")
    print(
        f"adaptation:   {a.batch / t_ad:7.0f} target samples/s ({1000 * t_ad:.0f} ms/step, k={a.critic_steps})"
    )
    print(
        f"RESULT pretrain_samples_per_s={a.batch / t_pt:.0f} "
        f"pretrain_bf16_samples_per_s={a.batch / t_bf:.0f} adapt_samples_per_s={a.batch / t_ad:.0f} "
        f"hidden={a.hidden} batch={a.batch} threads={a.threads}"
    )


if __name__ == "__main__":
    main()

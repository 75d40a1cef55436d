"""Seeded draws must work when the tensors live on another device than the CPU generator (CUDA in
training). Without a GPU, the "meta" device stands in for CUDA, and a strict wrapper around torch's
random functions refuses a generator whose device differs from the requested one, as torch does
for a CPU generator and a CUDA tensor."""

import re
from pathlib import Path

import pytest
import torch

from key2mesh.data.noise import PROFILES, apply_noise_profile
from key2mesh.data.synth import SynthConfig, random_global_rotation
from key2mesh.train.losses import gradient_penalty
from key2mesh.train.random import rand, randint, randn

SRC = Path(__file__).resolve().parents[1] / "src" / "key2mesh"


@pytest.fixture(autouse=True)
def strict_generators(monkeypatch):
    """torch.rand/randn/randint that refuse a generator on another device than the draw's."""
    for name in ("rand", "randn", "randint"):
        original = getattr(torch, name)

        def strict(*args, _original=original, **kwargs):
            gen, dev = kwargs.get("generator"), kwargs.get("device")
            if gen is not None and dev is not None and torch.device(dev).type != gen.device.type:
                raise RuntimeError(f"generator on {gen.device} used for a draw on {dev}")
            if gen is not None and dev is not None:
                kwargs["device"] = (
                    gen.device
                )  # meta stands in for CUDA: draw where the generator is
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, strict)


def test_strict_wrapper_catches_a_mismatch():
    """The failure the helpers prevent (so the tests below can fail)."""
    with pytest.raises(RuntimeError, match="generator on cpu"):
        torch.rand(3, generator=torch.Generator().manual_seed(0), device="meta")


def test_helpers_draw_on_generator_device_then_move():
    g = torch.Generator().manual_seed(0)
    for fn, args in ((rand, ((2, 3),)), (randn, ((2, 3),)), (randint, (5, (4,)))):
        out = fn(*args, generator=g, device="meta")
        assert out.device.type == "meta"
    a = rand((4,), torch.Generator().manual_seed(3), "cpu")
    b = torch.rand(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # the same numbers as a plain CPU draw: resume is exact across devices


def test_synthesis_noise_and_penalty_draws_are_device_correct():
    g = torch.Generator().manual_seed(0)
    r = random_global_rotation(8, SynthConfig(), g, device="meta")
    assert r.shape == (8, 3, 3) and r.device.type == "meta"
    kp = torch.zeros(4, 17, 2, device="meta")
    conf = torch.ones(4, 17, device="meta")
    noisy, c = apply_noise_profile(kp, conf, "coco17", PROFILES["strong"], g)
    assert noisy.device.type == "meta" and c.device.type == "meta"
    critic = torch.nn.Linear(6, 1).to("meta")
    gp = gradient_penalty(
        lambda x: critic(x).squeeze(-1),
        torch.zeros(5, 6, device="meta"),
        torch.zeros(5, 6, device="meta"),
        g,
    )
    assert gp.device.type == "meta"


def test_no_seeded_draw_bypasses_the_helpers():
    """Every torch.rand/randn/randint with a generator in training code goes through train/random.py
    (the pose sampler keeps its own generator on its own device)."""
    pattern = re.compile(r"torch\.(rand|randn|randint)\([^)]*generator=")
    allowed = {
        "train/random.py",
        "data/mocap/sampler.py",
        "inference/export.py",
    }  # export: CPU example inputs
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel not in allowed and pattern.search(path.read_text()):
            bad.append(rel)
    assert not bad, bad


def test_cpu_share_is_the_usable_cores_or_a_workers_share(monkeypatch):
    from key2mesh import devices

    monkeypatch.setattr(devices, "_CPU_SHARE", None)
    assert devices.cpu_share() >= 1
    devices.set_cpu_share(3)
    assert devices.cpu_share() == 3
    devices.set_cpu_share(0)  # at least one
    assert devices.cpu_share() == 1
    devices.set_cpu_share(None)
    assert devices.cpu_share() >= 1

"""PoseBank.save (the training cache `key2mesh data prepare` writes): atomic, one temp per writer."""

from __future__ import annotations

import threading

import numpy as np

from key2mesh.data.cache import PoseBank


def _bank(n: int) -> PoseBank:
    rot = np.broadcast_to(np.eye(3, dtype=np.float32), (n, 24, 3, 3)).copy()
    return PoseBank(
        rot,
        np.repeat(np.arange(2), n // 2).astype(np.int32),
        ["a", "b"],
        ["test", "test"],
        np.zeros((4, 10), np.float32),
        {"backend": "smpl"},
    )


def test_pose_bank_concurrent_writers_never_mix(tmp_path):
    """Two writers of one cache each write a temp file of their own: the cache read afterwards
    is one of them, whole (a shared temp name let them truncate and rename each other's file)."""
    path = tmp_path / "cache.npz"
    banks = (_bank(4000), _bank(6))
    errors: list[str] = []

    def write(b):
        try:
            b.save(path)
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(repr(exc))

    for _ in range(10):
        threads = [threading.Thread(target=write, args=(b,)) for b in banks * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with np.load(path) as z:  # readable, and one writer's content
            assert len(z["rotmats"]) in (4000, 6) and len(z["clip_index"]) == len(z["rotmats"])
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npz"]
    # a path without the .npz suffix is written as named
    assert banks[1].save(tmp_path / "plain") == tmp_path / "plain"
    with np.load(tmp_path / "plain") as z:
        assert len(z["rotmats"]) == 6

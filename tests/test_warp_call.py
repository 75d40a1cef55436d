"""key2mesh.body.warp_call: recorded Warp CPU launches re-aimed at new tensors."""

import threading

import pytest
import torch

wp = pytest.importorskip("warp")

from key2mesh.body.anny_backend import _warp_types  # noqa: E402
from key2mesh.body.warp_call import WarpCall  # noqa: E402


def _affine_call(scale: float) -> WarpCall:
    """out[i, j] = m[i] x[i, j] + scale · s (a 2-d array of vec3, a 1-d array of mat33, a
    scalar); each ``scale`` a kernel module of its own (a first launch of its own)."""
    _warp_types(torch.float32)  # Warp initialised quietly
    factor = wp.constant(scale)

    def kernel(
        m: wp.array(dtype=wp.mat33f),
        x: wp.array2d(dtype=wp.vec3f),
        s: float,
        out: wp.array2d(dtype=wp.vec3f),
    ):
        i, j = wp.tid()
        out[i, j] = wp.mul(m[i], x[i, j]) + wp.vec3f(s, s, s) * factor

    return WarpCall(wp.kernel(kernel, enable_backward=False, module="unique"))


@pytest.fixture(scope="module")
def affine():
    """out[i, j] = m[i] x[i, j] + s."""
    return _affine_call(1.0)


def _expected(m, x, s):
    return torch.einsum("bij,bkj->bki", m, x) + s


def test_warp_call_relaunches_on_new_tensors_shapes_and_scalars(affine):
    """Each call reads and writes the tensors it is given (the recorded launch's array
    descriptors and scalar are rewritten, the launch grid resized): a later call with other
    tensors, another batch size and another scalar is the kernel's result on those, and the
    first call's tensors are left alone."""
    g = torch.Generator().manual_seed(0)
    m1, x1 = torch.randn(3, 3, 3, generator=g), torch.randn(3, 5, 3, generator=g)
    out1 = torch.zeros(3, 5, 3)
    affine((3, 5), m1, x1, 0.5, out1)
    torch.testing.assert_close(out1, _expected(m1, x1, 0.5))
    first = out1.clone()
    m2, x2 = torch.randn(7, 3, 3, generator=g), torch.randn(7, 2, 3, generator=g)
    out2 = torch.zeros(7, 2, 3)
    affine((7, 2), m2, x2, -2.0, out2)
    torch.testing.assert_close(out2, _expected(m2, x2, -2.0))
    assert torch.equal(out1, first)
    # a view into a larger tensor (an offset data pointer) is an array of its own
    big = torch.zeros(10, 2, 3)
    affine((7, 2), m2, x2, -2.0, big[3:])
    assert torch.equal(big[3:], out2) and not big[:3].any()


def test_warp_call_falls_back_to_from_torch_with_its_checks(affine):
    """A tensor that is not a contiguous array of the element type goes through from_torch:
    a strided view gives the same numbers; a float64 tensor for a float32 array is refused;
    a tensor that requires grad gets no .grad attached (from_torch's default would)."""
    g = torch.Generator().manual_seed(1)
    m = torch.randn(2, 3, 3, generator=g)
    wide = torch.randn(2, 8, 3, generator=g)
    x = wide[:, ::2]  # (2, 4, 3), every other vertex: not contiguous
    assert not x.is_contiguous()
    out = torch.zeros(2, 4, 3)
    affine((2, 4), m, x, 1.0, out)
    torch.testing.assert_close(out, _expected(m, x, 1.0))
    with pytest.raises(RuntimeError):
        affine((2, 4), m.double(), x.contiguous(), 1.0, out)
    with pytest.raises(TypeError, match="takes 4 arguments, got 3"):
        affine((2, 4), m, x, out)
    leaf = m.clone().requires_grad_(True)
    with torch.no_grad():
        affine((2, 4), leaf, x.contiguous(), 1.0, out)
    assert leaf.grad is None


def test_warp_call_reads_and_writes_through_strides(affine):
    """Arrays that are views with their own row strides (every other row; the columns of a
    wider matrix, e.g. the vertex part of a skeleton-and-vertex product) are read and written
    in place, without a copy, first launch and relaunch alike."""
    g = torch.Generator().manual_seed(3)
    m = torch.randn(4, 3, 3, generator=g)
    wide = torch.randn(4, 7 + 5 * 3, generator=g)
    x = wide[:, 7:].view(4, 5, 3)  # rows 22 floats apart
    assert not x.is_contiguous()
    out_rows = torch.zeros(8, 5, 3)
    out = out_rows[::2]  # every other row
    for _ in range(2):  # the recorded launch, then a relaunch
        out_rows.zero_()
        affine((4, 5), m, x, 0.25, out)
        torch.testing.assert_close(out, _expected(m, x, 0.25))
        assert not out_rows[1::2].any()


def test_warp_call_threads_keep_their_own_launches():
    """Several threads launching a new kernel at once on their own tensors each get their own
    results: the first launches (which load the kernel's module) take turns, and each thread
    records and re-aims its own launch."""
    affine = _affine_call(2.0)  # not the fixture's module
    g = torch.Generator().manual_seed(2)
    jobs = [
        (torch.randn(4, 3, 3, generator=g), torch.randn(4, 300, 3, generator=g), float(k))
        for k in range(4)
    ]
    outs = [torch.zeros(4, 300, 3) for _ in jobs]

    def work(k: int) -> None:
        for _ in range(50):
            affine((4, 300), *jobs[k][:2], jobs[k][2], outs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (m, x, s), out in zip(jobs, outs):
        torch.testing.assert_close(out, _expected(m, x, 2 * s))


def test_run_jobs_runs_all_then_raises_and_survives_a_fork():
    """run_jobs returns when every job is done, raises a job's exception only after the others
    finished, and works in a forked child (the parent's pool threads do not exist there: the
    child makes its own pool instead of queueing jobs nobody runs)."""
    import time

    from key2mesh.body.warp_call import run_jobs, split

    assert split(10, 3) == [(0, 3), (3, 6), (6, 10)] and split(1, 4) == [(0, 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        done = []

        def slow(k):
            time.sleep(0.05)
            done.append(k)

        def boom():
            raise ValueError("job failed")

        run_jobs([lambda k=k: slow(k) for k in range(4)])
        assert sorted(done) == [0, 1, 2, 3]
        done.clear()
        with pytest.raises(ValueError, match="job failed"):
            run_jobs([boom, lambda: slow(9)])
        assert done == [9]
        _in_forked_child(_jobs_in_child, "run_jobs hung in a forked child")
    finally:
        torch.set_num_threads(threads)


def _jobs_in_child() -> None:
    from key2mesh.body.warp_call import run_jobs

    torch.set_num_threads(2)
    out = []
    run_jobs([lambda: out.append(1), lambda: out.append(2)])
    assert sorted(out) == [1, 2]


def test_warp_call_bind_fixes_arguments(affine):
    """bind() fixes arguments once (a body's constant tables, a scalar): the call then takes
    the others only, and two bound calls of one kernel keep their own values; a bad index or a
    fixed tensor of the wrong dtype is refused."""
    g = torch.Generator().manual_seed(4)
    m = torch.randn(2, 3, 3, generator=g)
    x = torch.randn(2, 3, 3, generator=g)
    half = affine.bind({0: m, 2: 0.5})
    three = affine.bind({0: m, 2: 3.0})
    out1, out2 = torch.zeros(2, 3, 3), torch.zeros(2, 3, 3)
    for _ in range(2):  # recorded, then relaunched
        half((2, 3), x, out1)
        three((2, 3), x, out2)
        torch.testing.assert_close(out1, _expected(m, x, 0.5))
        torch.testing.assert_close(out2, _expected(m, x, 3.0))
    with pytest.raises(TypeError, match="takes 2 arguments, got 3"):
        half((2, 3), m, x, out1)
    with pytest.raises(IndexError, match="has 4 arguments"):
        affine.bind({7: 1.0})
    wrong = affine.bind({0: m.double(), 2: 1.0})
    with pytest.raises(RuntimeError):
        wrong((2, 3), x, out1)


def test_run_jobs_survives_another_thread_growing_the_pool(monkeypatch):
    """A thread asking for more pool threads (a larger torch thread count) replaces the shared
    pool and shuts the old one down; a thread submitting its jobs at that moment still gets
    them run (before: 'cannot schedule new futures after shutdown' when the other thread
    came between finding the pool and submitting to it)."""
    from concurrent.futures import ThreadPoolExecutor

    from key2mesh.body import warp_call

    errors, others = [], []

    def grow() -> None:  # another thread's run_jobs with one more torch thread
        try:
            torch.set_num_threads(3)
            warp_call.run_jobs([lambda: None, lambda: None])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    class Pool(ThreadPoolExecutor):
        made: list = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            Pool.made.append(self)

        def submit(self, fn, /, *args, **kwargs):
            if not others:  # the first submission: the other thread comes in now
                others.append(threading.Thread(target=grow))
                others[0].start()
                others[0].join(timeout=1.0)  # it finishes, or waits for this submission
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(warp_call, "ThreadPoolExecutor", Pool)
    monkeypatch.setattr(warp_call, "_POOL", None)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        done = []
        warp_call.run_jobs([lambda k=k: done.append(k) for k in range(4)])
        others[0].join(timeout=10)
        assert sorted(done) == [0, 1, 2, 3]
        assert not errors and not others[0].is_alive()
        assert len(Pool.made) == 2  # the pool was replaced by the other thread's
    finally:
        torch.set_num_threads(threads)
        for pool in Pool.made:
            pool.shutdown()


def test_warp_call_relaunch_repacks_vector_and_half_arguments():
    """A vector (or matrix, struct) or half-float argument is re-packed by Warp at each
    relaunch: a later call's value is used (before: a vector kept the first call's value
    silently, and a half float was written as its raw bits or refused)."""
    _warp_types(torch.float32)

    def kernel(
        x: wp.array(dtype=wp.vec3f),
        s: wp.vec3f,
        h: wp.float16,
        k: int,
        out: wp.array(dtype=wp.vec3f),
    ):
        i = wp.tid()
        out[i] = x[i] + s * (wp.float32(h) * float(k))

    call = WarpCall(wp.kernel(kernel, enable_backward=False, module="unique"))
    x, out = torch.ones(3, 3), torch.zeros(3, 3)
    for s, h, k in (((1.0, 2.0, 3.0), 0.5, 1), ((5.0, -1.0, 0.0), 1, 3), ((0.0, 1.0, 0.0), 2.0, 2)):
        call(3, x, wp.vec3f(*s), h, k, out)  # recorded, then relaunched twice
        expected = 1.0 + torch.tensor(s) * (h * k)
        assert torch.equal(out, expected.expand(3, 3)), (s, h, k, out[0])


def test_warp_call_reads_broadcast_rows_in_place(affine):
    """Rows broadcast by ``expand`` (stride 0: one shape's rest model shared by a batch) are
    described in place, first launch and relaunch alike, not sent through from_torch and
    wp.launch (~3x the cost of the anny body's kinematics at batch 8 before, and under the
    first-launch lock); the numbers are the copied tensor's."""
    call = _affine_call(-1.0)  # a module of its own: out = m x - s

    def refused(*args):
        raise AssertionError("went through from_torch")

    call._launch_checked = refused
    g = torch.Generator().manual_seed(5)
    for _ in range(2):  # recorded, then relaunched
        m = torch.randn(1, 3, 3, generator=g).expand(6, 3, 3)
        x = torch.randn(1, 4, 3, generator=g).expand(6, 4, 3)
        out = torch.zeros(6, 4, 3)
        call((6, 4), m, x, 0.5, out)
        torch.testing.assert_close(out, _expected(m.contiguous(), x.contiguous(), -0.5))


def test_a_fork_while_another_thread_holds_a_launch_lock_does_not_hang_the_child():
    """A child forked while another thread of the parent holds the first-launch lock gets
    fresh locks: its own first launch goes through (no thread of the child would ever
    release the parent's lock)."""

    from key2mesh.body import warp_call

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with warp_call._RECORD_LOCK:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        _in_forked_child(
            _first_launch_in_child,
            "the child's first launch waited for a lock held by a parent thread",
        )
    finally:
        release.set()
        holder.join()


def _first_launch_in_child() -> None:
    _warp_types(torch.float32)

    def kernel(x: wp.array(dtype=wp.float32), out: wp.array(dtype=wp.float32), s: float):
        i = wp.tid()
        out[i] = x[i] * s + 3.0  # a module of its own: a first launch

    call = WarpCall(wp.kernel(kernel, enable_backward=False, module="unique"))
    out = torch.zeros(4)
    call(4, torch.ones(4), out, 2.0)
    assert torch.equal(out, torch.full((4,), 5.0))


def _in_forked_child(target, hang: str) -> None:
    """``target()`` in a forked child: it must exit 0 within 30 s (``hang``: the failure)."""
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(target=target)
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail(hang)
    assert child.exitcode == 0

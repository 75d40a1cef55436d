"""key2mesh.allocator: glibc's mmap and trim thresholds raised together, or not at all."""

from __future__ import annotations

import sys

import pytest

from key2mesh import allocator


class _FakeLibc:
    """ctypes' view of a glibc whose mallopt accepts or refuses each parameter."""

    def __init__(self, refuse: set[int]):
        self.calls: list[tuple[int, int]] = []
        self.refuse = refuse

        def mallopt(param: int, value: int) -> int:
            self.calls.append((param, value))
            return 0 if param in self.refuse else 1

        self.mallopt = mallopt
        self.gnu_get_libc_version = lambda: b"2.36"


@pytest.fixture()
def fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.delenv(allocator.ENV, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")


def _use(monkeypatch, libc) -> None:
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)


def test_both_thresholds_are_raised_once(monkeypatch, fresh):
    libc = _FakeLibc(refuse=set())
    _use(monkeypatch, libc)
    assert allocator.keep_large_allocations() is True
    assert libc.calls == [
        (allocator.M_TRIM_THRESHOLD, allocator.TRIM_BYTES),
        (allocator.M_MMAP_THRESHOLD, allocator.MMAP_BYTES),
    ]
    assert allocator.keep_large_allocations() is True and len(libc.calls) == 2  # once


def test_a_refused_mmap_threshold_puts_the_trim_threshold_back(monkeypatch, fresh):
    """The trim threshold alone made large allocations slower: it is set back."""
    libc = _FakeLibc(refuse={allocator.M_MMAP_THRESHOLD})
    _use(monkeypatch, libc)
    assert allocator.keep_large_allocations() is False
    assert libc.calls[-1] == (allocator.M_TRIM_THRESHOLD, 128 * 1024)


def test_system_malloc_and_other_platforms_are_left_alone(monkeypatch, fresh):
    libc = _FakeLibc(refuse=set())
    _use(monkeypatch, libc)
    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator.keep_large_allocations() is False and not libc.calls
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.delenv(allocator.ENV)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_large_allocations() is False and not libc.calls
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(sys, "platform", "linux")
    del libc.gnu_get_libc_version  # musl: no glibc symbol
    assert allocator.keep_large_allocations() is False and not libc.calls

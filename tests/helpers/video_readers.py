"""Recording when key2mesh's video readers are released (their generator closed)."""

from __future__ import annotations


def record_reader_releases(monkeypatch) -> list[bool]:
    """Wrap ``key2mesh.media.video.iter_frames`` so that each reader appends True to the
    returned list when it is closed (finished, closed or collected)."""
    import key2mesh.media.video as video

    released: list[bool] = []
    real = video.iter_frames

    def tracked(*args, **kwargs):
        try:
            yield from real(*args, **kwargs)
        finally:
            released.append(True)

    monkeypatch.setattr(video, "iter_frames", tracked)
    return released

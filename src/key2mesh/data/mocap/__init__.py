"""MoCap sources producing :class:`MotionClip` objects (SMPL-convention rotations and/or joints).

``load_clips("amass", paths=...)``, ``load_clips("deepmimic")``, ``load_clips("holosoma")``;
each source module registers its loader on import (done lazily by :func:`load_report`).
"""

from key2mesh.data.mocap.clip import (
    LoadReport,
    MotionClip,
    load_clips,
    load_report,
    register_loader,
)

__all__ = ["LoadReport", "MotionClip", "load_clips", "load_report", "register_loader"]

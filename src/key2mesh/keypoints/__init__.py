"""Keypoint sets, conversions between them, and readers/writers of detector outputs."""

from key2mesh.keypoints.convert import conversion_matrix, convert_keypoints
from key2mesh.keypoints.sets import (
    KEYPOINT_SETS,
    canonical_set_name,
    flip_permutation,
    keypoint_names,
    num_keypoints,
)

__all__ = [
    "KEYPOINT_SETS",
    "canonical_set_name",
    "conversion_matrix",
    "convert_keypoints",
    "flip_permutation",
    "keypoint_names",
    "num_keypoints",
]

from key2mesh.keypoints.io import (  # noqa: E402
    Detections,
    PersonDetections,
    read_coco_json,
    read_detections,
    read_numpy,
    read_openpose_json,
    write_npz,
    write_openpose_json,
)

__all__ += [
    "Detections",
    "PersonDetections",
    "read_coco_json",
    "read_detections",
    "read_numpy",
    "read_openpose_json",
    "write_npz",
    "write_openpose_json",
]

"""glTF binary (.glb) export: the track's body mesh, skinned to the driven skeleton, with the
track's motion as an animation (joint rotations + root translation). glTF is y up, metres,
like the model's world frame; it plays in browsers (three.js, Babylon.js, <model-viewer>) and
imports into Blender.

The mesh is the body in its rest pose for the track's shape. Skin weights are the body model's
own: anny's per-bone weights with each bone the key2mesh rotations do not drive (pelvis.L,
upperleg02, spine05, neck02, ...) merged into its nearest driven ancestor (exact: an undriven
bone moves rigidly with it), the 4 largest kept per vertex (glTF's JOINTS_0 / WEIGHTS_0) and
renormalised; SMPL's weights likewise. Written by hand (JSON chunk + binary chunk): no extra
dependency.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from key2mesh.inference.motion_export.series import TrackSeries
from key2mesh.inference.motion_export.skeleton import Skeleton, body_skeleton
from key2mesh.safe_paths import atomic_write_bytes

INFLUENCES = 4
_FLOAT, _USHORT, _UINT = 5126, 5123, 5125


def joint_weights(model, skeleton: Skeleton) -> np.ndarray:
    """(V, J) skin weights of the mesh body's vertices on the skeleton's joints."""
    return model.mesh_body.joint_skin_weights(skeleton.smpl_index)


def _top_influences(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 4) joint indices and renormalised weights of the largest influences."""
    order = np.argsort(-weights, axis=1)[:, :INFLUENCES]
    w = np.take_along_axis(weights, order, axis=1)
    w = w / np.clip(w.sum(1, keepdims=True), 1e-12, None)
    return order.astype(np.uint16), w.astype(np.float32)


@torch.no_grad()
def _rest_mesh(model, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    body = model.mesh_body
    rot = torch.eye(3, dtype=body.dtype, device=body.device).expand(1, 24, 3, 3)
    s = torch.as_tensor(np.asarray(shape), dtype=body.dtype, device=body.device).reshape(1, -1)
    verts = body(rot, s).vertices[0].cpu().double().numpy()
    return verts, body.faces.cpu().numpy()


class _Buffer:
    """Accumulates binary data and its glTF bufferViews / accessors."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(
        self, array: np.ndarray, kind: str, ctype: int, target: int | None = None, minmax=False
    ) -> int:
        while len(self.data) % 4:
            self.data.append(0)
        raw = np.ascontiguousarray(array).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if target:
            view["target"] = target
        self.views.append(view)
        self.data += raw
        acc = {
            "bufferView": len(self.views) - 1,
            "componentType": ctype,
            "count": int(array.shape[0]),
            "type": kind,
        }
        if minmax:
            flat = array.reshape(array.shape[0], -1)
            acc["min"] = flat.min(0).tolist()
            acc["max"] = flat.max(0).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _add_track(model, series: TrackSeries, buf: _Buffer, doc: dict, color) -> None:
    """Append one track to ``doc``: its joint nodes (at the first sample's pose), skinned mesh
    node, material, skin and its channels in the one animation. Keys at video time
    (:attr:`TrackSeries.times`): before its first key a person stands in their first pose, after
    the last one holds the last pose (glTF clamps), so everybody is in the scene from t = 0; the
    tracked span is in the mesh node's ``extras`` (``tracked_s``: [first, last] seconds).

    People are not hidden (scaled to 0) outside their span: three.js computes a skinned mesh's
    culling sphere once, from the pose of its first render, so a person hidden then keeps a
    sphere of radius 0 (culled whenever that point leaves the view), and ``<model-viewer>``
    frames the scene without them (the sports2d ``_all.glb`` opened with one person of two)."""
    from scipy.spatial.transform import Rotation

    from key2mesh.inference.render import vertex_normals

    skeleton = body_skeleton(model, series.shape, series.body)
    verts, faces = _rest_mesh(model, series.shape)
    normals = vertex_normals(torch.from_numpy(verts), torch.from_numpy(faces).long()).numpy()
    joints_idx, weights = _top_influences(joint_weights(model, skeleton))
    pos_acc = buf.add(verts.astype(np.float32), "VEC3", _FLOAT, 34962, minmax=True)
    nrm_acc = buf.add(normals.astype(np.float32), "VEC3", _FLOAT, 34962)
    jnt_acc = buf.add(joints_idx, "VEC4", _USHORT, 34962)
    wgt_acc = buf.add(weights, "VEC4", _FLOAT, 34962)
    idx_acc = buf.add(faces.astype(np.uint32).reshape(-1), "SCALAR", _UINT, 34963)
    n = len(skeleton.names)
    ibm = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    ibm[:, :3, 3] = -skeleton.rest
    ibm_acc = buf.add(ibm.transpose(0, 2, 1).reshape(n, 16), "MAT4", _FLOAT)  # column-major
    rot = series.rotmats[:, skeleton.smpl_index]  # (T, n, 3, 3)
    quats = _continuous(
        Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_quat().reshape(len(series), n, 4)
    )
    root_k = int(np.flatnonzero(skeleton.parents < 0)[0])
    base, nodes = len(doc["nodes"]), doc["nodes"]
    for k in range(n):  # joints are nodes base..base+n-1, the mesh node base+n
        # the nodes' own transforms are the first sample's pose: viewers that frame or cull
        # the scene before playing it (<model-viewer>, three.js) see the person where they are
        at = series.root[0] if k == root_k and np.isfinite(series.root[0]).all() else None
        node = {
            "name": skeleton.names[k],
            "translation": (skeleton.offsets[k] if at is None else at).tolist(),
            "rotation": quats[0, k].tolist(),
        }
        kids = [base + c for c in range(n) if skeleton.parents[c] == k]
        if kids:
            node["children"] = kids
        nodes.append(node)
    root = base + root_k
    mesh, skin = len(doc["meshes"]), len(doc["skins"])
    first, last = float(series.times[0]), float(series.times[-1])
    nodes.append(
        {
            "name": f"body_track{series.track}",
            "mesh": mesh,
            "skin": skin,
            "extras": {"track": int(series.track), "tracked_s": [first, last]},
        }
    )
    doc["scenes"][0]["nodes"] += [root, base + n]
    doc["materials"].append(
        {
            "pbrMetallicRoughness": {
                "baseColorFactor": [*map(float, color), 1.0],
                "metallicFactor": 0.0,
                "roughnessFactor": 0.8,
            },
            "doubleSided": True,
        }
    )
    attributes = {"POSITION": pos_acc, "NORMAL": nrm_acc, "JOINTS_0": jnt_acc, "WEIGHTS_0": wgt_acc}
    doc["meshes"].append(
        {
            "name": f"{series.body}_track{series.track}",
            "primitives": [
                {"attributes": attributes, "indices": idx_acc, "material": mesh},
            ],
        }
    )
    doc["skins"].append(
        {"joints": list(range(base, base + n)), "inverseBindMatrices": ibm_acc, "skeleton": root}
    )
    samplers, channels = doc["animations"][0]["samplers"], doc["animations"][0]["channels"]
    t_acc = buf.add(series.times.astype(np.float32), "SCALAR", _FLOAT, minmax=True)
    for k in range(n):
        q_acc = buf.add(quats[:, k].astype(np.float32), "VEC4", _FLOAT)
        channels.append(
            {"sampler": len(samplers), "target": {"node": base + k, "path": "rotation"}}
        )
        samplers.append({"input": t_acc, "output": q_acc, "interpolation": "LINEAR"})
    tr_acc = buf.add(series.root.astype(np.float32), "VEC3", _FLOAT)
    channels.append({"sampler": len(samplers), "target": {"node": root, "path": "translation"}})
    samplers.append({"input": t_acc, "output": tr_acc, "interpolation": "LINEAR"})


def glb_bytes(model, series, colors=None, camera: dict | None = None, name: str = "") -> bytes:
    """The .glb file of one track or several (``series``: a TrackSeries or a list, on one clock:
    video time), one colour per track, ``camera``
    (:func:`~key2mesh.inference.world.camera_pose`): a perspective camera node where the video's
    camera stood (see module doc)."""
    many = series if isinstance(series, list | tuple) else [series]
    colors = colors or [(0.65, 0.74, 0.86)] * len(many)
    doc: dict = {
        "asset": {"version": "2.0", "generator": "key2mesh"},
        "scene": 0,
        "scenes": [{"nodes": []}],
        "nodes": [],
        "meshes": [],
        "materials": [],
        "skins": [],
        "animations": [{"name": name or f"track{many[0].track}", "samplers": [], "channels": []}],
    }
    buf = _Buffer()
    for s, color in zip(many, colors):
        _add_track(model, s, buf, doc, color)
    if camera is not None:
        doc["cameras"] = [
            {
                "name": "video_camera",
                "type": "perspective",
                "perspective": {
                    "yfov": camera["yfov_rad"],
                    "aspectRatio": camera["aspect_ratio"],
                    "znear": 0.05,
                    "zfar": 1000.0,
                },
            }
        ]
        doc["scenes"][0]["nodes"].append(len(doc["nodes"]))
        doc["nodes"].append(
            {
                "name": "video_camera",
                "camera": 0,
                "translation": list(map(float, camera["position"])),
                "rotation": list(map(float, camera["quaternion_xyzw"])),
            }
        )
    doc.update(accessors=buf.accessors, bufferViews=buf.views, buffers=[{"byteLength": 0}])
    while len(buf.data) % 4:
        buf.data.append(0)
    doc["buffers"][0]["byteLength"] = len(buf.data)
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(buf.data)
    return b"".join(
        [
            struct.pack("<III", 0x46546C67, 2, total),
            struct.pack("<II", len(js), 0x4E4F534A),
            js,
            struct.pack("<II", len(buf.data), 0x004E4942),
            bytes(buf.data),
        ]
    )


def write_glb(model, series, path: str | Path, camera: dict | None = None) -> Path:
    """Write one track, or several on one clock (a list), as a skinned, animated .glb
    (atomically), with the video camera when given; returns the path."""
    from key2mesh.inference.render import track_color

    many = series if isinstance(series, list | tuple) else [series]
    colors = [track_color(s.track) for s in many]
    name = "all_tracks" if isinstance(series, list | tuple) else ""
    return atomic_write_bytes(Path(path), glb_bytes(model, series, colors, camera, name))


def _continuous(quats: np.ndarray) -> np.ndarray:
    """(T, J, 4) quaternions with each key on the same side as the one before (q and -q are one
    rotation; scipy picks either): a player that blends components linearly instead of by the
    shortest slerp would otherwise spin a joint all the way round between two keys."""
    if len(quats) < 2:
        return quats
    flip = np.einsum("tjc,tjc->tj", quats[1:], quats[:-1]) < 0
    sign = np.cumprod(np.where(flip, -1.0, 1.0), axis=0)
    return np.concatenate([quats[:1], quats[1:] * sign[..., None]])

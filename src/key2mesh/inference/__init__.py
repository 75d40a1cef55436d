"""Inference: the predictor API, camera fitting, rendering, mesh files, exports and the demo
(detection and video I/O live in :mod:`key2mesh.media`).

Import the submodules directly (``key2mesh.inference.render`` ...); this package imports
nothing heavy so optional extras (MediaPipe, OpenCV) are only needed by the code that uses them.
"""

"""Inference helpers: the predictor API, 2D detection, camera fitting, rendering, video IO.

Import the submodules directly (``key2mesh.inference.render`` ...); this package imports
nothing heavy so optional extras (MediaPipe, OpenCV) are only needed by the code that uses them.
"""

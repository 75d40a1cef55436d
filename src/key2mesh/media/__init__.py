"""Media: the 2D detector (MediaPipe BlazePose, the ``[detect]`` extra) and image/video I/O.

Used by the demo (:mod:`key2mesh.inference.demo`) and by dataset builders
(:mod:`key2mesh.data.multiview`). Import the submodules directly; this package imports nothing
heavy so the optional extras are only needed by the code that uses them.
"""

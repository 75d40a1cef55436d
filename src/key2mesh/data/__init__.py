"""Training data: MoCap sources, pose/shape sampling, and on-the-fly 2D/3D pair synthesis."""

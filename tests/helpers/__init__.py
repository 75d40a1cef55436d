"""Test helpers (not collected as tests): the synthetic SMPL-format writer."""

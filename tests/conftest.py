"""Shared pytest setup: CPU only, small thread count, headless OpenGL chosen before any import."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")

"""Datasets, pixel samplers and the procedural FaceScape-format generator."""

"""Preprocessing: training-data preparation and wild-photo preparation."""

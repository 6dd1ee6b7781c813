"""Single-image fitting of a trained MoFaNeRF."""

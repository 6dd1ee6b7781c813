"""MoFaNeRF: morphable facial NeRF."""

"""Shared NeRF core: cameras, rays, encodings, samplers, volume rendering, renderer."""

"""NeRFBlendShape: expression-blended hash-grid head NeRF and its 2-D torso net."""

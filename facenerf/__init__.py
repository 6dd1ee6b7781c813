"""facenerf: facial neural radiance fields (MoFaNeRF, NeRFBlendShape) on one shared NeRF core.

Importing the package is cheap: submodules are imported where they are used.
"""

__version__ = "0.1.0"

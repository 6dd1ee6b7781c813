"""Headless OpenGL platform selection for pyrender.

PyOpenGL fixes its platform when it is first imported, from the ``PYOPENGL_PLATFORM``
environment variable. :func:`select_gl_platform` must therefore run before anything imports
``pyrender`` or ``OpenGL``. It keeps a platform the user set, and otherwise probes, each in a
short-lived subprocess, EGL (works without a GPU through Mesa's llvmpipe, and uses the GPU
where there is one) and then OSMesa (needs ``apt-get install -y libosmesa6``).

Run ``python -m facenerf.tools.gl_platform`` to print the platform that would be used.
"""

from __future__ import annotations

import os
import subprocess
import sys

from facenerf.errors import FaceNerfError

PLATFORMS = ("egl", "osmesa")
_PROBE = (
    "import pyrender, numpy as np\n"
    "r = pyrender.OffscreenRenderer(8, 8)\n"
    "s = pyrender.Scene(bg_color=[0, 0, 0, 0])\n"
    "s.add(pyrender.IntrinsicsCamera(8, 8, 4, 4), pose=np.eye(4))\n"
    "c, d = r.render(s, flags=pyrender.RenderFlags.FLAT)\n"
    "r.delete()\n"
    "assert c.shape == (8, 8, 3)\n"
)
_FIX = ("install Mesa's EGL (libegl1, libgl1-mesa-dri) or OSMesa (make osmesa, i.e. apt-get install -y libosmesa6), "
        "or set PYOPENGL_PLATFORM to a working platform")
OSMESA_MISSING = ("--gl osmesa: the OSMesa library is not installed; install it with `make osmesa` "
                  "(sudo apt-get install -y libosmesa6) or use --gl egl")


def osmesa_installed() -> bool:
    """Whether the OSMesa shared library can be found (Debian/Ubuntu package libosmesa6)."""
    import ctypes.util

    return ctypes.util.find_library("OSMesa") is not None


def probe_platform(name: str, timeout: float = 60.0) -> tuple[bool, str]:
    """Try an 8x8 offscreen render with platform ``name`` in a subprocess.

    Returns ``(works, last line of the error output)``.
    """
    env = dict(os.environ, PYOPENGL_PLATFORM=name)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"{name} probe timed out after {timeout:.0f} s"
    if done.returncode == 0:
        return True, ""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit status {done.returncode}"


def select_gl_platform(preferred: str | None = None) -> str:
    """Choose and export ``PYOPENGL_PLATFORM``; returns the platform name.

    Args:
        preferred: ``"egl"``, ``"osmesa"`` or None/``"auto"``. An explicit name is used as
            given (and checked); ``auto`` keeps an existing ``PYOPENGL_PLATFORM`` or probes
            EGL, then OSMesa.

    Raises:
        FaceNerfError: when no platform works, or when OpenGL was already imported with a
            different platform than the one requested.
    """
    current = os.environ.get("PYOPENGL_PLATFORM")
    wanted = None if preferred in (None, "", "auto") else preferred.lower()
    if wanted is not None and wanted not in PLATFORMS:
        raise FaceNerfError(f"unknown GL platform '{preferred}': use one of auto, {', '.join(PLATFORMS)}")
    if "OpenGL" in sys.modules:
        if current and (wanted is None or wanted == current):
            return current
        raise FaceNerfError("OpenGL was imported before the GL platform was chosen; call "
                            "select_gl_platform() before importing pyrender")
    if wanted is None and current:
        return current
    if wanted == "osmesa" and not osmesa_installed():
        raise FaceNerfError(OSMESA_MISSING)
    reasons = []
    for name in [wanted] if wanted else list(PLATFORMS):
        works, reason = probe_platform(name)
        if works:
            os.environ["PYOPENGL_PLATFORM"] = name
            return name
        reasons.append(f"{name}: {reason}")
    raise FaceNerfError(f"no headless OpenGL platform works ({'; '.join(reasons)}); {_FIX}")

"""From a talking-head video to a NeRFBlendShape dataset, with no downloaded weights.

Stages (each resumable, see :mod:`facenerf.preprocess.video.pipeline`): ``frames`` (ffmpeg at
25 fps), ``landmarks`` (dlib 68 points, carried or followed through detection misses,
smoothed), ``pose`` (PnP against the procedural head's 3D landmarks, one focal length for the clip), ``expressions``
(bounded non-negative fit of the procedural head's linear blendshape basis, or ``--expr_file``),
``masks`` (background plate, head / neck / torso masks), ``dataset`` (transforms and expression
files) and ``preview`` (an MP4 with landmarks, pose axes and the strongest coefficients).
``data_utils/process.py`` is the command line.
"""

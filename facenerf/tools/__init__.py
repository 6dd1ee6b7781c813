"""Small command-line tools, each run as ``python -m facenerf.tools.<tool>`` (``--help`` for options).

===================  ============================================================================
``core_demo``        train a tiny NeRF on a procedural scene on the CPU (held-out PSNR, orbit MP4)
``convert_checkpoint``  convert a MoFaNeRF checkpoint between the original ``.tar`` and facenerf ``.pt``
``checkpoint_info``  print what a checkpoint holds: model, step and its stored run config
``degraded_pairs``   degraded-vs-sharp RefineNet pairs from an image folder or procedural textures
``talking_head``     a synthetic talking-head video with its NeRFBlendShape dataset and ground truth
``video_evaluate``   a processed talking-head dataset against the synthetic ground truth
``contact_sheet``    tile one identity's 20 rendered expressions into a PNG
``sample_photo``     a public-domain portrait (scikit-image's astronaut) to try wild-photo preprocessing on
``gl_platform``      print the headless OpenGL platform pyrender will use (the Makefile's probe)
===================  ============================================================================

The synthetic FaceScape-format generator is ``python -m facenerf.data.synthetic``. Each tool
module is command layer: it parses options and calls one package function.
"""

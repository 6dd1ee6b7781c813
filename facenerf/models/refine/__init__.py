"""pix2pixHD-style RefineNet: restores detail in coarse NeRF renders.

- ``networks``: global generator, local enhancer, multi-scale PatchGAN discriminator.
- ``losses``: LSGAN, discriminator feature matching, optional VGG-19 perceptual loss.
- ``model``: :class:`~facenerf.models.refine.model.RefineModel` for the shared Trainer.
- ``training``: :func:`~facenerf.models.refine.training.train_refine` (used by trainingDataPreprocess/train.py).
- ``inference``: loading a trained generator and refining folders (trainingDataPreprocess/test.py).
"""

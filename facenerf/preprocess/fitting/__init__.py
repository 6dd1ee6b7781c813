"""Wild-photo preprocessing: detection, alignment, segmentation, relighting, pose."""

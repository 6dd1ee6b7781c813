"""pix2pixHD-style RefineNet."""

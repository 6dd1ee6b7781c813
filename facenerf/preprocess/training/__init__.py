"""FaceScape mesh alignment/clipping and multi-view rendering."""

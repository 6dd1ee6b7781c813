"""Models. Each subpackage holds one model family (field, networks, losses)."""

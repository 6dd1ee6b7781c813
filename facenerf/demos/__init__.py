"""Self-contained demos on built-in synthetic data."""

"""allcores: use every core from Python."""

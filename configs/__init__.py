"""The shipped configuration files (``configs/`` in the source tree)."""

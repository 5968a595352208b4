"""Dataset preparation binaries (see data/README.md)."""

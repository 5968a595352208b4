"""Tests of the data/ binaries."""

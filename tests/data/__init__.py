"""Tests of gpfl_tff.data."""

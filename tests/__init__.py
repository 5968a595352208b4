"""Tests of gpfl_tff."""

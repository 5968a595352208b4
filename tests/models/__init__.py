"""Tests of gpfl_tff.models."""

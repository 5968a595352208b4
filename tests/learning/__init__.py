"""Tests of gpfl_tff.learning."""

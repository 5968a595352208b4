"""Tests of gpfl_tff.evaluation."""

"""Tests of the experiment binaries, run as subprocesses."""

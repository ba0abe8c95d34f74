"""Tests of nerfsculpt.synthetic."""

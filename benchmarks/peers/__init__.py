"""Runners for other DNC implementations, each in its own environment."""

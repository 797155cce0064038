"""Figures: every function takes data or a model and returns a matplotlib Figure."""

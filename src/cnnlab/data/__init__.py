"""Datasets: file formats, sources, in-memory datasets, loaders and preprocessing."""

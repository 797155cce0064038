"""Measuring speed: training and inference throughput, latency, and this machine's peaks."""

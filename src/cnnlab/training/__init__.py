"""Training: losses, optimisers, schedules, metrics, the trainer and its run directory."""

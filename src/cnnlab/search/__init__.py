"""Hyperparameter search on Optuna: a space file of TrainConfig fields, one training run per
trial, a resumable SQLite study and its results table, best configuration and plots."""

"""The course's classic claims, each reproduced by one command: `cnnlab experiment NAME`.

Each experiment module defines an `EXPERIMENT` (its claim, its source, and a function
that runs it at a budget and returns what it measured); registry.py lists them.
"""

"""cnnlab: the classic convolutional networks, built as published, trained fast,
looked inside and put to use."""

from cnnlab.registry import create_model, get_spec, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "get_spec", "list_models"]

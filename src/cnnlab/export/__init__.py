"""Exporting a trained model for other runtimes: ONNX (onnxruntime, and any runtime that reads
ONNX) and TorchScript (C++ libtorch), with the model's metadata inside the file and a check
that the exported model computes what PyTorch computes."""

"""ONNX export with a dynamic batch axis, metadata in `metadata_props`, run by onnxruntime.

The graph comes from PyTorch's TorchScript-based exporter (`torch.onnx.export(...,
dynamo=False)`): it traces one forward pass in evaluation mode, needs neither onnxscript nor
torch.export, and folds what depends only on weights into constants (batch norm into the
convolutions, LeNet-5's C3 connection table into one dense kernel). torch 2.13 marks it
deprecated in favour of the torch.export-based exporter but keeps it, and it is the one that
exports every cnnlab family offline with the fewest dependencies; its deprecation, tracer and
constant-folding warnings are silenced here: the check (export/check.py) vouches for the file.
Only `forward` is traced, so GoogLeNet's auxiliary classifiers are not in the graph.

Opsets 11 to 20 (20 is the exporter's newest; before 11 LeNet-5's C3 and ResNet's option-A
shortcuts cannot be expressed); 17 by default, which older runtimes read too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.export.metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAME

MIN_OPSET, MAX_OPSET = 11, 20  # below 11: no index_put (LeNet-5's C3), no strided slices
DEFAULT_OPSET = 17
RUNTIME = "onnxruntime"


def validate_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise CnnlabError(f"opset {opset}: expected {MIN_OPSET} to {MAX_OPSET}")


def write_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    metadata: dict[str, Any],
    path: Path,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Export `model` (in eval mode) for inputs (N, *input_shape) to `path`, N dynamic."""
    import onnx  # here, not at the top: every cnnlab command imports the CLI modules

    validate_opset(opset)
    example = torch.zeros(2, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        try:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        except torch.onnx.errors.OnnxExporterError as e:
            first = str(e).strip().splitlines()[0].split("  [Caused by")[0]
            raise CnnlabError(f"cannot export to ONNX opset {opset}: {first}") from None
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    proto.doc_string = f"cnnlab {metadata['model']}: {metadata['output']}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    """The logits onnxruntime's CPU provider computes from the file at `path` for `x`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the threads PyTorch was given
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.detach().cpu().float().numpy()})
    return torch.from_numpy(logits)

"""`cnnlab serve CHECKPOINT`: a web page to draw or upload an image and watch the model read
it (prediction, every class's probability, the input it saw, each stage's feature maps,
the RBF distances of LeNet-5, Grad-CAM and saliency), and the JSON API behind it:
GET /healthz, GET /api/model, POST /api/predict and POST /api/explain (PNG or JPEG bytes
as the body, Content-Type image/png or image/jpeg, ?k= for the top-k).

Answers on 127.0.0.1 only unless --host says otherwise, and only to requests addressed
to it (Host header: DNS rebinding). Bodies over --max-body-mb get 413, images over
--max-pixels 400, before decoding.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import sys

import torch

from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.serve.app import create_app
from cnnlab.serve.image_bytes import MAX_PIXELS
from cnnlab.serve.request_body import MAX_BODY_BYTES
from cnnlab.serve.server import listen, serve, url

EXAMPLE = """examples:
  cnnlab serve runs/lenet5_1998 --port 8000        then open http://127.0.0.1:8000
  curl -s -H 'Content-Type: image/png' --data-binary @digit.png \\
      'http://127.0.0.1:8000/api/predict?k=3'"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a draw-a-digit web page and JSON API for a trained model",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name clients may address (a LAN name, a proxy); repeatable",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=MAX_BODY_BYTES / 2**20,
        help=f"largest request body in MiB (default {MAX_BODY_BYTES / 2**20:g})",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help=f"largest image, width x height (default {MAX_PIXELS})",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=run)


def _exposure(host: str) -> str:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return "loopback only; --host 0.0.0.0 to expose"
    return "exposed beyond this machine: anyone who can reach it can use the model"


def run(args: argparse.Namespace) -> int:
    if args.max_body_mb <= 0 or args.max_pixels < 1:
        raise CnnlabError(
            f"--max-body-mb {args.max_body_mb} --max-pixels {args.max_pixels}: expected "
            "positive limits"
        )
    if args.threads is not None:
        if args.threads < 1:
            raise CnnlabError(f"--threads {args.threads}: expected a positive number")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sock = listen(args.host, args.port)
    try:
        port = sock.getsockname()[1]
        app = create_app(
            args.checkpoint,
            host=args.host,
            port=port,
            allow_hosts=args.allow_host,
            max_body_bytes=int(args.max_body_mb * 2**20),
            max_pixels=args.max_pixels,
            device=device,
        )
        name = app.state.session.meta.model
        print(f"{name}: serving on {url(args.host, port)} ({_exposure(args.host)})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
            serve(app, sock, access_log=args.access_log)
    finally:
        sock.close()
    print("cnnlab serve: stopped", file=sys.stderr)
    return 0

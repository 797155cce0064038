"""Running the application under uvicorn on a socket bound beforehand.

Binding first gives the real port before the application is built (port 0 means any
free one, which the Host check then knows), and lets a bad address or a busy port be a
one-line error. `serving_in_thread` runs a whole server inside the calling process on a
free port, for tests and benchmarks.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from cnnlab.errors import CnnlabError
from cnnlab.serve.app import create_app

STARTUP_TIMEOUT_S = 30.0


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening (port 0: a free port)."""
    if not 0 <= port <= 65535:
        raise CnnlabError(f"port {port}: expected 0 (any free port) to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio: TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise CnnlabError(
            f"cannot listen on {host}:{port} ({err.strerror or err}): expected a free port "
            "on an address of this machine"
        ) from None
    return sock


def url(host: str, port: int) -> str:
    """http://host:port, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: ASGIApp, access_log: bool = False) -> uvicorn.Server:
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=access_log)
    return uvicorn.Server(config)


def serve(app: ASGIApp, sock: socket.socket, access_log: bool = False) -> None:
    """Answer requests on `sock` until Ctrl-C or SIGTERM."""
    make_server(app, access_log).run(sockets=[sock])


@contextmanager
def serving_in_thread(
    checkpoint: str | Path, host: str = "127.0.0.1", **options: Any
) -> Iterator[str]:
    """`cnnlab serve` for `checkpoint` on a free port in a background thread; yields its URL.

    `options` go to `create_app`. The server stops when the block ends.
    """
    sock = listen(host, 0)
    try:
        port = sock.getsockname()[1]
        server = make_server(create_app(checkpoint, host=host, port=port, **options))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.01)
        try:
            yield url(host, port)
        finally:
            server.should_exit = True
            thread.join(STARTUP_TIMEOUT_S)
    finally:
        sock.close()

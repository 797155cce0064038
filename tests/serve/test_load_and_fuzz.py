"""The server under load and fuzz (issue 9): the real `cnnlab serve` process on 127.0.0.1 takes
3,000 requests from 8 threads, a third of them malformed, and gives no 5xx, stays up, keeps
its memory bounded and answers every good request as a direct prediction does.

The good requests carry real MNIST test digits (PNG, white on black; JPEG, dark ink on light
paper) to /api/predict and /api/explain; each answer must name the class, and give the
probabilities, that `load_model_input` + the checkpoint's model give the same file in this
process (`cnnlab predict`'s way). The malformed ones (MALFORMED below) are random bytes,
truncated PNGs and JPEGs, huge declared dimensions, a decompression bomb, wrong content
types, other image formats, bodies over the limit (declared, and streamed in chunks),
foreign, missing and doubled Host headers, wrong methods and paths, bad ?k=, bytes that are
not HTTP and bad Content-Length headers; each must get the status its kind expects, the
application's refusals as JSON {"error": ...}. The plan is drawn from SEED, so a failure
names the request (its index and kind) and reproduces; the threads interleave freely.

Memory: the server's VmRSS (/proc/PID/status) after a warm-up, halfway and at the end; the
end may exceed the warm-up by at most RSS_GROWTH_BOUND_MIB, the second half may add at most
RSS_SECOND_HALF_BOUND_MIB (a leak would grow both halves alike). The server's log must hold
no traceback. Figures go to $CNNLAB_RELIABILITY_OUT/server_load_fuzz.json (a folder) when
it is set, for docs/reliability.md. About a minute on 2 busy cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.image_file import load_model_input
from cnnlab.data.mnist import load_mnist
from cnnlab.serve.image_bytes import MAX_PIXELS
from cnnlab.serve.request_body import MAX_BODY_BYTES

SEED = 9
REQUESTS = 3_000
MALFORMED_SHARE = 1 / 3
EXPLAIN_SHARE = 0.1
THREADS = 8
WARMUP = 300
DIGITS = 100
STREAM_CHUNK = 1 << 20  # a streamed body over the limit: MAX_BODY_BYTES // STREAM_CHUNK + 1 chunks
RSS_GROWTH_BOUND_MIB = 32.0
RSS_SECOND_HALF_BOUND_MIB = 8.0
PROBABILITY_TOLERANCE = 1e-4
RESET = "reset"  # the server closed the connection before the client read an answer
REPORT_ENV = "CNNLAB_RELIABILITY_OUT"
REPORT_NAME = "server_load_fuzz.json"
STAGES = ["c1", "s2", "c3", "s4", "c5"]


@dataclass(frozen=True)
class Probe:
    """One request of the plan and the statuses it may get."""

    kind: str
    expected: frozenset[int | str]
    method: str = "POST"
    path: str = "/api/predict"
    headers: tuple[tuple[str, str | bytes], ...] = ()
    body: bytes = b""
    raw: bytes | None = None  # sent as is over a socket of its own
    streamed: bool = False  # the body sent in chunks (Transfer-Encoding: chunked)
    image: int | None = None  # a good request: index into the good images
    k: int = 3


@dataclass
class Answer:
    status: int | str
    json: Any = None
    content_type: str = ""


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def memory_mib(self) -> dict[str, float]:
        """VmRSS and VmHWM (the peak) of the server process, in MiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
        return {name: round(int(value) / 1024, 1) for name, value in kib.items()}


@pytest.fixture(scope="module")
def server(
    lenet_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, start_server
) -> Iterator[Server]:
    """`cnnlab serve CHECKPOINT --port 0 --threads 1` as a process of its own."""
    log = tmp_path_factory.mktemp("load") / "server-stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with start_server(lenet_checkpoint, log, "--threads", "1", env=env) as (proc, url, _):
        yield Server(int(url.rsplit(":", 1)[1]), proc, log)


# ---- the images ------------------------------------------------------------------------------


def encode(pixels: np.ndarray | Image.Image, image_format: str, **options: Any) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def good_images(data_dir: Path) -> list[tuple[bytes, str]]:
    """DIGITS test digits drawn from SEED, each as a PNG (white on black, 28x28) and as a JPEG
    (dark ink on light paper, 84x84 RGB): (body, content type)."""
    _, test = load_mnist(data_dir, download=False)
    chosen = np.random.default_rng(SEED).choice(len(test.labels), DIGITS, replace=False)
    images = []
    for digit in test.images[np.sort(chosen), 0].numpy():
        images.append((encode(digit, "PNG"), "image/png"))
        paper = Image.fromarray(255 - digit).resize((84, 84), Image.Resampling.BICUBIC)
        images.append((encode(paper.convert("RGB"), "JPEG", quality=90), "image/jpeg"))
    return images


def direct_predictions(
    checkpoint: Path, images: list[tuple[bytes, str]], folder: Path
) -> list[torch.Tensor]:
    """Each image's probabilities as `cnnlab predict` computes them, from a file of its bytes."""
    model, meta = load_checkpoint(checkpoint)
    c, h, w = meta.image_shape
    out = []
    for i, (body, content_type) in enumerate(images):
        path = folder / f"{i}.{content_type.split('/')[1]}"
        path.write_bytes(body)
        x = meta.preprocessing(load_model_input(path, c, (h, w), meta.digits).unsqueeze(0))
        with torch.no_grad():
            out.append(model(x)[0].float().softmax(dim=0))
    return out


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels and holds none (IHDR, IEND)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header (SOF0) claiming width x height."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


@dataclass
class Material:
    """What the malformed requests are made of."""

    port: int
    pngs: list[bytes]
    jpegs: list[bytes]
    bomb: bytes
    other_formats: list[bytes]
    blanks: list[bytes]


def material(port: int, images: list[tuple[bytes, str]]) -> Material:
    digit = np.asarray(Image.open(io.BytesIO(images[0][0])))
    big = int(MAX_PIXELS**0.5) + 200  # a square just over the pixel limit, all black
    return Material(
        port=port,
        pngs=[body for body, kind in images if kind == "image/png"],
        jpegs=[body for body, kind in images if kind == "image/jpeg"],
        bomb=encode(Image.new("L", (big, big)), "PNG"),
        other_formats=[encode(digit, f) for f in ("GIF", "BMP", "TIFF", "ICO", "WEBP")],
        blanks=[
            encode(np.zeros((28, 28), np.uint8), "PNG"),
            encode(np.full((100, 100), 255, np.uint8), "PNG"),
            encode(np.full((1, 1), 128, np.uint8), "PNG"),
        ],
    )


# ---- the malformed requests ------------------------------------------------------------------


def _post(status: int | str, body: bytes, content_type: str | None = "image/png", **kw) -> Probe:
    """A POST to /api/predict (or kw's path) expecting `status`; the kind is set by `plan`."""
    headers = () if content_type is None else (("Content-Type", content_type),)
    return Probe("", frozenset({status}), headers=headers, body=body, **kw)


def _raw(m: Material, status: int, head: str, tail: bytes = b"") -> Probe:
    data = head.replace("{host}", f"127.0.0.1:{m.port}").encode("latin-1") + tail
    return Probe("", frozenset({status}), raw=data)


def _random_bytes(rng: random.Random, m: Material) -> Probe:
    body = bytes([rng.randrange(0x89)]) + rng.randbytes(rng.randint(0, 4095))  # no signature
    return _post(415, body, rng.choice(["image/png", "image/jpeg"]))


def _signature_then_garbage(rng: random.Random, m: Material) -> Probe:
    signature, ct = rng.choice(
        [(b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg")]
    )
    return _post(400, signature + rng.randbytes(rng.randint(0, 4096)), ct)


def _truncated(images: str):
    def make(rng: random.Random, m: Material) -> Probe:
        whole = rng.choice(getattr(m, images))
        cut = whole[: rng.randint(8, len(whole) // 2)]  # pixels missing, not only a trailer
        return _post(400, cut, "image/png" if images == "pngs" else "image/jpeg")

    return make


def _huge_dimensions(rng: random.Random, m: Material) -> Probe:
    if rng.random() < 0.5:
        width, height = rng.choice([(4097, 4097), (5000, 5000), (65535, 65535), (1, 2**31 - 1)])
        return _post(400, png_header_only(width, height))
    jpeg = jpeg_declaring(rng.choice(m.jpegs), rng.randint(4097, 65535), 65535)
    return _post(400, jpeg, "image/jpeg")


def _bomb(rng: random.Random, m: Material) -> Probe:
    return _post(400, m.bomb)


def _wrong_content_type(rng: random.Random, m: Material) -> Probe:
    ct = rng.choice(
        [
            "text/plain",
            "application/json",
            "application/octet-stream",
            "image/gif",
            "image/pngx",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "",
            None,
        ]
    )
    return _post(415, rng.choice(m.pngs), ct)


def _other_format(rng: random.Random, m: Material) -> Probe:
    return _post(415, rng.choice(m.other_formats), rng.choice(["image/png", "image/jpeg"]))


def _empty(rng: random.Random, m: Material) -> Probe:
    return _post(400, b"")


def _blank(rng: random.Random, m: Material) -> Probe:
    return _post(400, rng.choice(m.blanks))


def _over_limit_declared(rng: random.Random, m: Material) -> Probe:
    length = rng.choice([MAX_BODY_BYTES + 1, 10**9, 10**19])
    head = "POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
    return _raw(m, 413, f"{head}Content-Length: {length}\r\n\r\n", rng.randbytes(1024))


def _over_limit_streamed(rng: random.Random, m: Material) -> Probe:
    probe = _post(413, b"", streamed=True)
    return replace(probe, expected=frozenset({413, RESET}))


def _foreign_host(rng: random.Random, m: Material) -> Probe:
    port = m.port
    host = rng.choice(
        [
            f"attacker.example:{port}",
            "attacker.example",
            f"127.0.0.1:{port + 1}",
            f"localhost:{port}0",
            f"127.0.0.1.nip.io:{port}",
            f"[::1]:{port}x",
            b"127.0.0.1:\xb2",  # a non-ASCII digit for a port
        ]
    )
    method, path = rng.choice(
        [("GET", "/healthz"), ("GET", "/api/model"), ("POST", "/api/predict")]
    )
    headers = (("Host", host), ("Content-Type", "image/png"))
    return Probe("", frozenset({421}), method, path, headers, rng.choice(m.pngs))


def _host_missing_or_doubled(rng: random.Random, m: Material) -> Probe:
    get = "GET /api/model HTTP/1.1\r\n"
    head = rng.choice(
        [
            "GET /api/model HTTP/1.0\r\n\r\n",
            f"{get}Connection: close\r\n\r\n",
            f"{get}Host: {{host}}\r\nHost: {{host}}\r\nConnection: close\r\n\r\n",
            f"{get}Host: {{host}}\r\nHost: attacker.example\r\n\r\n",
        ]
    )
    return _raw(m, 400, head)


def _wrong_method(rng: random.Random, m: Material) -> Probe:
    method, path = rng.choice(
        [
            ("GET", "/api/predict"),
            ("PUT", "/api/predict"),
            ("DELETE", "/api/explain"),
            ("PATCH", "/api/predict"),
            ("OPTIONS", "/api/explain"),
            ("HEAD", "/api/predict"),
            ("TRACE", "/"),
            ("POST", "/healthz"),
            ("POST", "/api/model"),
            ("POST", "/"),
        ]
    )
    return replace(_post(405, rng.choice(m.pngs), path=path), method=method)


def _wrong_path(rng: random.Random, m: Material) -> Probe:
    path = rng.choice(
        [
            "/api/predictx",
            "/API/PREDICT",
            "/etc/passwd",
            "/api/../../etc/passwd",
            "/index.html",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/static/app.js",
            "/app.js%00",
            "/api/predict;x",
            "/" + "a" * rng.randint(100, 4000),
        ]
    )
    return _post(404, rng.choice(m.pngs), path=path)


def _bad_k(rng: random.Random, m: Material) -> Probe:
    k = rng.choice(["0", "-1", "abc", "1.5", "", "%C2%B2", "%D9%A3", "1e3", "0x10", "%203", "%00"])
    endpoint = rng.choice(["/api/predict", "/api/explain"])
    return _post(400, rng.choice(m.pngs), path=f"{endpoint}?k={k}")


def _not_http(rng: random.Random, m: Material) -> Probe:
    noise = bytes(b for b in rng.randbytes(rng.randint(1, 2000)) if b not in b"\r\n")
    start = rng.choice([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"\x00", b"\xff"])
    return Probe("", frozenset({400}), raw=start + noise + b"\r\n\r\n")


def _bad_content_length(rng: random.Random, m: Material) -> Probe:
    # h11 takes at most 20 digits, so 21 is a bad length, not a large one
    value = rng.choice(["abc", "-1", "1, 2", "\xb2", "0x10", "1 2", "+5", "1" + "0" * 20])
    head = "POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
    return _raw(m, 400, f"{head}Content-Length: {value}\r\nConnection: close\r\n\r\nxx")


MALFORMED = {  # kind: (maker, weight)
    "random bytes": (_random_bytes, 1.0),
    "PNG or JPEG signature, then garbage": (_signature_then_garbage, 1.0),
    "truncated PNG": (_truncated("pngs"), 1.0),
    "truncated JPEG": (_truncated("jpegs"), 1.0),
    "huge declared dimensions (PNG, JPEG)": (_huge_dimensions, 1.0),
    "decompression bomb (a PNG just over the pixel limit)": (_bomb, 0.5),
    "wrong Content-Type": (_wrong_content_type, 1.0),
    "GIF, BMP, TIFF, ICO or WebP": (_other_format, 1.0),
    "empty body": (_empty, 0.5),
    "no digit in the image": (_blank, 0.5),
    "body over the limit, declared": (_over_limit_declared, 1.0),
    "body over the limit, streamed in chunks": (_over_limit_streamed, 0.25),
    "foreign Host": (_foreign_host, 1.0),
    "Host header missing or doubled": (_host_missing_or_doubled, 1.0),
    "wrong method": (_wrong_method, 1.0),
    "wrong path": (_wrong_path, 1.0),
    "bad ?k=": (_bad_k, 1.0),
    "bytes that are not HTTP": (_not_http, 1.0),
    "bad Content-Length": (_bad_content_length, 1.0),
}


def plan(m: Material, images: int) -> list[Probe]:
    """REQUESTS probes from SEED: a MALFORMED_SHARE of them malformed, the rest good."""
    rng = random.Random(SEED)
    malformed = set(rng.sample(range(REQUESTS), round(REQUESTS * MALFORMED_SHARE)))
    kinds = list(MALFORMED)
    weights = [weight for _, weight in MALFORMED.values()]
    probes = []
    for i in range(REQUESTS):
        if i in malformed:
            kind = rng.choices(kinds, weights)[0]
            probes.append(replace(MALFORMED[kind][0](rng, m), kind=kind))
            continue
        explain = rng.random() < EXPLAIN_SHARE
        k, image = rng.randint(1, 12), rng.randrange(images)
        endpoint = "/api/explain" if explain else "/api/predict"
        probes.append(
            Probe(
                "good, explain" if explain else "good, predict",
                frozenset({200}),
                path=f"{endpoint}?k={k}",
                image=image,
                k=k,
            )
        )
    return probes


# ---- sending ---------------------------------------------------------------------------------


def exchange_raw(port: int, data: bytes, timeout: float = 60.0) -> Answer:
    """Send `data` over a new connection and read the one response (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        received = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            received += part
    if not received.startswith(b"HTTP/1."):
        return Answer(RESET)
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    answer = Answer(int(lines[0].split()[1]), content_type=headers.get("content-type", ""))
    if answer.content_type == "application/json":
        answer.json = json.loads(body[: int(headers["content-length"])])
    return answer


def _over_limit_chunks() -> Iterator[bytes]:
    chunk = b"\x89PNG\r\n\x1a\n" + bytes(STREAM_CHUNK - 8)
    for _ in range(MAX_BODY_BYTES // STREAM_CHUNK + 1):
        yield chunk


def send(probe: Probe, client: httpx2.Client, port: int, images: list[tuple[bytes, str]]) -> Answer:
    if probe.raw is not None:
        return exchange_raw(port, probe.raw)
    headers = list(probe.headers)
    body: Any = probe.body
    if probe.image is not None:
        body, content_type = images[probe.image]
        headers.append(("Content-Type", content_type))
    elif probe.streamed:
        body = _over_limit_chunks()
    try:
        r = client.request(probe.method, probe.path, content=body, headers=headers)
    except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError):
        if probe.streamed:
            return Answer(RESET)
        raise
    content_type = r.headers.get("content-type", "")
    answer = Answer(r.status_code, content_type=content_type)
    if content_type == "application/json" and r.content:  # a HEAD answer has no body
        answer.json = r.json()
    return answer


def problem(probe: Probe, answer: Answer, direct: list[torch.Tensor]) -> str | None:
    """What is wrong with `answer` to `probe`; None when it is as it must be."""
    if answer.status not in probe.expected:
        error = (answer.json or {}).get("error", "") if isinstance(answer.json, dict) else ""
        return (
            f"status {answer.status} {error[:200]!r}, expected {sorted(map(str, probe.expected))}"
        )
    if probe.image is None:
        from_app = probe.raw is None and probe.method != "HEAD" and answer.status != RESET
        if from_app and not (isinstance(answer.json, dict) and answer.json.get("error")):
            return f"status {answer.status} without a JSON error ({answer.content_type})"
        return None
    got, want = answer.json, direct[probe.image]
    if got["index"] != int(want.argmax()):
        return f"class {got['index']}, a direct prediction says {int(want.argmax())}"
    gap = float((torch.tensor(got["probabilities"]) - want).abs().max())
    if gap > PROBABILITY_TOLERANCE:
        return f"probabilities differ from a direct prediction's by {gap:.2e}"
    if len(got["top"]) != min(probe.k, len(want)):
        return f"{len(got['top'])} classes in top for k={probe.k}"
    if probe.path.startswith("/api/explain") and [s["name"] for s in got["stages"]] != STAGES:
        return f"stages {[s['name'] for s in got['stages']]}, expected {STAGES}"
    return None


def _server_tracebacks(log: Path, start: int) -> list[str]:
    text = log.read_text(errors="replace")[start:]
    return [line for line in text.splitlines() if "Traceback" in line or line.startswith("ERROR")]


# ---- the test --------------------------------------------------------------------------------


@pytest.mark.slow
def test_3000_requests_from_8_threads(
    server: Server, lenet_checkpoint: Path, mnist_data_dir: Path, tmp_path: Path
):
    started = time.monotonic()
    images = good_images(mnist_data_dir)
    direct = direct_predictions(lenet_checkpoint, images, tmp_path)
    probes = plan(material(server.port, images), len(images))
    log_start = len(server.log.read_text(errors="replace"))
    local, clients = threading.local(), []

    def run(i: int) -> tuple[int, Answer]:
        if not hasattr(local, "client"):
            local.client = httpx2.Client(base_url=server.url, timeout=60.0)
            clients.append(local.client)
        return i, send(probes[i], local.client, server.port, images)

    answers: dict[int, Answer] = {}
    memory = {}
    half = WARMUP + (REQUESTS - WARMUP) // 2
    sending = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        for name, (a, b) in {
            "after_warmup": (0, WARMUP),
            "halfway": (WARMUP, half),
            "end": (half, REQUESTS),
        }.items():
            answers.update(pool.map(run, range(a, b)))
            memory[name] = server.memory_mib()["VmRSS"]
    sending_s = time.monotonic() - sending
    for client in clients:
        client.close()
    memory["peak"] = server.memory_mib()["VmHWM"]
    alive = server.proc.poll() is None
    health = httpx2.get(f"{server.url}/healthz", timeout=30) if alive else None
    time.sleep(0.2)  # let the server's log catch up with its last answers
    tracebacks = _server_tracebacks(server.log, log_start)

    problems = {
        i: found for i in range(REQUESTS) if (found := problem(probes[i], answers[i], direct))
    }
    good = [i for i in range(REQUESTS) if probes[i].image is not None]
    by_kind: dict[str, dict[str, Any]] = {}
    for i, probe in enumerate(probes):
        entry = by_kind.setdefault(
            probe.kind,
            {
                "sent": 0,
                "as_expected": 0,
                "expected": sorted(map(str, probe.expected)),
                "got": Counter(),
            },
        )
        entry["sent"] += 1
        entry["as_expected"] += i not in problems
        entry["got"][str(answers[i].status)] += 1
    statuses = Counter(str(a.status) for a in answers.values())
    growth = memory["end"] - memory["after_warmup"]
    second_half = memory["end"] - memory["halfway"]
    record = {
        "test": "tests/serve/test_load_and_fuzz.py::test_3000_requests_from_8_threads",
        "command": "OMP_NUM_THREADS=1 cnnlab serve CHECKPOINT --port 0 --threads 1",
        "checkpoint": "lenet5_1998 (LeNet-5) after one pass over 6,000 MNIST digits "
        "(tests/serve/conftest.py)",
        "seed": SEED,
        "threads": THREADS,
        "requests": REQUESTS,
        "malformed": REQUESTS - len(good),
        "malformed_answered_as_expected": sum(
            i not in problems for i in range(REQUESTS) if probes[i].image is None
        ),
        "good": len(good),
        "good_explain": sum(probes[i].path.startswith("/api/explain") for i in good),
        "good_answered_correctly": sum(i not in problems for i in good),
        "status_counts": dict(sorted(statuses.items())),
        "server_errors_5xx": sum(
            n for status, n in statuses.items() if status.isdigit() and int(status) >= 500
        ),
        "server_alive_after": alive,
        "healthz_after": None if health is None else health.status_code,
        "tracebacks_in_server_log": len(tracebacks),
        "rss_mib": memory,
        "rss_growth_mib": round(growth, 1),
        "rss_growth_bound_mib": RSS_GROWTH_BOUND_MIB,
        "rss_growth_second_half_mib": round(second_half, 1),
        "rss_second_half_bound_mib": RSS_SECOND_HALF_BOUND_MIB,
        "sending_s": round(sending_s, 1),
        "requests_per_s": round(REQUESTS / sending_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "by_kind": {
            kind: {**entry, "got": dict(sorted(entry["got"].items()))}
            for kind, entry in sorted(by_kind.items())
        },
        "problems": [
            {"index": i, "kind": probes[i].kind, "path": probes[i].path, "problem": found}
            for i, found in list(problems.items())[:50]
        ],
    }
    folder = os.environ.get(REPORT_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / REPORT_NAME).write_text(json.dumps(record, indent=1) + "\n")

    assert alive and health is not None and health.json()["status"] == "ok"
    assert record["server_errors_5xx"] == 0, statuses
    assert not problems, f"{len(problems)} wrong answers (seed {SEED}): {record['problems'][:10]}"
    assert not tracebacks, tracebacks[:20]
    assert growth < RSS_GROWTH_BOUND_MIB, memory
    assert second_half < RSS_SECOND_HALF_BOUND_MIB, memory


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param("hang-up", id="the client hangs up mid-body"),
        pytest.param("bad-chunk", id="a chunk size that is not hexadecimal"),
    ],
)
def test_a_body_cut_short_is_refused_without_a_logged_exception(server: Server, cut: str):
    log_start = len(server.log.read_text(errors="replace"))
    host = f"127.0.0.1:{server.port}"
    head = f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        if cut == "hang-up":
            sock.sendall(f"{head}Content-Length: 5000\r\n\r\n".encode() + b"\x89PNG\r\n\x1a\n" * 10)
            sock.shutdown(socket.SHUT_WR)
        else:
            sock.sendall(
                f"{head}Transfer-Encoding: chunked\r\n\r\n8\r\n".encode()
                + b"\x89PNG\r\n\x1a\nzz\r\n"
            )
        while sock.recv(65536):
            pass
    assert httpx2.get(f"{server.url}/healthz", timeout=30).status_code == 200
    time.sleep(0.5)  # the log line, if any, follows the answer
    assert _server_tracebacks(server.log, log_start) == []

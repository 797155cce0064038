"""`cnnlab serve`'s JSON API: every endpoint on a trained LeNet-5 and a colour model, the
bad inputs of issues 8 and 9 (too large, too many pixels, not PNG or JPEG, truncated,
empty, foreign Host), and concurrent requests to a real server."""

from __future__ import annotations

import base64
import io
import socket
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx2
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from starlette.testclient import TestClient

from cnnlab.checkpoint import CheckpointMeta, save_checkpoint
from cnnlab.cli.main import main
from cnnlab.data.image_file import to_mnist_digit
from cnnlab.data.preprocessing import CIFAR10
from cnnlab.registry import create_model
from cnnlab.serve.app import create_app
from cnnlab.serve.host_check import HostCheck, split_host
from cnnlab.serve.server import serving_in_thread
from cnnlab.viz.feature_maps import feature_maps
from cnnlab.viz.overlay import to_display

BASE = "http://127.0.0.1:8000"
PNG = {"Content-Type": "image/png"}
COLOUR_CLASSES = ["red panda", "ship", "été", "x"]


def encode(pixels: np.ndarray, image_format: str = "PNG", **options) -> bytes:
    """A uint8 (H, W) or (H, W, 3) array as the bytes of an image file."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def decode(data_url: str) -> Image.Image:
    """A 'data:image/png;base64,...' URL as a loaded image."""
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :])), formats=["PNG"])
    image.load()
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels and holds none (IHDR, IEND)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data))
        return struct.pack(">I", len(data)) + tag + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def lenet_app(lenet_checkpoint):
    return create_app(lenet_checkpoint, host="127.0.0.1", port=8000)


@pytest.fixture(scope="module")
def client(lenet_app):
    with TestClient(lenet_app, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def colour_client(tmp_path_factory):
    """An untrained ResNet-20 for colour images with class names of its own."""
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=len(COLOUR_CLASSES), in_chans=3)
    meta = CheckpointMeta(
        model="resnet20",
        num_classes=len(COLOUR_CLASSES),
        in_chans=3,
        preprocessing=CIFAR10,
        classes=COLOUR_CLASSES,
        image_shape=(3, 32, 32),
        dataset="pictures",
    )
    path = tmp_path_factory.mktemp("serve") / "colour.safetensors"
    save_checkpoint(path, model.eval(), meta)
    with TestClient(create_app(path, port=8000), base_url=BASE) as c:
        yield c


def test_healthz_and_model_describe_the_checkpoint(client):
    assert client.get("/healthz").json() == {"status": "ok", "model": "lenet5_1998"}
    model = client.get("/api/model").json()
    assert model["name"] == "lenet5_1998" and model["classes"] == [str(i) for i in range(10)]
    assert model["input_size"] == [1, 32, 32] and model["image_size"] == [1, 28, 28]
    assert model["channels"] == 1 and model["digits"] is True and model["output"] == "rbf"
    assert model["stages"] == ["c1", "s2", "c3", "s4", "c5"] and model["dataset"] == "mnist"


def test_predict_reads_real_mnist_digits(client, mnist_test_digits):
    images, labels = mnist_test_digits
    correct = 0
    for pixels, label in zip(images, labels):
        r = client.post("/api/predict?k=3", content=encode(pixels), headers=PNG)
        assert r.status_code == 200, r.text
        answer = r.json()
        probs = answer["probabilities"]
        assert len(probs) == 10 and sum(probs) == pytest.approx(1.0, abs=1e-5)
        top = answer["top"]
        assert [t["probability"] for t in top] == sorted(probs, reverse=True)[:3]
        assert answer["class"] == top[0]["class"] == str(answer["index"])
        correct += answer["index"] == int(label)
    assert correct >= 36  # of 40


def test_predict_shows_the_padded_input_the_model_saw(client, lenet_app, mnist_test_digits):
    digit = mnist_test_digits[0][0]
    seen = decode(
        client.post("/api/predict", content=encode(digit), headers=PNG).json()["model_input"]
    )
    meta = lenet_app.state.session.meta
    x = meta.preprocessing(to_mnist_digit(Image.fromarray(digit)).unsqueeze(0))
    expected = np.rint(to_display(x[0], meta.preprocessing)[0].numpy() * 255)
    assert seen.mode == "L" and seen.size == (32, 32)
    assert np.abs(np.asarray(seen, dtype=float) - expected).max() <= 1
    assert np.asarray(seen)[:2].max() == 0  # the 28 -> 32 padding is background


def test_jpeg_and_dark_ink_on_light_paper_read_alike(client, mnist_test_digits):
    images, _ = mnist_test_digits
    for pixels in images[:6]:
        white_on_black = client.post("/api/predict", content=encode(pixels), headers=PNG).json()
        paper = np.asarray(Image.fromarray(255 - pixels).resize((140, 140), Image.BICUBIC))
        drawn = client.post(
            "/api/predict",
            content=encode(np.stack([paper] * 3, axis=-1), "JPEG", quality=90),
            headers={"Content-Type": "image/jpeg"},
        )
        assert drawn.status_code == 200 and drawn.json()["index"] == white_on_black["index"]


@pytest.mark.parametrize(("k", "expected"), [("1", 1), ("10", 10), ("500", 10)])
def test_k_chooses_how_many_classes_come_back(client, mnist_test_digits, k, expected):
    r = client.post(f"/api/predict?k={k}", content=encode(mnist_test_digits[0][1]), headers=PNG)
    assert len(r.json()["top"]) == expected


def test_explain_gives_every_stage_the_rbf_distances_and_overlays(
    client, lenet_app, mnist_test_digits
):
    digit = mnist_test_digits[0][3]
    answer = client.post("/api/explain", content=encode(digit), headers=PNG).json()
    predicted = client.post("/api/predict", content=encode(digit), headers=PNG).json()
    assert answer["index"] == predicted["index"]
    assert answer["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-6)
    stages = {s["name"]: s for s in answer["stages"]}
    assert list(stages) == ["c1", "s2", "c3", "s4", "c5"]
    shapes = {"c1": [6, 28, 28], "s2": [6, 14, 14], "c3": [16, 10, 10], "s4": [16, 5, 5]}
    for name, shape in shapes.items():
        stage = stages[name]
        assert stage["kind"] == "maps" and stage["shape"] == shape
        c, h, w = shape
        mosaic = decode(stage["image"])
        columns, rows = min(c, 8), -(-c // 8)
        assert (stage["columns"], stage["rows"], stage["shown"]) == (columns, rows, c)
        assert mosaic.mode == "LA" and mosaic.size == (columns * (w + 1) + 1, rows * (h + 1) + 1)
    assert stages["c5"]["kind"] == "vector" and len(stages["c5"]["values"]) == 120
    # C1's first map, as viz.feature_maps computes it, scaled to its own range
    session = lenet_app.state.session
    x = session.meta.preprocessing(to_mnist_digit(Image.fromarray(digit)).unsqueeze(0))
    c1 = feature_maps(session.model, x)["c1"][0].numpy()
    scaled = (c1 - c1.min()) / (c1.max() - c1.min()) * 255
    tile = np.asarray(decode(stages["c1"]["image"]))[1:29, 1:29, 0].astype(float)
    assert np.abs(tile - scaled).max() <= 1
    features = answer["features"]
    assert features["name"] == "f6" and len(features["values"]) == 84
    assert max(abs(v) for v in features["values"]) <= 1.7159  # F6's scaled tanh
    distances = answer["rbf_distances"]
    assert len(distances) == 10 and min(distances) >= 0
    assert int(np.argmin(distances)) == answer["index"]
    assert answer["gradcam"]["layer"] == "s4"
    for overlay in (answer["gradcam"]["image"], answer["saliency"]["image"]):
        image = decode(overlay)
        assert image.mode == "RGB" and image.size == (32, 32)


def test_colour_model_with_its_own_class_names(colour_client):
    model = colour_client.get("/api/model").json()
    assert model["classes"] == COLOUR_CLASSES and model["channels"] == 3
    assert model["digits"] is False and model["output"] == "softmax"
    photo = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    r = colour_client.post(
        "/api/explain?k=2",
        content=encode(photo, "JPEG"),
        headers={"Content-Type": "image/jpeg"},
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["class"] in COLOUR_CLASSES and len(answer["top"]) == 2
    assert len(answer["probabilities"]) == 4 and answer["rbf_distances"] is None
    assert decode(answer["model_input"]).mode == "RGB"
    assert decode(answer["model_input"]).size == (32, 32)
    shapes = {s["name"]: s["shape"] for s in answer["stages"]}
    assert shapes == {
        "stem": [16, 32, 32],
        "layer1": [16, 32, 32],
        "layer2": [32, 16, 16],
        "layer3": [64, 8, 8],
    }
    assert answer["features"]["name"] == "features" and len(answer["features"]["values"]) == 64


def test_page_and_its_files_come_from_the_package_only(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<canvas id="canvas"' in page.text
    script = client.get("/app.js")
    style = client.get("/style.css")
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    for text in (page.text, script.text, style.text):
        assert "http://" not in text and "https://" not in text  # nothing from the internet


def _gif() -> bytes:
    return encode(np.zeros((8, 8), np.uint8), "GIF")


def _truncated_png(digit: np.ndarray) -> bytes:
    data = encode(np.asarray(Image.fromarray(digit).resize((200, 200))))
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("make_body", "content_type", "status", "words"),
    [
        (lambda d: b"", "image/png", 400, "empty"),
        (lambda d: np.random.default_rng(1).bytes(3000), "image/png", 415, "PNG or JPEG"),
        (_truncated_png, "image/png", 400, "truncated or corrupt"),
        (lambda d: encode(d, "JPEG")[:300], "image/jpeg", 400, "truncated or corrupt"),
        (lambda d: _gif(), "image/png", 415, "PNG or JPEG"),
        (lambda d: _gif(), "image/gif", 415, "Content-Type"),
        (lambda d: encode(d, "BMP"), "image/bmp", 415, "Content-Type"),
        (lambda d: encode(d, "BMP"), "image/png", 415, "PNG or JPEG"),
        (lambda d: encode(d), "text/plain", 415, "Content-Type"),
        (lambda d: encode(d), "", 415, "Content-Type"),
        (lambda d: encode(np.full((28, 28), 255, np.uint8)), "image/png", 400, "no digit"),
    ],
)
def test_bad_images_get_a_json_error(
    client, mnist_test_digits, make_body, content_type, status, words
):
    body = make_body(mnist_test_digits[0][0])
    for endpoint in ("/api/predict", "/api/explain"):
        r = client.post(endpoint, content=body, headers={"Content-Type": content_type})
        assert r.status_code == status and words in r.json()["error"], r.text


@pytest.mark.parametrize("k", ["0", "-1", "three", "2.5", ""])
def test_a_bad_k_is_a_400(client, mnist_test_digits, k):
    r = client.post(f"/api/predict?k={k}", content=encode(mnist_test_digits[0][0]), headers=PNG)
    assert r.status_code == 400 and "k=" in r.json()["error"]


@pytest.mark.parametrize(("width", "height"), [(5000, 5000), (100_000, 100_000)])
def test_huge_declared_dimensions_are_refused_before_decoding(client, monkeypatch, width, height):
    decoded = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(1) or original(self)
    )
    r = client.post("/api/predict", content=png_header_only(width, height), headers=PNG)
    assert r.status_code == 400 and "pixels" in r.json()["error"] and not decoded


def test_bodies_over_the_limit_get_413_declared_or_streamed(lenet_checkpoint):
    app = create_app(lenet_checkpoint, port=8000, max_body_bytes=1000)
    noise = encode(np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8))
    assert len(noise) > 1000
    with TestClient(app, base_url=BASE) as c:
        declared = c.post("/api/predict", content=noise, headers=PNG)
        assert declared.status_code == 413 and "limit is 1000 bytes" in declared.json()["error"]
        chunks = (noise[i : i + 500] for i in range(0, len(noise), 500))
        streamed = c.post("/api/predict", content=chunks, headers=PNG)  # chunked: no length
        assert streamed.status_code == 413
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8000", 200),
        ("localhost:8000", 200),
        ("[::1]:8000", 200),
        ("LOCALHOST:8000", 200),
        ("attacker.example:8000", 421),
        ("attacker.example", 421),
        ("127.0.0.1:8001", 421),
        ("127.0.0.1", 421),
        ("127.0.0.1:80a", 421),
    ],
)
def test_only_requests_addressed_to_this_server_are_answered(client, host, status):
    r = client.get("/api/model", headers={"Host": host})
    assert r.status_code == status
    if status != 200:
        assert "Host" in r.json()["error"]


def test_a_wildcard_bind_accepts_ip_addresses_but_not_names():
    check = HostCheck(app=None, host="0.0.0.0", port=8000, allow=["lab.local"])
    assert check.accepts("192.168.1.5:8000") and check.accepts("[fe80::1]:8000")
    assert check.accepts("lab.local:8000") and check.accepts("localhost:8000")
    assert not check.accepts("attacker.example:8000") and not check.accepts("192.168.1.5:9000")
    assert split_host("[::1]:8000") == ("::1", 8000) and split_host("name") == ("name", None)


def test_unknown_routes_and_methods_are_json_errors(client):
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and "/api/nothing" in missing.json()["error"]
    wrong = client.get("/api/predict")
    assert wrong.status_code == 405 and "GET" in wrong.json()["error"]


def test_concurrent_requests_to_a_real_server_are_all_answered_correctly(
    lenet_checkpoint, mnist_test_digits
):
    images, _ = mnist_test_digits
    bodies = [encode(pixels) for pixels in images[:12]]
    with serving_in_thread(lenet_checkpoint) as url, httpx2.Client(base_url=url) as http:
        expected = [http.post("/api/predict", content=b, headers=PNG).json() for b in bodies]

        def ask(i: int) -> tuple[int, dict]:
            if i % 4 == 3:  # a bad request among the good ones
                r = http.post("/api/explain", content=b"\x00" * 100, headers=PNG)
                return i, {"status": r.status_code}
            endpoint = "/api/explain" if i % 2 else "/api/predict"
            return i, http.post(endpoint, content=bodies[i % 12], headers=PNG).json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(48)))
        for i, answer in answers:
            if i % 4 == 3:
                assert answer == {"status": 415}
            else:
                assert answer["index"] == expected[i % 12]["index"]
                assert answer["probabilities"] == pytest.approx(
                    expected[i % 12]["probabilities"], abs=1e-6
                )
        assert http.get("/healthz").status_code == 200


def test_the_serve_command_answers_on_loopback_only_to_its_own_host(served):
    url, line = served
    assert url.startswith("http://127.0.0.1:")
    assert line.startswith("lenet5_1998: serving on") and "(loopback only; --host 0.0.0.0" in line
    assert httpx2.get(f"{url}/healthz").json() == {"status": "ok", "model": "lenet5_1998"}
    port = url.rsplit(":", 1)[1]
    refused = httpx2.get(f"{url}/healthz", headers={"Host": f"rebound.example:{port}"})
    assert refused.status_code == 421


def test_cli_errors_are_one_line_exit_2(lenet_checkpoint, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.safetensors"), "--port", "0"]) == 2
    assert "cnnlab: error:" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(lenet_checkpoint), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err

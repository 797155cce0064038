"""MNIST source and mirror download, against a local HTTP server and synthetic IDX files.

Only 127.0.0.1 and file:// URLs are used; the real data test reads the shared copy.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from cnnlab.data import mnist
from cnnlab.data.download import download_file
from cnnlab.data.idx import write_idx
from cnnlab.data.mnist import FILES, load_mnist, resolve_data_dir, verify_mnist
from cnnlab.errors import DataError

SIZES = {"train": 6, "t10k": 3}


class Server:
    """A local HTTP server answering each path from `routes` (status, body); 404 otherwise."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.overstated: set[str] = set()  # paths whose Content-Length claims 10 bytes more
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, body = server.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                extra = 10 if self.path in server.overstated else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    thread.join()


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def _synthetic() -> dict[str, torch.Tensor]:
    """Small MNIST-shaped tensors under the canonical file names."""
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for prefix, n in SIZES.items():
        tensors[f"{prefix}-images-idx3-ubyte"] = torch.randint(0, 256, (n, 28, 28), generator=g)
        tensors[f"{prefix}-labels-idx1-ubyte"] = torch.arange(n) % 10
    return {name: t.to(torch.uint8) for name, t in tensors.items()}


def _write(folder: Path, tensors: dict[str, torch.Tensor], gz: bool = True) -> dict[str, str]:
    """Write `tensors` as IDX files into `folder`; their uncompressed MD5s by name."""
    folder.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for name, tensor in tensors.items():
        path = folder / (f"{name}.gz" if gz else name)
        write_idx(path, tensor)
        content = path.read_bytes()
        md5s[name] = hashlib.md5(gzip.decompress(content) if gz else content).hexdigest()
    return md5s


def test_download_from_http_mirror(tmp_path: Path, server: Server) -> None:
    md5s = _write(tmp_path / "src", _synthetic())
    body = (tmp_path / "src" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    server.routes["/m/labels.gz"] = (200, body)
    dest = tmp_path / "out" / "labels.gz"
    assert (
        download_file([f"{server.url}/m/labels.gz"], dest, md5s["t10k-labels-idx1-ubyte"]) == dest
    )
    assert dest.read_bytes() == body
    assert [p.name for p in dest.parent.iterdir()] == ["labels.gz"]


def test_download_from_file_url_with_callable_check(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    checked = []
    dest = download_file([source.as_uri()], tmp_path / "copy.bin", checked.append)
    assert dest.read_bytes() == b"payload"
    assert len(checked) == 1 and checked[0].parent == tmp_path  # checked before the rename


def test_corrupt_mirror_falls_through_to_next(tmp_path: Path, server: Server) -> None:
    good = gzip.compress(b"the real content")
    server.routes["/a/f.gz"] = (200, good[:-5] + b"xxxxx")
    server.routes["/b/f.gz"] = (200, gzip.compress(b"other content"))
    server.routes["/c/f.gz"] = (200, good)
    md5 = hashlib.md5(b"the real content").hexdigest()
    urls = [f"{server.url}/{m}/f.gz" for m in "abc"]
    dest = download_file(urls, tmp_path / "f.gz", md5)
    assert dest.read_bytes() == good
    assert server.requests == ["/a/f.gz", "/b/f.gz", "/c/f.gz"]


def test_all_mirrors_failing_leaves_nothing(tmp_path: Path, server: Server) -> None:
    server.routes["/bad/f.gz"] = (200, b"not gzip and wrong")
    server.routes["/empty/f.gz"] = (200, b"")
    dead = _closed_port_url()
    urls = [f"{server.url}/missing/f.gz", f"{server.url}/bad/f.gz", f"{server.url}/empty/f.gz"]
    urls += [f"{dead}f.gz", (tmp_path / "absent").as_uri()]
    with pytest.raises(DataError) as caught:
        download_file(urls, tmp_path / "dl" / "f.gz", "0" * 32, timeout=5)
    message = str(caught.value)
    assert "\n" not in message
    assert all(url in message for url in urls)
    assert "HTTP 404" in message and "MD5" in message and "empty response" in message
    assert "by hand" in message and str(tmp_path / "dl") in message
    assert list((tmp_path / "dl").iterdir()) == []


def test_cut_short_response_is_rejected_without_a_check(tmp_path: Path, server: Server) -> None:
    server.routes["/short"] = (200, b"0123456789")
    server.overstated.add("/short")
    with pytest.raises(DataError, match=r"IncompleteRead|incomplete"):
        download_file([f"{server.url}/short"], tmp_path / "f")
    assert list(tmp_path.iterdir()) == []


def test_failed_download_keeps_existing_file(tmp_path: Path, server: Server) -> None:
    dest = tmp_path / "f.gz"
    dest.write_bytes(b"old")
    with pytest.raises(DataError):
        download_file([f"{server.url}/missing"], dest, "0" * 32)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.gz"]


def test_load_mnist_downloads_missing_files(tmp_path: Path, server: Server) -> None:
    tensors = _synthetic()
    md5s = _write(tmp_path / "src", tensors)
    for name in FILES:
        body = (tmp_path / "src" / f"{name}.gz").read_bytes()
        server.routes[f"/broken/{name}.gz"] = (200, body[: len(body) // 2])
        server.routes[f"/good/{name}.gz"] = (200, body)
    data = tmp_path / "data"
    _write(data / "mnist", {"train-labels-idx1-ubyte": tensors["train-labels-idx1-ubyte"]})
    mirrors = [f"{server.url}/broken", f"{server.url}/good/"]
    train, test = load_mnist(data, mirrors=mirrors, md5s=md5s)
    assert train.images.shape == (6, 1, 28, 28) and test.images.shape == (3, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.equal(train.images[:, 0], tensors["train-images-idx3-ubyte"])
    assert train.classes == tuple("0123456789") and train.name == "mnist-train"
    assert "/good/train-labels-idx1-ubyte.gz" not in server.requests  # already present
    assert sorted(p.name for p in (data / "mnist").iterdir()) == sorted(f"{n}.gz" for n in FILES)
    again, _ = load_mnist(data, download=False)
    assert torch.equal(again.labels, train.labels)


def test_load_mnist_download_failure_names_files_and_folder(tmp_path: Path, server: Server) -> None:
    with pytest.raises(DataError) as caught:
        load_mnist(tmp_path, mirrors=[f"{server.url}/nothing/"])
    message = str(caught.value)
    assert "\n" not in message
    assert all(name in message for name in FILES)
    assert str(tmp_path / "mnist") in message and "--data-dir" in message
    assert "CNNLAB_DATA" in message and "HTTP 404" in message
    assert list((tmp_path / "mnist").iterdir()) == []


def test_load_mnist_without_download(tmp_path: Path) -> None:
    _write(tmp_path / "mnist", {"t10k-images-idx3-ubyte": _synthetic()["t10k-images-idx3-ubyte"]})
    with pytest.raises(DataError) as caught:
        load_mnist(tmp_path, download=False, mirrors=["http://127.0.0.1:9/"])
    message = str(caught.value)
    missing = [name for name in FILES if name != "t10k-images-idx3-ubyte"]
    assert all(name in message for name in missing)
    assert "t10k-images-idx3-ubyte," not in message
    assert (
        str(tmp_path / "mnist") in message and "--data-dir" in message and "CNNLAB_DATA" in message
    )


def test_load_mnist_reads_uncompressed_files_from_env_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "mnist", _synthetic(), gz=False)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    train, test = load_mnist(download=False)
    assert len(train) == 6 and len(test) == 3
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_count_mismatch_names_both_files(tmp_path: Path) -> None:
    tensors = _synthetic()
    tensors["train-labels-idx1-ubyte"] = tensors["train-labels-idx1-ubyte"][:5]
    _write(tmp_path / "mnist", tensors)
    with pytest.raises(DataError) as caught:
        load_mnist(tmp_path, download=False)
    expected = "train-images-idx3-ubyte.gz has 6 images but train-labels-idx1-ubyte.gz has 5 labels"
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("name", "tensor", "expected"),
    [
        ("t10k-images-idx3-ubyte", torch.zeros(3, 28, 27, dtype=torch.uint8), "(N, 28, 28)"),
        ("t10k-images-idx3-ubyte", torch.zeros(3, 28, 28, dtype=torch.float32), "got torch.float"),
        ("t10k-labels-idx1-ubyte", torch.tensor([1, 10, 2], dtype=torch.uint8), "label 10"),
        ("t10k-labels-idx1-ubyte", torch.zeros(3, 1, dtype=torch.uint8), "shape (N,)"),
    ],
)
def test_bad_shapes_and_labels(
    tmp_path: Path, name: str, tensor: torch.Tensor, expected: str
) -> None:
    tensors = _synthetic()
    tensors[name] = tensor
    _write(tmp_path / "mnist", tensors)
    with pytest.raises(DataError, match=name) as caught:
        load_mnist(tmp_path, download=False)
    assert expected in str(caught.value)


def test_cache_follows_file_changes_and_hands_out_copies(tmp_path: Path) -> None:
    tensors = _synthetic()
    _write(tmp_path / "mnist", tensors)
    first, _ = load_mnist(tmp_path, download=False)
    first.images.zero_()
    second, _ = load_mnist(tmp_path, download=False)
    assert torch.equal(second.images[:, 0], tensors["train-images-idx3-ubyte"])
    labels = tensors["train-labels-idx1-ubyte"].flip(0)
    _write(tmp_path / "mnist", {"train-labels-idx1-ubyte": labels})
    third, _ = load_mnist(tmp_path, download=False)
    assert third.labels.tolist() == labels.tolist()


def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "cnnlab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == tmp_path / "xdg" / "cnnlab"
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_verify_reports_problems_without_raising(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    md5s = _write(folder, _synthetic())
    write_idx(folder / "t10k-images-idx3-ubyte.gz", torch.ones(3, 28, 28, dtype=torch.uint8))
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    reports = {r["file"]: r for r in verify_mnist(tmp_path, md5s=md5s)}
    assert list(reports) == list(FILES)
    good = reports["train-images-idx3-ubyte"]
    assert good["ok"] and good["found"] and good["md5"] == good["expected_md5"]
    assert good["shape"] == (6, 28, 28) and good["dtype"] == "uint8" and good["error"] is None
    changed = reports["t10k-images-idx3-ubyte"]
    assert changed["found"] and not changed["ok"] and changed["md5"] != changed["expected_md5"]
    corrupt = reports["train-labels-idx1-ubyte"]
    assert not corrupt["ok"] and "corrupt gzip" in corrupt["error"]
    missing = reports["t10k-labels-idx1-ubyte"]
    assert not missing["found"] and not missing["ok"]
    assert missing["path"] == str(folder / "t10k-labels-idx1-ubyte.gz")


def test_real_mnist(mnist_data_dir: Path) -> None:
    train, test = load_mnist(mnist_data_dir, download=False)
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 1, 28, 28)
    for dataset in (train, test):
        counts = torch.bincount(dataset.labels, minlength=10)
        assert len(counts) == 10 and bool((counts > 0).all())
        assert int(counts.sum()) == len(dataset)
    assert int(train.labels[0]) == 5
    reports = verify_mnist(mnist_data_dir)
    assert [r["ok"] for r in reports] == [True] * 4, reports
    assert {r["file"]: r["md5"] for r in reports} == mnist.MD5

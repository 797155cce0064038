"""Writes tests/corpus/: hostile and broken inputs, and the command line each must fail.

usage: python tools/make_corpus.py [--check] [OUT]   (OUT defaults to tests/corpus)

Issue 9, "hostile and broken inputs": every file a user can hand cnnlab (IDX files, CIFAR-10
batches, image files and folders, checkpoints, settings files, model arguments) in the ways it
comes broken or malicious: truncated, mislabelled, of the wrong shape or type, declaring a
decompression bomb, or a pickle whose payload would write a marker file. Each case is some
files and the `cnnlab` command line that must refuse them with exit code 2 and one line naming
the file and the problem (tests/reliability/test_hostile_inputs.py runs them all).

manifest.json holds {"marker_env": ..., "cases": [case, ...]}; a case is
  id, kind, problem (in words), argv, expect (fragments the error line must contain),
  layers ("SRC:DEST": corpus folder SRC copied into the case's folder DEST, in order; a file
  replaces an earlier one of the same name with or without .gz), unreadable (files made
  mode 000 for the run), fifos (named pipes made for the run: git holds none), mirrors
  (download mirrors replacing the real ones) and carries_code (the input would write
  $CNNLAB_CORPUS_MARKER if it were unpickled).
In argv, mirrors, unreadable and fifos, {work} is the case's own folder. Everything is made from
fixed bytes (PNG and JPEG by hand, no encoder), so the output is the same on every run;
--check exits 1 when OUT differs from what this script makes.
"""

from __future__ import annotations

import filecmp
import gzip
import io
import json
import pickle
import shutil
import struct
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from cnnlab.checkpoint import METADATA_KEY, CheckpointMeta, save_checkpoint, write_verified
from cnnlab.data.idx import write_idx
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.registry import create_model

OUT = Path(__file__).resolve().parents[1] / "tests" / "corpus"
MARKER_ENV = "CNNLAB_CORPUS_MARKER"
MARKER_CODE = (
    "import os\n"
    f"path = os.environ.get({MARKER_ENV!r})\n"
    "if path:\n"
    "    open(path, 'w').write('the payload ran')\n"
)
MNIST = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_MNIST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN = ["train", "lenet5_modern", "--epochs", "1", "--out", "{work}/run", "--quiet"]
ON_MNIST = [*TRAIN, "--data-dir", "{work}/data"]
TINY = {"widths": [2, 2, 2, 2, 2], "fc_width": 4}  # alexnet_small, shrunk to a few KB
DIGITS = Preprocessing(mode="lenet1998", mean=(0.0,), std=(1.0,), pad_to=32)


@dataclass
class Case:
    """One hostile input and the command that must refuse it (see the module docstring)."""

    id: str
    kind: str
    problem: str
    argv: list[str]
    expect: list[str]
    layers: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    fifos: list[str] = field(default_factory=list)
    mirrors: list[str] = field(default_factory=list)
    carries_code: bool = False


class _WritesMarker:
    """What a hostile pickle holds: unpickling it calls exec(MARKER_CODE)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (MARKER_CODE,)


def payload_pickle(protocol: int = 2) -> bytes:
    return pickle.dumps(_WritesMarker(), protocol=protocol)


def torch_save_zip(pickled: bytes) -> bytes:
    """A file laid out as torch.save writes one (a zip of archive/data.pkl and its records)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in (
            ("archive/data.pkl", pickled),
            ("archive/byteorder", b"little"),
            ("archive/version", b"3\n"),
        ):
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def png(width: int, height: int, pixels: bytes | None = None, level: int = 9) -> bytes:
    """An 8-bit grey PNG, made by hand: `pixels` row by row (default all white)."""
    rows = pixels if pixels is not None else b"\xff" * (width * height)
    raw = b"".join(b"\x00" + rows[y * width : (y + 1) * width] for y in range(height))
    return _png_chunks(width, height, zlib.compress(raw, level))


def _png_chunks(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def digit_png() -> bytes:
    """A dark 1 on white paper, 28x28."""
    pixels = bytearray(b"\xff" * 28 * 28)
    for y in range(5, 23):
        for x in range(12, 16):
            pixels[y * 28 + x] = 0
    return png(28, 28, bytes(pixels))


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline grey JPEG declaring `width` x `height`: SOI, SOF0, SOS, EOI."""
    sof = struct.pack(">BBHBHHBBBB", 0xFF, 0xC0, 11, 8, height, width, 1, 1, 0x11, 0)
    sos = struct.pack(">BBHBBBBBB", 0xFF, 0xDA, 8, 1, 1, 0, 0, 63, 0)
    return b"\xff\xd8" + sof + sos + b"\x00" * 16 + b"\xff\xd9"


def idx_bytes(code: int, dims: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


def sorted_metadata(path: Path) -> None:
    """Rewrite a safetensors file's header with its metadata in sorted order, when it has a
    whole header: safetensors writes the metadata from a hash map, in an order that changes
    from run to run. The header keeps its length (padded with spaces, as the format allows)."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    if len(data) < 8 or 8 + length > len(data):
        return
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError:
        return
    if isinstance(header, dict) and isinstance(header.get("__metadata__"), dict):
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":")).encode()
        if len(text) <= length:
            path.write_bytes(data[:8] + text.ljust(length) + data[8 + length :])


def write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def idx_cases(out: Path) -> list[Case]:
    """MNIST's four IDX files, small and good, then one broken file per case on top of them."""
    rng = np.random.default_rng(0)
    good = out / "idx" / "good" / "mnist"
    sets = {"train": 12, "t10k": 6}
    for prefix, n in sets.items():
        images = torch.from_numpy(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(good / f"{prefix}-images-idx3-ubyte", images)
        write_idx(good / f"{prefix}-labels-idx1-ubyte", torch.arange(n, dtype=torch.uint8) % 10)
    images = (good / MNIST[0]).read_bytes()
    labels = (good / MNIST[1]).read_bytes()
    broken: list[tuple[str, str, str, bytes, list[str]]] = [
        ("truncated-images", MNIST[0], "image data cut short", images[:5000], ["truncated"]),
        ("truncated-header", MNIST[1], "cut inside its header", labels[:6], ["truncated"]),
        ("empty", MNIST[1], "an empty file", b"", ["empty"]),
        ("wrong-magic", MNIST[0], "a wrong magic number", b"PK" + images[2:], ["not an IDX"]),
        (
            "unknown-type",
            MNIST[0],
            "an unknown type code",
            images[:2] + b"\x0a" + images[3:],
            ["type code"],
        ),
        (
            "wrong-dimensions",
            MNIST[0],
            "images of 32x32, not 28x28",
            idx_bytes(8, (12, 32, 32), bytes(12 * 32 * 32)),
            ["(N, 28, 28)"],
        ),
        (
            "flat-images",
            MNIST[0],
            "images stored as rows of 784",
            idx_bytes(8, (12, 784), bytes(12 * 784)),
            ["(N, 28, 28)"],
        ),
        (
            "float-labels",
            MNIST[1],
            "labels stored as float32",
            idx_bytes(0x0D, (12,), bytes(48)),
            ["uint8 labels"],
        ),
        (
            "count-mismatch",
            MNIST[1],
            "11 labels for 12 images",
            idx_bytes(8, (11,), bytes(11)),
            ["12 images", "11 labels"],
        ),
        (
            "trailing-bytes",
            MNIST[0],
            "bytes after the data the header declares",
            images + b"\x00" * 100,
            ["trailing bytes"],
        ),
        (
            "huge-dimensions",
            MNIST[0],
            "a header declaring 4 billion images (must not allocate them)",
            idx_bytes(8, (2**32 - 1, 28, 28), images[16:]),
            ["truncated"],
        ),
        (
            "label-out-of-range",
            MNIST[1],
            "a label 10 among digits 0-9",
            idx_bytes(8, (12,), bytes([0] * 11 + [10])),
            ["outside 0-9"],
        ),
        (
            "corrupt-gzip",
            MNIST[0] + ".gz",
            "a gzip stream with bytes flipped (bad CRC)",
            _flip_gzip(images),
            ["gzip"],
        ),
        (
            "truncated-gzip",
            MNIST[0] + ".gz",
            "a gzip stream cut short",
            gzip.compress(images, mtime=0)[:-40],
            ["gzip"],
        ),
    ]
    cases = []
    for case_id, name, problem, content, expect in broken:
        write(out / "idx" / case_id / "mnist" / name, content)
        cases.append(
            Case(
                id=f"idx-{case_id}",
                kind="idx",
                problem=f"{name}: {problem}",
                argv=ON_MNIST,
                expect=[name, *expect],
                layers=["idx/good:data", f"idx/{case_id}:data"],
            )
        )
    # checksums are checked where files are fetched: a mirror serving other content
    mirror = out / "idx" / "mirror"
    for name in (*MNIST, *TEST_MNIST):
        write(mirror / f"{name}.gz", gzip.compress((good / name).read_bytes(), mtime=0))
    cases.append(
        Case(
            id="idx-checksum-mismatch",
            kind="idx",
            problem="a download whose content has another MD5 than the published one",
            argv=["data", "download", "mnist", "--data-dir", "{work}/data"],
            expect=[MNIST[0] + ".gz", "MD5"],
            layers=["idx/mirror:mirror"],
            mirrors=["file://{work}/mirror/"],
        )
    )
    return cases


def _flip_gzip(content: bytes) -> bytes:
    stream = bytearray(gzip.compress(content, mtime=0))
    for i in range(len(stream) // 2, len(stream) // 2 + 8):
        stream[i] ^= 0xFF
    return bytes(stream)


def cifar10_cases(out: Path) -> list[Case]:
    """CIFAR-10's six pickled batches, tiny and good, then broken ones."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    good = out / "cifar10" / "good" / "cifar10" / "cifar-10-batches-py"
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
    for name in names:
        write(good / name, pickle.dumps(batch, protocol=2))
    argv = ["train", "alexnet_small", "--data", "cifar10", "--data-dir", "{work}/data"]
    argv += ["--epochs", "1", "--out", "{work}/run", "--quiet"]
    folder = "cifar10/cifar-10-batches-py"
    broken = [
        (
            "pickle-runs-code",
            "data_batch_3",
            "a batch whose pickle calls exec() (would write the marker file)",
            pickle.dumps({"data": _WritesMarker(), "labels": [0, 1]}, protocol=2),
            ["refused", "exec"],
        ),
        (
            "truncated-batch",
            "data_batch_1",
            "a batch cut short",
            (good / "data_batch_1").read_bytes()[:3000],
            ["not a readable CIFAR-10 batch"],
        ),
        (
            "wrong-shape",
            "test_batch",
            "rows of 1,000 values, not 3,072",
            pickle.dumps({"data": np.zeros((2, 1000), np.uint8), "labels": [0, 1]}, protocol=2),
            ["3072"],
        ),
        (
            "not-a-dict",
            "data_batch_5",
            "a pickled list instead of a dict",
            pickle.dumps([1, 2, 3], protocol=2),
            ["expected a pickled dict"],
        ),
    ]
    cases = []
    for case_id, name, problem, content, expect in broken:
        write(out / "cifar10" / case_id / folder / name, content)
        cases.append(
            Case(
                id=f"cifar10-{case_id}",
                kind="cifar10",
                problem=f"{name}: {problem}",
                argv=argv,
                expect=[name, *expect],
                layers=["cifar10/good:data", f"cifar10/{case_id}:data"],
                carries_code=case_id == "pickle-runs-code",
            )
        )
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in names:
            content = (good / name).read_bytes()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size, info.mtime = len(content), 0
            archive.addfile(info, io.BytesIO(content))
    archive_bytes = gzip.compress(tar.getvalue(), mtime=0)
    write(out / "cifar10" / "truncated-archive" / "cifar10" / "cifar-10-python.tar.gz",
          archive_bytes[: len(archive_bytes) // 2])  # fmt: skip
    cases.append(
        Case(
            id="cifar10-truncated-archive",
            kind="cifar10",
            problem="cifar-10-python.tar.gz cut in half",
            argv=argv,
            expect=["cifar-10-python.tar.gz"],
            layers=["cifar10/truncated-archive:data"],
        )
    )
    return cases


def image_cases(out: Path) -> list[Case]:
    """Image files for `cnnlab predict`, and a good digit and checkpoint to predict with."""
    good = out / "images" / "good"
    write(good / "digit.png", digit_png())
    model = create_model("alexnet_small", num_classes=10, in_chans=1, **TINY)
    save_checkpoint(good / "model.safetensors", model, _meta("alexnet_small", TINY))
    whole = digit_png()
    files = [
        ("empty", "empty.png", "an empty file", b"", ["empty"]),
        ("text", "notes.png", "a text file named .png", b"not an image\n" * 4, ["not an image"]),
        (
            "eps",
            "figure.png",
            "PostScript named .png (Pillow would start Ghostscript for it)",
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
            ["not an image"],
        ),
        ("gif", "anim.gif", "a GIF (not PNG or JPEG)", b"GIF89a" + bytes(20), ["PNG or JPEG"]),
        ("truncated", "half.png", "a PNG cut in half", whole[: len(whole) // 2], ["truncated"]),
        (
            "bad-crc",
            "crc.png",
            "a PNG whose header checksum is wrong",
            whole[:29] + bytes([whole[29] ^ 0xFF]) + whole[30:],
            [],
        ),
        (
            "bomb-declared",
            "bomb.png",
            "a PNG declaring 100,000 x 100,000 pixels",
            _png_chunks(100_000, 100_000, zlib.compress(b"\x00" * 1000, 9)),
            ["decompression bomb"],
        ),
        (
            "bomb-zeros",
            "zeros.png",
            "9,000 x 9,000 pixels (81 MB) of zeros deflated to a small file",
            png(9000, 9000, bytes(9000 * 9000)),
            ["exceeds the limit"],
        ),
        (
            "bomb-jpeg",
            "bomb.jpg",
            "a JPEG declaring 65,000 x 65,000 pixels",
            jpeg_header(65_000, 65_000),
            ["decompression bomb"],
        ),
        ("blank", "blank.png", "a digit model given a blank page", png(28, 28), ["blank"]),
        ("unreadable", "locked.png", "a file nobody may read (mode 000)", whole, ["cannot read"]),
    ]
    cases = []
    for case_id, name, problem, content, expect in files:
        write(out / "images" / case_id / name, content)
        cases.append(
            Case(
                id=f"image-{case_id}",
                kind="image",
                problem=f"{name}: {problem}",
                argv=["predict", "{work}/data/model.safetensors", f"{{work}}/data/{name}"],
                expect=[name, *expect],
                layers=["images/good:data", f"images/{case_id}:data"],
                unreadable=[f"{{work}}/data/{name}"] if case_id == "unreadable" else [],
            )
        )
    cases.append(
        Case(
            id="image-named-pipe",
            kind="image",
            problem="pipe.png: a named pipe (reading it would wait forever)",
            argv=["predict", "{work}/data/model.safetensors", "{work}/data/pipe.png"],
            expect=["pipe.png", "not a regular file"],
            layers=["images/good:data"],
            fifos=["{work}/data/pipe.png"],
        )
    )
    return cases


def folder_cases(out: Path) -> list[Case]:
    """Image folders (two class folders) in which no file is a readable image."""
    kinds = {
        "empty-files": ("empty files", b"", ["not an image"]),
        "non-images": ("text files named .png", b"hello\n", ["not an image"]),
        "bombs": (
            "PNGs declaring 100,000 x 100,000 pixels",
            _png_chunks(100_000, 100_000, zlib.compress(b"\x00" * 1000, 9)),
            ["unreadable"],
        ),
        "unreadable": ("files nobody may read (mode 000)", digit_png(), ["Permission denied"]),
    }
    cases = []
    for case_id, (problem, content, expect) in kinds.items():
        names = [f"{cls}/{i}.png" for cls in ("cats", "dogs") for i in range(2)]
        for name in names:
            write(out / "folders" / case_id / name, content)
        cases.append(
            Case(
                id=f"folder-{case_id}",
                kind="folder",
                problem=f"an image folder of {problem}",
                argv=[*TRAIN, "--data", "{work}/data"],
                expect=["cats/0.png", *expect],
                layers=[f"folders/{case_id}:data"],
                unreadable=[f"{{work}}/data/{n}" for n in names] if case_id == "unreadable" else [],
            )
        )
    cases.append(
        Case(
            id="folder-named-pipes",
            kind="folder",
            problem="an image folder of named pipes (reading one would wait forever)",
            argv=[*TRAIN, "--data", "{work}/data"],
            expect=["cats/0.png", "not a regular file"],
            fifos=["{work}/data/cats/0.png", "{work}/data/dogs/0.png"],
        )
    )
    zipped = out / "folders" / "zip" / "pets.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in ("cats/0.png", "dogs/0.png"):
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), digit_png())
    write(zipped, buf.getvalue()[: len(buf.getvalue()) // 2])
    cases.append(
        Case(
            id="folder-truncated-zip",
            kind="folder",
            problem="a zip of class folders cut in half",
            argv=[*TRAIN, "--data", "{work}/data/pets.zip"],
            expect=["pets.zip", "not a readable zip"],
            layers=["folders/zip:data"],
        )
    )
    return cases


def _meta(model: str, model_args: dict, **changes: object) -> CheckpointMeta:
    meta = CheckpointMeta(
        model=model,
        num_classes=10,
        in_chans=1,
        preprocessing=DIGITS,
        classes=[str(d) for d in range(10)],
        image_shape=(1, 28, 28),
        model_args=dict(model_args),
        dataset="mnist",
        data_source="mnist",
        digits=True,
    )
    for key, value in changes.items():
        setattr(meta, key, value)
    return meta


def checkpoint_cases(out: Path) -> list[Case]:
    """Checkpoints that are cut, corrupt, for another model, or pickles carrying code."""
    folder = out / "checkpoints"
    tiny = create_model("alexnet_small", num_classes=10, in_chans=1, **TINY)
    good = folder / "good-model.safetensors"  # only the source of the broken ones below
    save_checkpoint(good, tiny, _meta("alexnet_small", TINY))
    sorted_metadata(good)
    whole = good.read_bytes()
    good.unlink()
    write(folder / "truncated.safetensors", whole[: len(whole) * 3 // 5])
    flipped = bytearray(whole)
    flipped[-9] ^= 0x10  # one bit of the last tensor's data
    write(folder / "bit-flip.safetensors", bytes(flipped))
    save_checkpoint(folder / "other-model.safetensors", tiny, _meta("lenet5_modern", {}))
    wider = {**TINY, "widths": [3, 2, 2, 2, 2]}
    save_checkpoint(folder / "wrong-shapes.safetensors", tiny, _meta("alexnet_small", wider))
    save_checkpoint(folder / "unknown-model.safetensors", tiny, _meta("lenet9", {}))
    weights = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    save_file(weights, str(folder / "no-metadata.safetensors"))
    write_verified(folder / "bad-metadata.safetensors", weights, {METADATA_KEY: "{not json"})
    typed = json.loads(_meta("alexnet_small", TINY).to_json())
    typed["num_classes"] = "ten"
    write_verified(folder / "wrong-types.safetensors", weights, {METADATA_KEY: json.dumps(typed)})
    typed.update(num_classes=10, format_version=1)
    save_file(weights, str(folder / "old-format.safetensors"), {METADATA_KEY: json.dumps(typed)})
    write(folder / "pickle.safetensors", payload_pickle(2))
    write(folder / "pickle-protocol0.safetensors", payload_pickle(0))
    write(folder / "torch-save.pt", torch_save_zip(payload_pickle(2)))
    write(folder / "empty.safetensors", b"")
    write(folder / "huge-header.safetensors", struct.pack("<Q", 2**62) + b'{"a":1}')

    def predict(name: str) -> list[str]:
        return ["predict", f"{{work}}/data/{name}", "{work}/data/digit.png"]

    finetune = ["finetune", "{work}/data/torch-save.pt", "--data-dir", "{work}/data"]
    finetune += ["--epochs", "1", "--out", "{work}/run", "--quiet"]
    import_weights = [
        "import-weights",
        "resnet18",
        "{work}/data/torch-save.pt",
        "--out",
        "{work}/x.safetensors",
    ]
    table = {  # case (and file name): what is wrong with it, what the error must say
        "truncated": ("cut to 60% of its length", []),
        "bit-flip": ("one bit flipped in its weights", []),
        "other-model": ("weights of alexnet_small under the name lenet5_modern", ["do not fit"]),
        "wrong-shapes": ("conv1 of 2 filters where its settings say 3", ["do not fit"]),
        "unknown-model": ("an architecture that does not exist", ["lenet9"]),
        "no-metadata": ("safetensors without cnnlab's metadata", []),
        "bad-metadata": ("metadata that is not JSON", ["metadata"]),
        "wrong-types": ("metadata with num_classes 'ten'", ["ten"]),
        "old-format": ("format 1: no SHA-256 to verify it by", ["SHA-256"]),
        "empty": ("an empty file", []),
        "huge-header": ("a header length of 2**62 bytes", []),
        "pickle": ("a pickle calling exec(), named .safetensors", ["refused"]),
        "pickle-protocol0": ("a protocol-0 pickle (no 0x80 byte) calling exec()", []),
    }
    rows = [
        (case, f"{case}.safetensors", problem, predict(f"{case}.safetensors"), expect)
        for case, (problem, expect) in table.items()
    ]
    zipped = "a torch.save zip whose data.pkl calls exec()"
    rows += [
        ("torch-save", "torch-save.pt", zipped, predict("torch-save.pt"), ["refused"]),
        ("torch-save-finetune", "torch-save.pt", f"{zipped}, to finetune", finetune, ["refused"]),
        ("torch-save-import", "torch-save.pt", f"{zipped}, to import", import_weights, []),
    ]
    return [
        Case(
            id=f"checkpoint-{case}",
            kind="checkpoint",
            problem=f"{name}: {problem}",
            argv=argv,
            expect=[name, *expect],
            layers=["checkpoints:data", "images/good:data", "idx/good:data"],
            carries_code="pickle" in case or "torch-save" in case,
        )
        for case, name, problem, argv, expect in rows
    ]


def config_cases(out: Path) -> list[Case]:
    """Settings files for `train --config`, and a run's config.json for `train --resume`."""
    folder = out / "configs"
    files: list[tuple[str, str, object, list[str]]] = [
        ("unknown-key", "a misspelt setting", {"lerning_rate": 0.1}, ["lerning_rate"]),
        ("string-epochs", "epochs given as a word", {"epochs": "ten"}, ["epochs", "'ten'"]),
        ("string-lr", "a learning rate given as a word", {"lr": "fast"}, ["lr", "'fast'"]),
        ("bool-as-string", "a flag given as a string", {"nesterov": "yes"}, ["nesterov"]),
        ("float-batch", "a fractional batch size", {"batch_size": 12.5}, ["batch_size"]),
        ("nan-lr", "a learning rate of NaN", {"lr": float("nan")}, ["lr"]),
        ("list-model-args", "model_args as a list", {"model_args": [1, 2]}, ["model_args"]),
        (
            "preprocessing-missing-keys",
            "a preprocessing without its mean and std",
            {"preprocessing": {"mode": "meanstd"}},
            ["preprocessing"],
        ),
        ("not-an-object", "a JSON list", [1, 2, 3], ["JSON object"]),
    ]
    cases = []
    for case_id, problem, content, expect in files:
        name = f"{case_id}.json"
        write(folder / case_id / name, json.dumps(content).encode())
        cases.append(
            Case(
                id=f"config-{case_id}",
                kind="config",
                problem=f"{name}: {problem}",
                argv=[*ON_MNIST, "--config", f"{{work}}/cfg/{name}"],
                expect=[name, *expect],
                layers=["idx/good:data", f"configs/{case_id}:cfg"],
            )
        )
    raw = [
        ("invalid-json", "settings.json", "JSON with a syntax error", b'{"epochs": 1,', ["JSON"]),
        ("binary", "settings.json", "bytes that are not UTF-8", bytes(range(256)), ["JSON"]),
    ]
    for case_id, name, problem, content, expect in raw:
        write(folder / case_id / name, content)
        cases.append(
            Case(
                id=f"config-{case_id}",
                kind="config",
                problem=f"{name}: {problem}",
                argv=["train", "--config", f"{{work}}/cfg/{name}", "--out", "{work}/run"],
                expect=[name, *expect],
                layers=[f"configs/{case_id}:cfg"],
            )
        )
    run_config = {"model": "lenet5_modern", "epochs": 1, "limit_train": 12, "learning_rate": 0.1}
    write(folder / "resume-unknown-key" / "config.json", json.dumps(run_config).encode())
    write(folder / "resume-binary" / "config.json", b"\x00\xff\xfe" * 10)
    for case_id, problem, expect in (
        ("resume-unknown-key", "a run's config.json with an unknown key", ["learning_rate"]),
        ("resume-binary", "a run's config.json of binary bytes", ["config.json"]),
    ):
        cases.append(
            Case(
                id=f"config-{case_id}",
                kind="config",
                problem=f"config.json: {problem}",
                argv=["train", "--resume", "{work}/run"],
                expect=["config.json", *expect],
                layers=["idx/good:data", f"configs/{case_id}:run"],
            )
        )
    return cases


def model_cases() -> list[Case]:
    """Model arguments that cannot make a working network."""
    table = [
        (
            "filter-too-big",
            "alexnet_small with the ImageNet stem (11x11, stride 4) on 32x32 inputs",
            ["summary", "alexnet_small", "--model-arg", "stem=imagenet"],
            ["stem"],
        ),
        (
            "input-too-small",
            "alexnet's 11x11 filters on a 3x8x8 input",
            ["summary", "alexnet", "--input", "3x8x8"],
            ["8x8"],
        ),
        (
            "zero-width",
            "a convolution of 0 filters",
            ["summary", "alexnet_small", "--model-arg", "widths=[0,2,2,2,2]"],
            ["widths"],
        ),
        (
            "mnist-into-alexnet",
            "alexnet (227x227 colour) trained on 28x28 grey digits",
            ["train", "alexnet", "--data-dir", "{work}/data", "--out", "{work}/run"],
            ["28x28"],
        ),
    ]
    return [
        Case(
            id=f"model-{case_id}",
            kind="model",
            problem=problem,
            argv=argv,
            expect=expect,
            layers=["idx/good:data"] if "{work}/data" in argv else [],
        )
        for case_id, problem, argv, expect in table
    ]


def make_corpus(out: Path) -> list[Case]:
    """Write every corpus file and manifest.json into `out` (emptied first)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(0)  # the checkpoints' weights: the same bytes on every run
    cases = [
        *idx_cases(out),
        *cifar10_cases(out),
        *image_cases(out),
        *folder_cases(out),
        *checkpoint_cases(out),
        *config_cases(out),
        *model_cases(),
    ]
    for path in sorted(out.rglob("*.safetensors")):
        sorted_metadata(path)
    manifest = {"marker_env": MARKER_ENV, "cases": [asdict(c) for c in cases]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "README.md").write_text(
        "# Hostile and broken inputs\n\nGenerated by `python tools/make_corpus.py`; do not edit "
        "by hand.\nmanifest.json lists each case: its files, the command that must refuse them "
        "and what the one-line error must say.\n"
    )
    return cases


def differences(a: Path, b: Path) -> list[str]:
    """Relative paths present in only one of two folders, or different in content."""
    files = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files |= {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    return sorted(
        str(f)
        for f in files
        if not ((a / f).is_file() and (b / f).is_file() and filecmp.cmp(a / f, b / f, False))
    )


def main(argv: list[str]) -> int:
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    out = Path(rest[0]) if rest else OUT
    if not check:
        cases = make_corpus(out)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"{out}: {len(cases)} cases, {size:,} bytes")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        make_corpus(Path(tmp) / "corpus")
        stale = differences(Path(tmp) / "corpus", out)
    if stale:
        print(f"{out} is stale ({', '.join(stale[:5])}): run python tools/make_corpus.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

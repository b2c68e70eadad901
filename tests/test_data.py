"""Tests of tpp.data: readers (real and synthetic files), embedded subset, loaders, downloads."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import pickle
import struct
import sys
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from tpp.data import DATASETS, DatasetInfo, TensorLoader, build_loaders, dataset_info, load_arrays, resolve_data_dir
from tpp.data import download as dl
from tpp.data.imagenet import check_imagefolder_classes
from tpp.data.loader import hflip_where, random_crop
from tpp.errors import DataError, TPPError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EMBEDDED = Path(__file__).resolve().parents[1] / "src" / "tpp" / "data" / "embedded" / "mnist_subset.npz"


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


# ---------------------------------------------------------------- metadata and folders


def test_dataset_info_and_aliases() -> None:
    assert DATASETS == (
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "imagenet",
        "mnist_subset",
        "text",
        "text_tiny",
        "imagefolder",
    )
    for name in DATASETS[:-1]:  # imagefolder's classes come from a folder (tests/test_imagefolder.py)
        assert isinstance(dataset_info(name), DatasetInfo)
    assert dataset_info("fashion-mnist") is dataset_info("FashionMNIST") is dataset_info("fashion_mnist")
    c100 = dataset_info("cifar100")
    assert (c100.num_classes, c100.in_channels, c100.image_size, c100.augment) == (100, 3, 32, True)
    assert dataset_info("mnist").mean == (0.1307,) and dataset_info("mnist").augment is False
    assert dataset_info("imagenet").image_size == 224
    with pytest.raises(DataError) as exc:
        dataset_info("svhn")
    assert "cifar100" in one_line_error(exc) and issubclass(DataError, TPPError)


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TPP_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("TPP_DATA")
    assert resolve_data_dir() == Path.home() / ".cache" / "tpp" / "data"


# ---------------------------------------------------------------- MNIST / IDX


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="shared MNIST files absent")
def test_real_mnist() -> None:
    x, y = load_arrays("mnist", "train", SHARED)
    assert x.shape == (60000, 1, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert y.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    xt, yt = load_arrays("mnist", "test", SHARED)
    assert xt.shape == (10000, 1, 32, 32) and int(yt.bincount()[0]) == 980
    assert abs(float(xt.float().mean()) / 255 - 0.13) < 0.01


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="shared MNIST files absent")
def test_resize_matches_pil() -> None:
    import PIL.Image as image_mod  # pillow comes with matplotlib, a dependency

    from tpp.data.mnist import read_idx

    raw = read_idx(SHARED / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", 0x803)[:50]
    ours, _ = load_arrays("mnist", "test", SHARED)
    for i in range(50):
        pil = np.asarray(image_mod.fromarray(raw[i]).resize((32, 32), image_mod.BILINEAR), dtype=int)
        # PIL works in fixed point; agreement within one grey level is the best possible
        assert np.abs(pil - ours[i, 0].numpy().astype(int)).max() <= 1


def write_idx(path: Path, array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def fake_mnist(root: Path, n: int = 20, folder: str = "MNIST") -> None:
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        raw = root / folder / "raw"
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 0x803)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, 0x801)


def test_synthetic_idx_roundtrip(tmp_path: Path) -> None:
    fake_mnist(tmp_path, folder="FashionMNIST")
    x, y = load_arrays("fashion-mnist", "test", tmp_path)
    assert x.shape == (20, 1, 32, 32) and y.tolist() == [i % 10 for i in range(20)]


@pytest.mark.parametrize(
    "payload, what",
    [
        (lambda good: gzip.compress(good[:-100]), "bytes"),  # truncated payload
        (lambda good: gzip.compress(b"\x00\x00\x08\x01" + good[4:]), "magic"),
        (lambda good: b"not a gzip file at all", "decompress"),
        (lambda good: gzip.compress(good)[:-30], "decompress"),  # truncated gzip stream
    ],
)
def test_corrupt_idx(tmp_path: Path, payload, what: str) -> None:
    fake_mnist(tmp_path)
    target = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    target.write_bytes(payload(gzip.decompress(target.read_bytes())))
    with pytest.raises(DataError) as exc:
        load_arrays("mnist", "train", tmp_path)
    msg = one_line_error(exc)
    assert str(target) in msg and what in msg and "re-download" in msg


def test_missing_mnist_lists_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "fetch_url", lambda *a, **k: pytest.fail("network touched"))
    with pytest.raises(DataError) as exc:
        load_arrays("mnist", "test", tmp_path)
    msg = one_line_error(exc)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg and "download=True" in msg


# ---------------------------------------------------------------- CIFAR pickles


def cifar_batch(n: int, label_keys: dict[bytes, list[int]], seed: int) -> dict:
    data = np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)
    data[0, 2 * 1024 + 5 * 32 + 7] = 201  # image 0, channel 2, row 5, column 7
    return {
        b"batch_label": b"testing batch",
        **label_keys,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def py2_pickle(obj) -> bytes:
    """Encode like Python 2 cPickle protocol 2, as the official CIFAR files are: byte strings
    as BINSTRING and arrays via numpy.core.multiarray._reconstruct (only the types used here)."""
    out = bytearray(b"\x80\x02")

    def emit(o) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, (list, tuple)):
            out.extend(b"](" if isinstance(o, list) else b"(")
            for v in o:
                emit(v)
            out.extend(b"e" if isinstance(o, list) else b"t")
        elif isinstance(o, (bytes, str)):
            b = o.encode() if isinstance(o, str) else o
            out.extend((b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b)
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, np.ndarray):  # uint8 only
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            emit((0,))
            emit("b")
            out.extend(b"\x87R(")  # TUPLE3 REDUCE, then the BUILD state tuple
            emit(1)
            emit(o.shape)
            out.extend(b"cnumpy\ndtype\n")
            emit(("u1", 0, 1))
            out.extend(b"R")
            emit((3, "|", None, None, None, -1, -1, 0))
            out.extend(b"b")
            emit(False)
            emit(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    return bytes(out + b".")


def dump(path: Path, obj, protocol: int | str) -> None:
    """protocol 'py2' writes the official Python 2 format; an int uses this Python's pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(py2_pickle(obj) if protocol == "py2" else pickle.dumps(obj, protocol=protocol))


def fake_cifar10(root: Path, protocol: int | str = "py2", n: int = 4) -> Path:
    folder = root / "cifar-10-batches-py"
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        dump(folder / fname, cifar_batch(n, {b"labels": [(i + j) % 10 for j in range(n)]}, i), protocol)
    dump(
        folder / "batches.meta",
        {b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": n, b"num_vis": 3072},
        protocol,
    )
    return folder


def fake_cifar100(root: Path, protocol: int | str = "py2", n: int = 4) -> Path:
    folder = root / "cifar-100-python"
    for i, fname in enumerate(["train", "test"]):
        keys = {b"fine_labels": [99 - j for j in range(n)], b"coarse_labels": [19] * n}
        dump(folder / fname, cifar_batch(n, keys, i), protocol)
    dump(folder / "meta", {b"fine_label_names": [b"x"] * 100, b"coarse_label_names": [b"y"] * 20}, protocol)
    return folder


@pytest.mark.parametrize("protocol", ["py2", 2, 5])
def test_cifar10_reader(tmp_path: Path, protocol: int | str) -> None:
    fake_cifar10(tmp_path, protocol)
    x, y = load_arrays("cifar10", "train", tmp_path)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert int(x[0, 2, 5, 7]) == 201 and y[:4].tolist() == [0, 1, 2, 3]
    expected = cifar_batch(4, {}, 1)[b"data"].reshape(4, 3, 32, 32)
    assert torch.equal(x[4:8], torch.from_numpy(expected))
    xt, yt = load_arrays("cifar10", "test", tmp_path)
    assert xt.shape == (4, 3, 32, 32) and yt.tolist() == [5, 6, 7, 8]


def test_cifar100_reader(tmp_path: Path) -> None:
    fake_cifar100(tmp_path)
    x, y = load_arrays("cifar100", "test", tmp_path)
    assert x.shape == (4, 3, 32, 32) and int(x[0, 2, 5, 7]) == 201 and y.tolist() == [99, 98, 97, 96]


def test_cifar_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_arrays("cifar10", "train", tmp_path)
    msg = one_line_error(exc)
    assert "data_batch_1" in msg and "data_batch_5" in msg and "cifar-10-batches-py" in msg


class _Sneaky:
    """A class the restricted unpickler must not resolve."""


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_foreign_globals_is_refused(tmp_path: Path) -> None:
    folder = fake_cifar10(tmp_path)
    marker = tmp_path / "executed"
    for evil in (_RunsCommand(marker), _Sneaky()):
        batch = cifar_batch(4, {b"labels": [0] * 4}, 0)
        batch[b"extra"] = evil
        dump(folder / "test_batch", batch, 2)
        with pytest.raises(DataError) as exc:
            load_arrays("cifar10", "test", tmp_path)
        assert "not allowed" in one_line_error(exc) and "test_batch" in str(exc.value)
    assert not marker.exists()


def test_cifar_wrong_shape(tmp_path: Path) -> None:
    folder = fake_cifar100(tmp_path)
    dump(folder / "train", {b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, 2)
    with pytest.raises(DataError, match="expected uint8"):
        load_arrays("cifar100", "train", tmp_path)


# ---------------------------------------------------------------- embedded subset


def test_embedded_subset() -> None:
    assert EMBEDDED.stat().st_size <= 3 * 1024 * 1024
    x, y = load_arrays("mnist_subset", "train", data_dir="/nonexistent")
    assert x.shape == (6000, 1, 32, 32) and y.bincount().tolist() == [600] * 10
    assert abs(float(x.float().mean()) / 255 - 0.1307) < 0.01
    xt, yt = load_arrays("mnist_subset", "test")
    assert xt.shape == (1000, 1, 32, 32) and yt.bincount().tolist() == [100] * 10


# ---------------------------------------------------------------- TensorLoader


def small_loader(n: int = 10, **kw) -> TensorLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    kw.setdefault("batch_size", 4)
    return TensorLoader(images, torch.arange(n), mean=(0.5,), std=(0.25,), **kw)


def test_loader_shapes_and_normalisation() -> None:
    images = torch.full((5, 3, 8, 8), 51, dtype=torch.uint8)
    loader = TensorLoader(
        images, torch.zeros(5, dtype=torch.long), batch_size=2, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.25)
    )
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and loader.dataset_size == 5 and loader.batch_size == 2
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (2, 3, 8, 8)
    expected = torch.tensor([(0.2 - 0.1) / 0.5, 0.0, (0.2 - 0.3) / 0.25]).view(1, 3, 1, 1)
    assert torch.allclose(x, expected.expand_as(x), atol=1e-6)
    assert len(small_loader(10, drop_last=True)) == 2


def test_shuffle_determinism_and_set_epoch() -> None:
    a, b = small_loader(shuffle=True, seed=3), small_loader(shuffle=True, seed=3)
    labels = lambda ld: torch.cat([y for _, y in ld]).tolist()  # noqa: E731
    first = labels(a)
    assert first == labels(b) == labels(a)  # same (seed, epoch), and re-iteration repeats it
    assert sorted(first) == list(range(10))
    a.set_epoch(1)
    assert labels(a) != first
    assert labels(small_loader(shuffle=True, seed=4)) != first
    assert labels(small_loader()) == list(range(10))  # no shuffle: dataset order
    # the first K batches are produced lazily and equal the full epoch's prefix
    head = [y.tolist() for _, y in itertools.islice(iter(a), 2)]
    assert sum(head, []) == labels(a)[:8]


def test_ddp_sharding() -> None:
    shards = [small_loader(11, shuffle=True, world_size=2, rank=r, seed=1) for r in range(2)]
    seen = [torch.cat([y for _, y in ld]).tolist() for ld in shards]
    assert len(seen[0]) == len(seen[1]) == 6 and len(shards[0]) == len(shards[1]) == 2
    assert set(seen[0]) | set(seen[1]) == set(range(11))
    assert len(seen[0]) + len(seen[1]) == 12  # one index repeated as padding
    whole = small_loader(11, shuffle=True, seed=1).indices().tolist()
    assert seen[0] + seen[1] != whole and sorted(seen[0] + seen[1][:-1] + seen[1][-1:]) == sorted(whole + whole[:1])
    with pytest.raises(DataError):
        small_loader(4, rank=2, world_size=2)


def test_crop_and_flip_ops() -> None:
    x = torch.randint(1, 256, (3, 2, 6, 6), dtype=torch.uint8)
    assert torch.equal(random_crop(x, torch.full((3, 2), 4), 4), x)
    shifted = random_crop(x, torch.tensor([[0, 0], [8, 8], [4, 6]]), 4)
    assert torch.equal(shifted[0, :, 4:, 4:], x[0, :, :2, :2]) and shifted[0, :, :4].eq(0).all()
    assert torch.equal(shifted[1, :, :2, :2], x[1, :, 4:, 4:]) and shifted[1, :, 2:].eq(0).all()
    assert torch.equal(shifted[2, :, :, :4], x[2, :, :, 2:]) and shifted[2, :, :, 4:].eq(0).all()
    flags = torch.tensor([True, False, True])
    flipped = hflip_where(x, flags)
    assert torch.equal(flipped[1], x[1]) and torch.equal(flipped[0], x[0].flip(-1))
    assert torch.equal(hflip_where(flipped, flags), x)


def test_augmentation_keeps_content() -> None:
    torch.manual_seed(0)
    n, size, pad = 24, 8, 4
    images = torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8)
    loader = TensorLoader(images, torch.arange(n), batch_size=10, mean=(0,) * 3, std=(1,) * 3, augment=True, seed=5)
    out = torch.cat([(x * 255).round().to(torch.uint8) for x, _ in loader])
    labels = torch.cat([y for _, y in loader])
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    changed = 0
    for img, idx in zip(out, labels.tolist()):
        candidates = [
            c
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for c in (padded[idx, :, dy : dy + size, dx : dx + size],)
        ]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(img, c) for c in candidates)  # a crop of the padded image (maybe flipped)
        changed += not torch.equal(img, images[idx])
    assert changed > n // 2
    assert torch.equal(torch.cat([x for x, _ in loader]), torch.cat([x for x, _ in loader]))


# ---------------------------------------------------------------- build_loaders


def test_build_loaders_embedded() -> None:
    train, test, info = build_loaders("mnist_subset", batch_size=500, world_size=2, rank=1, train_subset=1000)
    assert info.name == "mnist_subset" and train.dataset_size == 1000 and len(train) == 1
    assert test.dataset_size == 1000 and len(test) == 4  # test set is never sharded
    x, y = next(iter(train))
    assert x.shape == (500, 1, 32, 32) and abs(float(x.mean())) < 0.5
    sub = torch.cat([y for _, y in build_loaders("mnist_subset", train_subset=1000)[0]])
    assert sub.bincount().tolist() == [100] * 10
    with pytest.raises(DataError) as exc:
        build_loaders("mnist_subset", train_subset=10**6)
    one_line_error(exc)


def test_load_arrays_bad_arguments() -> None:
    with pytest.raises(DataError):
        load_arrays("mnist", "validation")
    with pytest.raises(DataError, match="build_loaders"):
        load_arrays("imagenet", "train")


# ---------------------------------------------------------------- downloads (no network)


def test_download_md5_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "fetch_url", lambda url, dest, timeout=60.0: Path(dest).write_bytes(b"junk"))
    with pytest.raises(DataError) as exc:
        load_arrays("mnist", "train", tmp_path, download=True)
    assert "MD5" in one_line_error(exc)
    assert list((tmp_path / "MNIST" / "raw").iterdir()) == []


def test_download_success_and_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "server"
    fake_mnist(served, n=10)
    for fname in list(dl.MNIST_MD5):
        data = (served / "MNIST" / "raw" / fname).read_bytes()
        monkeypatch.setitem(dl.MNIST_MD5, fname, hashlib.md5(data).hexdigest())
    urls = []

    def fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
        urls.append(url)
        Path(dest).write_bytes((served / "MNIST" / "raw" / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(dl, "fetch_url", fetch)
    x, _ = load_arrays("mnist", "test", tmp_path / "root", download=True)
    assert x.shape == (10, 1, 32, 32) and all(u.startswith(dl.MNIST_URL) for u in urls) and len(urls) == 2
    load_arrays("mnist", "test", tmp_path / "root", download=True)
    assert len(urls) == 2  # present files are not fetched again

    def offline(url: str, dest: Path, timeout: float = 60.0) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(dl, "fetch_url", offline)
    with pytest.raises(DataError) as exc:
        load_arrays("mnist", "train", tmp_path / "root", download=True)
    msg = one_line_error(exc)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "root" / "MNIST" / "raw") in msg


def make_tar(path: Path, members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_cifar_download_and_unsafe_tar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = fake_cifar10(tmp_path / "src")
    members = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in src.iterdir()}
    tar_bytes = make_tar(tmp_path / "good.tar.gz", members)
    monkeypatch.setattr(dl, "CIFAR10_TAR_MD5", hashlib.md5(tar_bytes).hexdigest())
    monkeypatch.setattr(dl, "CIFAR10_MD5", {k.split("/")[1]: hashlib.md5(v).hexdigest() for k, v in members.items()})
    monkeypatch.setattr(dl, "fetch_url", lambda url, dest, timeout=60.0: Path(dest).write_bytes(tar_bytes))
    root = tmp_path / "root"
    x, y = load_arrays("cifar10", "test", root, download=True)
    assert x.shape == (4, 3, 32, 32) and not (root / "cifar-10-python.tar.gz").exists()

    evil = tmp_path / "evil.tar.gz"
    for bad in ("../escaped", "/abs/escaped"):
        make_tar(evil, {"ok.txt": b"fine", bad: b"x"})
        with pytest.raises(DataError, match="unsafe path"):
            dl.safe_extract(evil, tmp_path / "out")
        assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


# ---------------------------------------------------------------- ImageNet error paths


def test_imagefolder_class_check(tmp_path: Path) -> None:
    for split, classes in (("train", ["n01", "n02", "n03"]), ("val", ["n01", "n03", "n09"])):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
    with pytest.raises(DataError) as exc:
        check_imagefolder_classes(tmp_path / "train", tmp_path / "val")
    msg = one_line_error(exc)
    assert "n02" in msg and "n09" in msg and "n01" not in msg
    (tmp_path / "val" / "n02").mkdir()
    (tmp_path / "train" / "n09").mkdir()
    assert check_imagefolder_classes(tmp_path / "train", tmp_path / "val") == ["n01", "n02", "n03", "n09"]


def test_imagenet_without_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    with pytest.raises(DataError) as exc:
        build_loaders("imagenet", tmp_path)
    assert "pip install tpp-pruning[vision]" in one_line_error(exc)

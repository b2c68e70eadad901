"""Hostile inputs (issue 15, items 11-13): folder links that loop, memory bombs in data, specs and
config files, FIFOs and devices where files are expected, write failures, and option values
that made tpp run forever or do something else than asked. Each is refused in one line with a
non-zero exit, quickly, and leaves the user's files as they were."""

from __future__ import annotations

import gzip
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
import torch

from tpp.checkpoints import load_checkpoint, make_payload, save_checkpoint
from tpp.errors import CheckpointError, DataError
from tpp.models import create_model

DATA = ["--dataset", "mnist_subset"]
REPO = Path(__file__).resolve().parents[1]


def _refused(run_cli, *args, words: tuple[str, ...]) -> str:
    """Run ``tpp *args``: exit 2 and one ``tpp: error:`` line holding every word of ``words``."""
    result = run_cli(*args)
    assert result.code == 2, (result.code, result.out, result.err)
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("tpp: error: "), result.err
    line = result.err_lines[0]
    for word in words:
        assert word in line, (word, line)
    return line


def _snapshot(*roots: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under ``roots`` (links not followed): mode, mtime and the bytes of regular files
    (a folder's mtime is left out: a temporary file made and removed in it changes only that)."""
    seen = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            info = path.lstat()
            regular = path.is_file() and not path.is_symlink()
            seen[str(path)] = (info.st_mode, info.st_mtime_ns if regular else 0, path.read_bytes() if regular else b"")
    return seen


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) if the test body blocks for 20 s, e.g. on a FIFO."""

    def alarm(*_):
        raise TimeoutError("blocked for 20 s (a FIFO was opened?)")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _png(path: Path, size: tuple[int, int] = (4, 4), value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def _bomb_png(path: Path, width: int, height: int) -> None:
    """A 70-byte PNG whose header declares ``width`` x ``height`` pixels (its IHDR patched)."""
    _png(path, (1, 1))
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


@pytest.fixture
def image_root(tmp_path) -> Path:
    """``photos/{train,val}/{a,b}/`` with two 4x4 grey PNGs each."""
    root = tmp_path / "photos"
    for split in ("train", "val"):
        for label, name in enumerate("ab"):
            for i in range(2):
                _png(root / split / name / f"{i}.png", value=100 * label)
    return root


def _train_on_folder(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        "mlp7_linear",
        "--dataset",
        "imagefolder",
        "--data-dir",
        root,
        "--image-size",
        "32",
        "--channels",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--out",
        out,
        "--quiet",
        *extra,
    ]


# ------------------------------------------------------------------ 11. image folders and links


def test_a_link_back_to_the_split_folder_is_refused_not_followed(run_cli, image_root, tmp_path):
    os.symlink("..", image_root / "train" / "a" / "loop")
    before = _snapshot(image_root)
    out = tmp_path / "run"
    _refused(
        run_cli,
        *_train_on_folder(image_root, out),
        words=("train/a/loop", "loop of symbolic links", "remove or replace the link"),
    )
    assert not out.exists() and _snapshot(image_root) == before


def test_two_link_loops_end_at_once(image_root):
    from tpp.data.imagefolder import list_images

    os.symlink("..", image_root / "train" / "a" / "loop")
    os.symlink("..", image_root / "train" / "b" / "loop")
    (image_root / "train" / "a" / "sub").mkdir()
    os.symlink("../..", image_root / "train" / "a" / "sub" / "up")
    started = time.perf_counter()
    with pytest.raises(DataError, match="loop of symbolic links"):
        list_images(image_root / "train", ["a", "b"])
    assert time.perf_counter() - started < 1


def test_a_link_inside_a_class_folder_to_itself_is_a_loop(image_root):
    from tpp.data.imagefolder import list_images

    (image_root / "train" / "a" / "sub").mkdir()
    os.symlink("..", image_root / "train" / "a" / "sub" / "up")  # -> train/a, walked already
    with pytest.raises(DataError, match=r"already read as .*train/a \(a loop"):
        list_images(image_root / "train", ["a", "b"])


def test_a_link_into_another_class_would_mislabel_and_is_refused(image_root):
    from tpp.data.imagefolder import list_images

    os.symlink("../b", image_root / "train" / "a" / "more")
    with pytest.raises(DataError, match="folder of class 'b'.*labelled 'a'"):
        list_images(image_root / "train", ["a", "b"])


def test_a_link_to_images_elsewhere_is_followed_and_labelled_by_its_class(image_root, tmp_path):
    from tpp.data.imagefolder import list_images

    _png(tmp_path / "elsewhere" / "x.png")
    os.symlink(tmp_path / "elsewhere", image_root / "train" / "a" / "more")
    files, labels = list_images(image_root / "train", ["a", "b"])
    assert [f.relative_to(image_root / "train").as_posix() for f in files] == [
        "a/0.png",
        "a/1.png",
        "a/more/x.png",
        "b/0.png",
        "b/1.png",
    ]
    assert labels.tolist() == [0, 0, 0, 1, 1]


def test_a_fifo_named_like_an_image_is_refused_not_opened(run_cli, image_root, tmp_path, no_hang):
    os.mkfifo(image_root / "train" / "b" / "2.png")
    _refused(run_cli, *_train_on_folder(image_root, tmp_path / "run"), words=("2.png", "named pipe (FIFO)"))


# ------------------------------------------------------------------ 12. memory bombs


def _idx_gzip(path: Path, dims: tuple[int, ...], magic: int, payload: bytes = b"", zero_mib: int = 0) -> None:
    """A gzip IDX file whose header says ``dims``, holding ``payload`` and then ``zero_mib`` MiB of zeros."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as handle:
        handle.write(header + payload)
        zeros = bytes(2**20)
        for _ in range(zero_mib):
            handle.write(zeros)


def _fake_mnist(root: Path, n: int = 20) -> None:
    for prefix in ("train", "t10k"):
        raw = root / "MNIST" / "raw"
        _idx_gzip(raw / f"{prefix}-images-idx3-ubyte.gz", (n, 28, 28), 0x803, bytes(n * 28 * 28))
        _idx_gzip(raw / f"{prefix}-labels-idx1-ubyte.gz", (n,), 0x801, bytes(i % 10 for i in range(n)))


def test_a_gzip_bomb_is_refused_after_inflating_only_what_its_header_promises(run_cli, tmp_path):
    from tpp.data.mnist import read_idx

    bomb = tmp_path / "bomb.gz"
    _idx_gzip(bomb, (2, 28, 28), 0x803, zero_mib=50)  # 2 images promised, 50 MB of zeros inside
    assert bomb.stat().st_size < 2**20
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DataError, match="more bytes than the 1568 the header"):
            read_idx(bomb, 0x803)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1 and peak < 4 * 2**20


def test_an_idx_header_promising_gigabytes_is_refused_before_reading(run_cli, tmp_path):
    _fake_mnist(tmp_path / "data")
    images = tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    _idx_gzip(images, (10**6, 1000, 1000), 0x803, zero_mib=1)
    before = _snapshot(tmp_path / "data")
    _refused(
        run_cli,
        "train",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist",
        "--data-dir",
        tmp_path / "data",
        "--epochs",
        "1",
        "--out",
        tmp_path / "run",
        "--quiet",
        words=("t10k-images-idx3-ubyte.gz", "promises 1000000000000 bytes", "re-download"),
    )
    assert _snapshot(tmp_path / "data") == before and not (tmp_path / "run").exists()


def _checkpoint_with_spec(path: Path, **spec) -> Path:
    model = create_model("mlp7_linear", num_classes=10, in_channels=1)
    payload = make_payload(model)
    payload["tpp_spec"] = {**payload["tpp_spec"], **spec}
    save_checkpoint(path, payload)
    return path


def test_a_spec_bomb_in_a_checkpoint_is_refused_before_any_allocation(run_cli, tmp_path):
    bomb = _checkpoint_with_spec(tmp_path / "bomb.pt", width=100_000)  # 5 layers of 40 GB
    before = _snapshot(tmp_path)
    started = time.perf_counter()
    _refused(
        run_cli,
        "eval",
        "--checkpoint",
        bomb,
        *DATA,
        words=("bomb.pt records the model mlp7_linear", "GB of weights", "record is damaged"),
    )
    assert time.perf_counter() - started < 2  # the 200 GB were never touched
    assert _snapshot(tmp_path) == before
    import tpp

    with pytest.raises(CheckpointError, match="record is damaged"):
        tpp.load_pruned(bomb)


def test_a_spec_bomb_the_user_confirms_is_bounded_by_free_memory(run_cli, tmp_path, monkeypatch):
    from tpp.models import budget

    monkeypatch.setattr(budget, "spare_memory", lambda: 2**30)  # the same on every machine
    bomb = _checkpoint_with_spec(tmp_path / "bomb.pt", width=100_000)
    _refused(
        run_cli,
        "eval",
        "--checkpoint",
        bomb,
        "--model",
        "mlp7_linear",
        *DATA,
        words=("mlp7_linear needs", "more than this machine can spare"),
    )


def test_a_billion_classes_in_a_spec_are_refused(run_cli, tmp_path):
    bomb = _checkpoint_with_spec(tmp_path / "bomb.pt", num_classes=10**9)
    _refused(run_cli, "eval", "--checkpoint", bomb, *DATA, words=("num_classes 1000000000", "more than the 1000000"))


def test_a_huge_hf_config_in_a_spec_is_measured_on_the_meta_device(tmp_path):
    from tpp.models import model_from_record

    model = create_model("mlp7_linear", num_classes=10, in_channels=1)
    record = {
        "spec": "hf:ResNetForImageClassification",
        "num_classes": 10,
        "in_channels": 3,
        "hf_class": "ResNetForImageClassification",
        "hf_config": {
            "model_type": "resnet",
            "embedding_size": 64,
            "hidden_sizes": [100_000] * 4,
            "depths": [1, 1, 1, 1],
            "layer_type": "basic",
        },
    }
    path = tmp_path / "hf.pt"
    save_checkpoint(path, {**make_payload(model), "tpp_spec": record})
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="records the model hf:ResNetForImageClassification with .* GB"):
        model_from_record(record, source=str(path))
    assert time.perf_counter() - started < 20  # mostly importing transformers


def test_config_from_dev_zero_is_refused_without_reading_it(run_cli, tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    _refused(run_cli, "train", "--config", "/dev/zero", words=("/dev/zero", "character device", "YAML file"))


def test_a_config_file_of_megabytes_is_refused(run_cli, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 300_000)
    _refused(run_cli, "train", "--config", big, words=("big.yaml", "larger than 1 MiB"))


def test_fifos_as_config_checkpoint_or_weights_are_refused_not_opened(run_cli, tmp_path, no_hang):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _refused(run_cli, "train", "--config", fifo, words=("pipe", "named pipe (FIFO)"))
    _refused(run_cli, "eval", "--checkpoint", fifo, *DATA, words=("pipe", "named pipe (FIFO)", "regular file"))
    _refused(
        run_cli,
        "eval",
        "--model",
        "mlp7_linear",
        "--weights",
        fifo,
        *DATA,
        words=("pipe", "named pipe (FIFO)", "regular file"),
    )
    _fake_mnist(tmp_path / "data")
    labels = tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    os.mkfifo(labels)
    from tpp.data import load_arrays

    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is a named pipe"):
        load_arrays("mnist", "test", tmp_path / "data", download=True)  # neither read nor replaced
    assert labels.is_fifo()


def test_a_recipe_that_is_a_fifo_a_device_or_megabytes_is_refused(run_cli, tmp_path, no_hang):
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    _refused(run_cli, "run", fifo, "--dry-run", words=("recipe.yaml", "not a file"))
    _refused(run_cli, "run", "/dev/zero", "--dry-run", words=("/dev/zero", "not a file"))
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 300_000)
    _refused(run_cli, "run", big, "--dry-run", words=("big.yaml", "larger than 1 MiB"))


# ------------------------------------------------------------------ 13. tracebacks and silent wrongs


TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


def test_a_short_checkpoint_write_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    save_checkpoint(target, {"w": torch.ones(3)})
    before = _snapshot(tmp_path)

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise RuntimeError(TORCH_SHORT_WRITE)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="disk is full or a file-size limit") as error:
        save_checkpoint(target, {"w": torch.zeros(3)})
    assert "\n" not in str(error.value) and "inline_container" not in str(error.value)
    assert _snapshot(tmp_path) == before  # old file intact, no temporary file left
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(target)["w"], torch.ones(3))


def test_a_file_size_limit_while_saving_is_one_line_for_real(tmp_path):
    """The same under a real RLIMIT_FSIZE: torch's zip writer fails with 'unexpected pos'."""
    script = (
        "import resource, sys, torch\n"
        "from tpp.checkpoints import save_checkpoint\n"
        "from tpp.errors import CheckpointError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "try:\n"
        "    save_checkpoint(sys.argv[1], {'w': torch.zeros(100_000)})\n"
        "except CheckpointError as error:\n"
        "    print(error)\n"
    )
    target = tmp_path / "last.pt"
    target.write_bytes(b"the user's old checkpoint")
    result = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 0, result.stderr
    assert "disk is full or a file-size limit" in result.stdout and result.stdout.count("\n") == 1
    assert target.read_bytes() == b"the user's old checkpoint" and os.listdir(tmp_path) == ["last.pt"]


def test_a_png_bomb_is_one_line_naming_the_file(run_cli, image_root, tmp_path):
    _bomb_png(image_root / "val" / "b" / "huge.png", 20_000, 20_000)
    assert (image_root / "val" / "b" / "huge.png").stat().st_size < 100
    before = _snapshot(image_root)
    _refused(
        run_cli,
        *_train_on_folder(image_root, tmp_path / "run"),
        words=("huge.png", "too large to decode safely", "shrink it or remove it"),
    )
    assert _snapshot(image_root) == before


def test_a_png_bomb_decoded_by_a_worker_process_is_one_line_too(image_root):
    from tpp.data.imagefolder import ImageFileLoader, ImageFolderOptions, list_images

    _bomb_png(image_root / "train" / "a" / "huge.png", 20_000, 20_000)
    files, labels = list_images(image_root / "train", ["a", "b"])
    loader = ImageFileLoader(
        files,
        labels,
        ImageFolderOptions(image_size=8, channels=1),
        num_workers=1,
        batch_size=8,
        mean=(0.5,),
        std=(0.5,),
    )
    with pytest.raises(DataError) as error:
        list(loader)
    assert "huge.png" in str(error.value) and "\n" not in str(error.value) and "Traceback" not in str(error.value)


def test_deeply_nested_yaml_is_one_line(run_cli, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("epochs: " + "[" * 1000 + "]" * 1000 + "\n")
    _refused(run_cli, "train", "--config", deep, words=("deep.yaml", "not valid YAML", "nested too deeply"))


@pytest.mark.parametrize("seed", [str(2**63), str(2**70), "-1"])
def test_seeds_outside_int64_are_refused_by_the_option_check(run_cli, tmp_path, seed):
    _refused(
        run_cli,
        "train",
        "--model",
        "mlp7_linear",
        *DATA,
        "--seed",
        seed,
        "--out",
        tmp_path / "run",
        words=("--seed", "0..2**63-1"),
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["sparse", "meta"])
def test_sparse_or_meta_tensors_in_a_state_dict_are_one_line(run_cli, tmp_path, kind):
    state = create_model("mlp7_linear", num_classes=10, in_channels=1).state_dict()
    weight = state["fc1.weight"]
    state["fc1.weight"] = weight.to_sparse() if kind == "sparse" else torch.empty_like(weight, device="meta")
    path = tmp_path / "state.pt"
    torch.save(state, path)
    _refused(
        run_cli,
        "eval",
        "--checkpoint",
        path,
        "--model",
        "mlp7_linear",
        *DATA,
        words=("fc1.weight", "sparse_coo tensor" if kind == "sparse" else "meta tensor"),
    )
    _refused(
        run_cli,
        "eval",
        "--model",
        "mlp7_linear",
        "--weights",
        path,
        *DATA,
        words=("fc1.weight", "sparse_coo" if kind == "sparse" else "meta tensor"),
    )


def test_export_refuses_an_opset_the_exporter_cannot_write(run_cli, tmp_path):
    out = tmp_path / "model.onnx"
    _refused(
        run_cli,
        "export",
        "--checkpoint",
        tmp_path / "pruned.pt",
        "--out",
        out,
        "--opset",
        "1",
        words=("opset 1", "between 7 and"),
    )
    assert not out.exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64])
def test_integer_or_complex_weights_are_refused_not_cast(run_cli, tmp_path, dtype):
    model = create_model("mlp7_linear", num_classes=10, in_channels=1)
    payload = make_payload(model)
    payload["model"] = {k: (v * 100).to(dtype) for k, v in payload["model"].items()}
    path = tmp_path / "cast.pt"
    save_checkpoint(path, payload)
    name = str(dtype).removeprefix("torch.")
    _refused(run_cli, "eval", "--checkpoint", path, *DATA, words=("cast.pt", "not real floating-point", name))
    torch.save(payload["model"], tmp_path / "weights.pt")
    _refused(
        run_cli,
        "eval",
        "--model",
        "mlp7_linear",
        "--weights",
        tmp_path / "weights.pt",
        *DATA,
        words=("weights.pt", "not floating-point", name),
    )
    import tpp
    from tpp.errors import CheckpointError

    tpp.save_pruned(model, tmp_path / "pruned.pt")
    pruned = torch.load(tmp_path / "pruned.pt", weights_only=True)
    pruned["model"] = payload["model"]
    torch.save(pruned, tmp_path / "pruned.pt")
    with pytest.raises(CheckpointError, match=f"not real floating-point.*{name}"):
        tpp.load_pruned(tmp_path / "pruned.pt")


def test_eval_of_nan_weights_says_so_instead_of_printing_loss_nan(run_cli, tmp_path):
    model = create_model("mlp7_linear", num_classes=10, in_channels=1)
    with torch.no_grad():
        model.fc3.weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "diverged.pt", make_payload(model))
    result = run_cli("eval", "--checkpoint", path, *DATA)
    assert result.code == 2 and "loss nan" not in result.out
    assert len(result.err_lines) == 1 and "non-finite weights" in result.err and "fc3.weight" in result.err


def test_an_empty_out_is_refused_not_replaced_by_a_default_folder(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(run_cli, "train", "--model", "mlp7_linear", *DATA, "--epochs", "1", "--out", "", words=("--out", "empty"))
    _refused(run_cli, "export", "--checkpoint", "x.pt", "--out", " ", words=("--out", "empty"))
    assert list(tmp_path.iterdir()) == []


def test_a_train_subset_smaller_than_the_classes_is_refused(run_cli, tmp_path):
    _refused(
        run_cli,
        "train",
        "--model",
        "mlp7_linear",
        *DATA,
        "--epochs",
        "1",
        "--train-subset",
        "7",
        "--out",
        tmp_path / "run",
        words=("train_subset=7", "10 classes", "at least 10"),
    )
    assert not (tmp_path / "run").exists()


def test_absurd_epoch_counts_are_refused_with_the_time_they_would_take(run_cli, tmp_path):
    line = _refused(
        run_cli,
        "train",
        "--model",
        "mlp7_linear",
        *DATA,
        "--epochs",
        str(10**12),
        "--out",
        tmp_path / "run",
        words=("--epochs", "1..10000", "years"),
    )
    assert "3.17e+04 years" in line
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 20000\n")
    _refused(run_cli, "train", "--config", config, "--model", "mlp7_linear", *DATA, words=("epochs", "1..10000"))
    _refused(
        run_cli,
        "prune",
        "--method",
        "l1",
        "--model",
        "mlp7_linear",
        *DATA,
        "--ft-epochs",
        str(10**9),
        words=("--ft-epochs", "0..10000", "years"),
    )
    assert not (tmp_path / "run").exists()

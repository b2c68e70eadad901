"""``--dataset imagefolder``: layout checks, decoding (PIL only), normalisation, both loaders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tpp.data import build_loaders, dataset_info
from tpp.data.embedded import load_mnist_subset
from tpp.data.imagefolder import ImageFolderOptions, build_imagefolder_loaders, decode_all, decode_image, list_images
from tpp.errors import DataError

DIGITS = [f"digit_{k}" for k in range(10)]


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_digit_pngs_decode_like_the_builtin_subset(digit_folder: Path) -> None:
    info = dataset_info("imagefolder", digit_folder, ImageFolderOptions(image_size=32, channels=1))
    assert (info.name, info.num_classes, info.in_channels, info.image_size) == ("imagefolder", 10, 1, 32)
    assert info.classes == tuple(DIGITS) and info.mean == (0.449,) and info.std == (0.226,)
    files, labels = list_images(digit_folder / "val", info.classes)
    assert len(files) == 300 and torch.bincount(labels).tolist() == [30] * 10
    # the 28x28 PNGs resized to 32 (PIL bilinear) are the built-in subset's 32x32 digits, whose
    # resize reimplements PIL's filter in float: equal up to PIL's fixed-point rounding
    images, subset_labels = load_mnist_subset("test")
    index = [int(f.stem) for f in files]
    decoded = decode_all(files, ImageFolderOptions(image_size=32, channels=1))
    assert decoded.shape == (300, 1, 32, 32) and decoded.dtype == torch.uint8
    assert torch.equal(labels, subset_labels[index])
    diff = (decoded.int() - images[index].int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.1


def test_resize_and_centre_crop_geometry(tmp_path: Path) -> None:
    # a 40x20 RGB image whose red channel is the column index x 6: the shorter side goes to 10,
    # the width to 20, and the centre crop keeps the middle half of the columns
    columns = np.tile((np.arange(40) * 6).astype(np.uint8), (20, 1))
    array = np.stack([columns, np.full_like(columns, 7), np.zeros_like(columns)], axis=-1)
    Image.fromarray(array).save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", ImageFolderOptions(image_size=10, channels=3))
    assert out.shape == (3, 10, 10) and out.dtype == np.uint8
    assert np.all(out[1] == 7) and np.all(out[2] == 0)
    red = out[0].astype(float).mean(axis=0)
    assert np.all(np.diff(red) > 0)  # still increasing left to right
    assert 60 <= red[0] <= 75 and 162 <= red[-1] <= 177  # columns ~10..29 of the original
    gray = decode_image(tmp_path / "wide.png", ImageFolderOptions(image_size=8, resize=12, channels=1))
    assert gray.shape == (1, 8, 8)
    Image.fromarray(array).convert("P").save(tmp_path / "palette.png")  # palette images convert too
    assert decode_image(tmp_path / "palette.png", ImageFolderOptions(image_size=10)).shape == (3, 10, 10)


def test_normalisation_presets_and_overrides() -> None:
    assert ImageFolderOptions().mean_std() == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert ImageFolderOptions(channels=3, normalize="mnist").mean_std() == ((0.1307,) * 3, (0.3081,) * 3)
    assert ImageFolderOptions(channels=1, mean=(0.5,), std=(0.25,)).mean_std() == ((0.5,), (0.25,))
    assert ImageFolderOptions(mean=(0.1, 0.2, 0.3), normalize="none").mean_std() == ((0.1, 0.2, 0.3), (1.0,) * 3)
    for bad in (
        dict(channels=1, mean=(0.1, 0.2, 0.3)),
        dict(std=(0.0,)),
        dict(image_size=64, resize=32),
        dict(channels=2),
        dict(normalize="cifar"),
    ):
        with pytest.raises(DataError) as excinfo:
            ImageFolderOptions(**bad)
        one_line(excinfo)


def _copy_layout(src: Path, dst: Path, per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for name in DIGITS[:3]:
            (dst / split / name).mkdir(parents=True)
            for f in sorted((src / split / name).iterdir())[:per_class]:
                shutil.copy(f, dst / split / name / f.name)
    return dst


def test_bad_layouts_are_one_line_errors(digit_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        dataset_info("imagefolder")
    assert "--data-dir" in one_line(excinfo) and "train/<class>" in one_line(excinfo)
    with pytest.raises(DataError) as excinfo:
        dataset_info("imagefolder", tmp_path / "absent")
    assert "does not exist" in one_line(excinfo)
    root = _copy_layout(digit_folder, tmp_path / "ok")
    assert dataset_info("imagefolder", root).classes == tuple(DIGITS[:3])
    shutil.rmtree(root / "val")
    with pytest.raises(DataError) as excinfo:
        dataset_info("imagefolder", root)
    assert "no val/ sub-folder" in one_line(excinfo)
    root = _copy_layout(digit_folder, tmp_path / "mismatch")
    shutil.rmtree(root / "val" / "digit_2")
    with pytest.raises(DataError) as excinfo:
        dataset_info("imagefolder", root)
    assert "digit_2" in one_line(excinfo)
    root = _copy_layout(digit_folder, tmp_path / "empty")
    for f in (root / "train" / "digit_1").iterdir():
        f.rename(f.with_suffix(".txt"))
    with pytest.raises(DataError) as excinfo:
        build_loaders("imagefolder", root)
    assert "digit_1 holds no images" in one_line(excinfo)
    root = _copy_layout(digit_folder, tmp_path / "corrupt")
    next((root / "val" / "digit_0").iterdir()).write_bytes(b"not a png")
    with pytest.raises(DataError) as excinfo:
        build_loaders("imagefolder", root, image_options=ImageFolderOptions(image_size=28))
    assert "cannot read image" in one_line(excinfo)


def _batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_loader_gives_the_in_memory_batches(digit_folder: Path, workers: int) -> None:
    options = dict(image_size=28, resize=30, channels=1, normalize="mnist", augment=True)
    common = dict(batch_size=64, test_batch_size=100, seed=3, num_workers=workers)
    memory = build_imagefolder_loaders(digit_folder, ImageFolderOptions(in_memory=True, **options), **common)
    stream = build_imagefolder_loaders(digit_folder, ImageFolderOptions(in_memory=False, **options), **common)
    assert type(memory[0]).__name__ == "TensorLoader" and type(stream[0]).__name__ == "ImageFileLoader"
    for split in (0, 1):
        assert len(memory[split]) == len(stream[split])
        for epoch in (0, 1):
            for (xm, ym), (xs, ys) in zip(_batches(memory[split], epoch), _batches(stream[split], epoch)):
                assert torch.equal(ym, ys) and torch.equal(xm, xs)
    first, second = _batches(memory[0], 0)[0][1], _batches(memory[0], 1)[0][1]
    assert not torch.equal(first, second)  # shuffled per epoch
    x, y = next(iter(memory[1]))
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32 and abs(float(x.mean())) < 0.5


def test_build_loaders_keeps_a_class_balanced_subset(digit_folder: Path) -> None:
    train, val, info = build_loaders(
        "imagefolder", digit_folder, batch_size=50, train_subset=50, image_options=ImageFolderOptions(image_size=32)
    )
    assert info.in_channels == 3 and train.dataset_size == 50 and val.dataset_size == 300
    labels = torch.cat([y for _, y in train])
    assert torch.bincount(labels).tolist() == [5] * 10
    with pytest.raises(DataError):
        build_loaders("imagefolder", digit_folder, train_subset=5000)


def test_image_options_belong_to_imagefolder(run_cli) -> None:
    result = run_cli(
        "train", "--model", "mlp7_linear", "--dataset", "mnist_subset", "--image-size", "64", "--epochs", "1", "--quiet"
    )
    assert result.code == 2 and len(result.err_lines) == 1
    assert "--image-size applies to --dataset imagefolder only" in result.err

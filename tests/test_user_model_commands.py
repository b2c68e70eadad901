"""A practitioner's own model beyond train/prune/eval: ``tpp export``, ``tpp bench latency`` and recipes
(``tpp run``) with ``mymodels:res_cnn`` (a module:function factory in the current folder), an image
folder and an ``hf:`` folder; a file's recorded factory is imported only when named with --model."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from tests.user_model_zoo import one_line_error, write_png_folder

MODEL = "mymodels:res_cnn"
MYMODELS = '''\
from torch import nn


def res_cnn(num_classes=10, in_channels=3):
    """A small conv net with one residual-free block pair: prunable, exported in milliseconds."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))
'''
DATA = [
    "--dataset",
    "imagefolder",
    "--data-dir",
    "photos",
    "--image-size",
    "16",
    "--channels",
    "1",
    "--normalize",
    "mnist",
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``tmp_path`` as the current folder, holding mymodels.py, photos/ (3 digit classes as PNGs,
    8 train and 4 val images each) and w.pt (random weights of the 3-class grayscale res_cnn)."""
    from tpp.data.embedded import _read_npz

    arrays = _read_npz()
    for split, x, y, per_class in (("train", "x_train", "y_train", 8), ("val", "x_test", "y_test", 4)):
        keep = arrays[y] < 3
        write_png_folder(tmp_path / "photos", arrays[x][keep], arrays[y][keep], split, per_class)
    (tmp_path / "mymodels.py").write_text(MYMODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # tpp adds the current folder for module:function
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    namespace: dict = {}
    exec(compile(MYMODELS, "mymodels.py", "exec"), namespace)  # the weights, without importing the module
    torch.manual_seed(0)
    torch.save(namespace["res_cnn"](3, 1).state_dict(), tmp_path / "w.pt")
    yield tmp_path
    sys.modules.pop("mymodels", None)


def _pruned_job(run_cli) -> Path:
    """``tpp prune`` of the factory model from w.pt (no fine-tuning): the job's pruned_model.pt."""
    result = run_cli(
        "prune",
        "--method",
        "l1",
        "--model",
        MODEL,
        "--weights",
        "w.pt",
        *DATA,
        "--ratio",
        "0.5",
        "--scope",
        "all",
        "--ft-epochs",
        "0",
        "--jsv-batches",
        "0",
        "--out",
        "job",
        "--quiet",
    )
    assert result.code == 0, result.err
    sys.modules.pop("mymodels", None)  # a fresh process: nothing imported but what the command names
    return Path("job") / "pruned_model.pt"


def test_export_takes_model_and_checkpoint_for_a_factory_in_the_current_folder(workdir, run_cli):
    pruned = _pruned_job(run_cli)
    assert "--model SPEC" in run_cli("export", "--help").out
    # the file names the factory, but only the user's --model may import it
    refused = run_cli("export", "--checkpoint", pruned, "--out", "m.onnx")
    one_line_error(refused, "does not import code on a file's say-so", f"pass --model {MODEL}")
    assert "mymodels" not in sys.modules and not Path("m.onnx").exists()
    result = run_cli("export", "--checkpoint", pruned, "--model", MODEL, "--out", "m.onnx")
    assert result.code == 0 and "wrote m.onnx" in result.out, result.err
    onnx = pytest.importorskip("onnx")
    graph = onnx.load("m.onnx").graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:] == [1, 16, 16]
    kept = {init.name: list(init.dims) for init in graph.initializer if len(init.dims) == 4}
    assert sorted(dims[0] for dims in kept.values()) == [4, 8]  # 8 and 16 channels halved
    # a plain state_dict: the architecture is --model's, its shape the given one
    one_line_error(run_cli("export", "--checkpoint", "w.pt", "--out", "w.onnx"), "pass --model SPEC")
    result = run_cli(
        "export",
        "--checkpoint",
        "w.pt",
        "--model",
        MODEL,
        "--num-classes",
        "3",
        "--in-channels",
        "1",
        "--image-size",
        "16",
        "--out",
        "w.onnx",
    )
    assert result.code == 0 and Path("w.onnx").stat().st_size > 1000, result.err
    one_line_error(run_cli("export", "--model", MODEL, "--out", "x.onnx"), "--checkpoint is required")
    one_line_error(run_cli("export", "--out", "x.onnx"), "--checkpoint FILE or --model SPEC is required")


def test_bench_latency_times_any_spec_and_a_pruned_file_as_a_table(workdir, run_cli):
    pruned = _pruned_job(run_cli)
    fast = ["--batch-sizes", "1,2", "--repeats", "3", "--threads", "1", "--backends", "torch"]
    result = run_cli(
        "bench",
        "latency",
        "--model",
        MODEL,
        "--num-classes",
        "3",
        "--in-channels",
        "1",
        "--image-size",
        "16",
        "--ratio",
        "0.5",
        "--scope",
        "all",
        *fast,
        "--out",
        "lat.json",
    )
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"{MODEL}, ratio 0.5 (scope all): input 1x16x16")
    assert lines[1].split() == [
        "backend",
        "batch",
        "model",
        "median",
        "ms",
        "IQR",
        "ms",
        "p90",
        "ms",
        "samples/s",
        "speedup",
        "FLOPs",
        "speedup",
    ]
    rows = [line.split() for line in lines[3:] if line.startswith("torch")]
    assert [(r[1], r[2]) for r in rows] == [("1", "base"), ("1", "pruned"), ("2", "base"), ("2", "pruned")]
    assert all(float(r[3]) > 0 and float(r[6].replace(",", "")) > 0 for r in rows)
    saved = json.loads(Path("lat.json").read_text())
    assert len(saved["rows"]) == 2 and saved["params"]["pruned"] < saved["params"]["base"]
    assert rows[1][-1] == f"{saved['rows'][0]['flops_speedup']:.2f}x" and saved["rows"][0]["flops_speedup"] > 2
    assert not any(line.startswith("{") for line in lines)  # JSON only in the file
    # a pruned file: its own architecture against the unpruned one it records
    sys.modules.pop("mymodels", None)
    one_line_error(run_cli("bench", "latency", "--checkpoint", pruned, *fast), f"pass --model {MODEL}")
    assert "mymodels" not in sys.modules
    result = run_cli("bench", "latency", "--checkpoint", pruned, "--model", MODEL, *fast, "--json")
    assert result.code == 0, result.err
    measured = json.loads(result.out)
    assert measured["input_shape"] == [1, 16, 16] and measured["checkpoint"] == str(pruned)
    report = json.loads((pruned.parent / "report.json").read_text())
    assert measured["params"]["pruned"] == report["counts_after"]["params"]
    assert measured["rows"][0]["flops_speedup"] == pytest.approx(report["speedup"])
    one_line_error(
        run_cli("bench", "latency", "--checkpoint", pruned, "--model", MODEL, "--ratio", "0.3"),
        "drop it with --checkpoint",
    )


def test_bench_latency_and_a_recipe_take_an_hf_folder(workdir, run_cli):
    from transformers import ResNetConfig

    ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3
    ).save_pretrained("tiny-resnet")
    result = run_cli(
        "bench",
        "latency",
        "--model",
        "hf:tiny-resnet",
        "--in-channels",
        "1",
        "--num-classes",
        "3",
        "--image-size",
        "16",
        "--ratio",
        "0.5",
        "--batch-sizes",
        "1",
        "--repeats",
        "2",
        "--threads",
        "1",
        "--backends",
        "torch",
    )
    assert result.code == 0, result.err
    assert result.out.startswith("hf:tiny-resnet, ratio 0.5") and "pruned" in result.out
    Path("hf.yaml").write_text(
        "model: hf:tiny-resnet\ndataset: imagefolder\ndata_dir: photos\nimage_size: 16\n"
        "channels: 1\nbase: {epochs: 1, lr: '0.01'}\nprune: {methods: [l1], ratios: [0.5]}\n"
    )
    result = run_cli("run", "hf.yaml", "--dry-run")
    assert result.code == 0, result.err
    assert "recipe hf: 1 jobs" in result.out and "FLOPs speedup" in result.out and "can be read" in result.out


def test_a_minimal_recipe_with_a_factory_and_an_image_folder_dry_runs_and_runs(workdir, run_cli):
    recipe = (
        "model: mymodels:res_cnn\ndataset: imagefolder\ndata_dir: photos\nimage_size: 16\nchannels: 1\n"
        "normalize: mnist\ncheckpoint: w.pt\nprune:\n  methods: [l1]\n  ratios: [0.5]\n  scope: all\n"
    )
    Path("mine.yaml").write_text(recipe)
    result = run_cli("run", "mine.yaml", "--dry-run", "--out", "runs")
    assert result.code == 0, result.err
    assert result.out.startswith("recipe mine: 1 jobs into runs")  # no paper, hardware or wall time needed
    counted = float(re.search(r"0\.5: FLOPs speedup ([0-9.]+)x", result.out).group(1))
    assert "checkpoint w.pt: loads into mymodels:res_cnn" in result.out
    assert "data: imagefolder can be read" in result.out and "0:0.01,60:0.001,90:0.0001" in result.out
    assert not Path("runs").exists()
    Path("mine.yaml").write_text(recipe + "batch_size: 8\nfinetune: {epochs: 1, lrs: ['0.01']}\njsv: {batches: 0}\n")
    result = run_cli("run", "mine.yaml", "--out", "runs", "--quiet")
    assert result.code == 0 and "1 job(s) finished" in result.out, result.err
    job = Path("runs") / "l1__r0.5__lr0.01__s0"
    config = json.loads((job / "config.json").read_text())
    assert (config["model"], config["data_dir"], config["image_size"], config["channels"]) == (MODEL, "photos", 16, 1)
    report = json.loads((job / "report.json").read_text())
    assert report["counts_after"]["params"] < report["counts_before"]["params"]
    assert report["speedup"] == pytest.approx(counted, abs=0.005) and counted > 2  # the dry run counted it right
    evaluated = run_cli("eval", "--checkpoint", job / "pruned_model.pt", "--model", MODEL)  # its data is recorded
    assert evaluated.code == 0 and f"top-1 {report['finetune']['last_top1']:.2f}%" in evaluated.out, evaluated.err
    sys.modules.pop("mymodels", None)
    result = run_cli("export", "--checkpoint", job / "pruned_model.pt", "--model", MODEL, "--out", "mine.onnx")
    assert result.code == 0 and Path("mine.onnx").is_file(), result.err


@pytest.mark.parametrize(
    "extra, message",
    [
        ("dataset: mnist\nresize: 40\n", "resize applies to dataset: imagefolder"),
        ("dataset: mnist\nimage_size: 64\n", "mnist has its own 32x32 images"),
        ("dataset: imagefolder\nchannels: 2\n", "channels must be 1"),
        ("dataset: imagefolder\naugment: yes please\n", "augment must be true or false"),
    ],
)
def test_recipe_image_options_are_checked(tmp_path, extra, message):
    from tpp.errors import ConfigError
    from tpp.recipes import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(f"model: {MODEL}\ncheckpoint: null\nprune: {{methods: [l1], ratios: [0.5]}}\n{extra}")
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_recipe_model_specs_are_checked_without_importing(tmp_path):
    from tpp.errors import ConfigError
    from tpp.recipes import validate_recipe

    data = {
        "model": "no_such_module_xyz:net",
        "dataset": "mnist_subset",
        "checkpoint": None,
        "prune": {"methods": ["l1"], "ratios": [0.5]},
    }
    recipe = validate_recipe(data, default_name="my recipe")
    assert (recipe.name, recipe.paper, recipe.finetune["epochs"]) == ("my_recipe", "", 120)
    assert "no_such_module_xyz" not in sys.modules
    with pytest.raises(ConfigError, match="not a model spec"):
        validate_recipe({**data, "model": "a b:c"})
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'.*package.module:function"):
        validate_recipe({**data, "model": "resnet9000"})

"""tpp.deploy: ONNX export of (pruned) models, latency statistics, missing optional packages."""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch

import tpp
from tpp.deploy import (
    LatencyStats,
    MissingDependencyError,
    compare_pruned,
    export_onnx,
    export_pruned_onnx,
    measure_interleaved,
    measure_latency,
    run_latency_bench,
    time_onnxruntime,
)
from tpp.errors import TPPError
from tpp.models import create_model, example_inputs


def _resnet20(ratio=None, scope="internal"):
    torch.manual_seed(0)
    model = create_model("resnet20")
    if ratio is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = tpp.TPPPruner(model, example_inputs("resnet20", batch_size=2), ratio=ratio, scope=scope).prune()
    # non-trivial BN statistics so that eval-mode export differs from train mode
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.train()  # export must switch to eval itself


def _ort_outputs(path, x):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize(
    "ratio, scope",
    [(None, "internal"), ({"*layer*.conv1": 0.5}, "internal"), (0.5, "all")],
    ids=["unpruned", "pruned-internal", "pruned-all"],
)
def test_onnx_export_matches_pytorch(tmp_path, ratio, scope):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _resnet20(ratio, scope)
    path = export_onnx(model, example_inputs("resnet20", batch_size=2), tmp_path / "m.onnx")
    assert path == tmp_path / "m.onnx" and path.is_file()
    assert model.training, "the caller's train/eval mode is restored"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"], "no temporary file is left behind"
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # another batch size
    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    got = _ort_outputs(path, x)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_pruned_model_round_trip_through_save_load_and_export(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pruned = _resnet20({"*layer*.conv1": 0.7}).eval()
    tpp.save_pruned(pruned, tmp_path / "pruned.pt")
    path = export_pruned_onnx(tmp_path / "pruned.pt", tmp_path / "out" / "model.onnx")  # what `tpp export` calls
    assert path.is_file()
    x = example_inputs("resnet20", batch_size=3, seed=4)
    with torch.no_grad():
        expected = pruned(x).numpy()
    assert np.allclose(_ort_outputs(path, x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_export_to_unwritable_path_is_one_line_error_and_leaves_nothing(tmp_path):
    pytest.importorskip("onnx")
    model = _resnet20()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    occupied = tmp_path / "occupied.onnx"
    occupied.mkdir()  # a directory where the file should go: os.replace fails at the very end
    for target in (blocker / "model.onnx", occupied):
        with pytest.raises(TPPError) as info:
            export_onnx(model, example_inputs("resnet20"), target, verify=False)
        message = str(info.value)
        assert "\n" not in message and "cannot write" in message and str(target) in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "occupied.onnx"]
    assert list(occupied.iterdir()) == [] and blocker.read_text() == "a file, not a folder"


def test_missing_onnxruntime_gives_install_hint(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    expected = "onnxruntime is not installed; pip install 'tpp-pruning[onnx]'"
    model, x = _resnet20(), example_inputs("resnet20")
    with pytest.raises(MissingDependencyError) as info:
        export_onnx(model, x, tmp_path / "m.onnx", verify=True)
    assert str(info.value) == expected and isinstance(info.value, TPPError)
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(MissingDependencyError, match="^onnxruntime is not installed"):
        time_onnxruntime(tmp_path / "m.onnx", 1, (3, 32, 32))
    with pytest.raises(MissingDependencyError):
        compare_pruned(model, model, (3, 32, 32), batch_sizes=(1,), backends=("onnxruntime",), repeats=1)
    # without onnxruntime, the default is to export unverified
    assert export_onnx(model, x, tmp_path / "m.onnx").is_file()


def test_missing_onnx_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"^onnx is not installed; pip install 'tpp-pruning\[onnx\]'$"):
        export_onnx(_resnet20(), example_inputs("resnet20"), tmp_path / "m.onnx")


def test_latency_stats_of_a_trivial_function_are_sane():
    calls = []
    stats = measure_latency(lambda: calls.append(sum(range(2000))), warmup=3, repeats=40)
    assert len(calls) == 43 and stats.repeats == 40
    assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms and stats.iqr_ms >= 0
    assert stats.median_ms < 1000
    exact = LatencyStats.from_samples([i / 1000 for i in range(1, 12)])  # 1..11 ms
    assert math.isclose(exact.median_ms, 6.0) and math.isclose(exact.p10_ms, 2.0) and math.isclose(exact.p90_ms, 10.0)
    assert math.isclose(exact.iqr_ms, 5.0)
    with pytest.raises(TPPError):
        measure_latency(lambda: None, warmup=0, repeats=0)


def test_interleaved_measurement_alternates_abba():
    order = []
    stats = measure_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=3)
    assert order == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]
    assert stats["a"].repeats == stats["b"].repeats == 3


def test_run_latency_bench_document():
    doc = run_latency_bench(
        "resnet20", "*layer*.conv1:0.5", "internal", batch_sizes=(1,), backends=("torch",), repeats=2, threads=1
    )
    assert doc["model"] == "resnet20" and doc["input_shape"] == [3, 32, 32] and len(doc["rows"]) == 1
    assert doc["params"]["pruned"] < doc["params"]["base"]
    assert doc["machine"]["torch_threads"] == 1 and doc["machine"]["cpu_count"] >= 1
    json.dumps(doc)  # JSON-ready


def test_compare_pruned_rows(tmp_path):
    base, pruned = _resnet20().eval(), _resnet20({"*layer*.conv1": 0.5}).eval()
    backends = ("torch", "onnxruntime") if _has("onnxruntime") and _has("onnx") else ("torch",)
    threads = torch.get_num_threads()
    rows = compare_pruned(
        base,
        pruned,
        (3, 32, 32),
        batch_sizes=(1, 2),
        backends=backends,
        repeats=3,
        warmup=1,
        threads=1,
        workdir=tmp_path,
    )
    assert torch.get_num_threads() == threads, "the thread setting is restored"
    assert [(r["backend"], r["batch"]) for r in rows] == [(b, n) for b in backends for n in (1, 2)]
    for row in rows:
        assert row["threads"] == 1 and row["device"] == "cpu" and row["base"]["repeats"] == 3
        assert math.isclose(row["measured_speedup"], row["base_median_ms"] / row["pruned_median_ms"])
        assert 1.5 < row["flops_speedup"] < 2.5  # half of every block's inner channels
        assert math.isclose(row["measured_over_flops"], row["measured_speedup"] / row["flops_speedup"])
    assert pruned.layer1[0].conv1.out_channels == 8 and not base.training, "callers' models untouched"
    with pytest.raises(TPPError, match="unknown backend"):
        compare_pruned(base, pruned, (3, 32, 32), backends=("tensorrt",))


def test_latency_table_has_one_row_per_backend_batch_and_model():
    from tpp.deploy.latency import latency_table

    def stats(median):
        return {"median_ms": median, "p10_ms": median - 0.1, "p90_ms": median + 0.5, "iqr_ms": 0.25, "repeats": 9}

    rows = [
        {
            "backend": "torch",
            "batch": batch,
            "base": stats(2.0 * batch),
            "pruned": stats(1.0 * batch),
            "measured_speedup": 2.0,
            "flops_speedup": 1.99,
        }
        for batch in (1, 64)
    ]
    header, rule, *lines = latency_table(rows)
    assert header.split()[:3] == ["backend", "batch", "model"] and set(rule) == {"-", " "}
    assert [line.split()[:3] for line in lines] == [
        ["torch", "1", "base"],
        ["torch", "1", "pruned"],
        ["torch", "64", "base"],
        ["torch", "64", "pruned"],
    ]
    # median, IQR, p90, samples per second at the median; speedups on the pruned line only
    assert lines[2].split()[3:] == ["128.000", "0.250", "128.500", "500.0"]
    assert lines[3].split()[3:] == ["64.000", "0.250", "64.500", "1,000.0", "2.00x", "1.99x"]


def _has(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True

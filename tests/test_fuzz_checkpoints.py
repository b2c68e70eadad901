"""Fuzz: a few hundred corrupt and malicious checkpoint files through every command that reads one.

Every file must end the command with exit code 2 and exactly one line on stderr, run no code
(the malicious pickles would create a sentinel file) and write nothing. Seeded and bounded:
each file goes through both library loaders, and through the commands in turn (every kind of
damage reaches every command; every malicious file reaches all of them).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import pickle
import posix
import random
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch

import tpp
from tpp.checkpoints import load_checkpoint, make_payload, read_pruned, save_pruned
from tpp.cli.main import main
from tpp.errors import CheckpointError
from tpp.pruning import L1Pruner
from tpp.training import build_optimizer, get_rng_state

SEED = 20230
COMMANDS = ("train", "prune", "eval", "info", "jsv", "export")


class _Call:
    """Pickles as a call of ``function(*args)``: unpickling it runs the call."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _malicious(sentinel: Path) -> list[tuple[str, object]]:
    touch = f"open({str(sentinel)!r}, 'w').close()"
    return [
        ("os_system", _Call(os.system, f"touch {sentinel}")),
        ("posix_system", _Call(posix.system, f"touch {sentinel}")),
        ("eval", _Call(builtins.eval, touch)),
        ("exec", _Call(builtins.exec, touch)),
        ("subprocess", _Call(subprocess.call, ["touch", str(sentinel)])),
        ("path_touch", _Call(Path.touch, sentinel)),
    ]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _with_pickle(checkpoint: bytes, pickled: bytes) -> bytes:
    """A real torch zip checkpoint whose ``data.pkl`` is replaced (CRCs recomputed: well-formed zip)."""
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    return _zip({name: pickled if name.endswith("data.pkl") else data for name, data in members.items()})


def _contents(data: bytes) -> list | None:
    """What a zip reader sees in ``data`` (names and member bytes), or None if it is unreadable."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sorted((i.filename, archive.read(i)) for i in archive.infolist())
    except Exception:  # noqa: BLE001
        return None


def corpus(good: dict[str, bytes], sentinel: Path, rng: random.Random) -> list[tuple[str, bytes]]:
    """(label, bytes) of every damaged or malicious file, from the ``good`` zip checkpoints."""
    names = sorted(good)
    files = [("empty", b""), ("text", b"hello world\n"), ("json", b'{"model": {}}'), ("yaml", b"model: resnet20\n")]
    files += [(f"random{i}", rng.randbytes(rng.choice([1, 7, 64, 1000, 5000]))) for i in range(50)]
    for i in range(50):
        name = rng.choice(names)
        files.append((f"truncated{i}_{name}", good[name][: rng.randrange(len(good[name]))]))
    originals = {name: _contents(good[name]) for name in names}
    flips = 0
    while flips < 100:
        name = rng.choice(names)
        data = bytearray(good[name])
        for _ in range(rng.choice([1, 1, 1, 2, 8])):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if _contents(bytes(data)) == originals[name]:
            continue  # only bytes no reader looks at (zip alignment padding, "made by"): the same file
        files.append((f"flipped{flips}_{name}", bytes(data)))
        flips += 1
    base = good[names[0]]
    wrong = {
        "no_pickle": _zip({"archive/version": b"3\n"}),
        "empty_zip": _zip({}),
        "other_zip": _zip({"a.txt": b"abc", "b/data.pkl": pickle.dumps({"a": 1})}),
        "list": _with_pickle(base, pickle.dumps([1, 2, 3], protocol=2)),
        "int": _with_pickle(base, pickle.dumps(5, protocol=2)),
        "int_keys": _with_pickle(base, pickle.dumps({1: 2}, protocol=2)),
        "spec_text": _with_pickle(base, pickle.dumps({"tpp_spec": "resnet20", "model": {}}, protocol=2)),
        "spec_kwargs": _with_pickle(
            base, pickle.dumps({"tpp_spec": {"name": "mlp7_linear", "bogus": 1}, "model": {}}, protocol=2)
        ),
        "huge_plan": _with_pickle(
            base,
            pickle.dumps(
                {
                    "tpp_plan": {"history": [["fc1", True, [0]]], "input_shapes": [[10**6, 3, 10**4, 10**4]]},
                    "model": {},
                },
                protocol=2,
            ),
        ),
        "epoch_text": _with_pickle(base, pickle.dumps({"epoch": "x", "model": {}}, protocol=2)),
    }
    files += [(f"wrong_{label}", data) for label, data in wrong.items()]
    for label, payload in _malicious(sentinel):
        for protocol in (0, 2, 4):
            files.append(
                (f"evil_{label}_pickle{protocol}", pickle.dumps({"model": {"w": [payload]}}, protocol=protocol))
            )
        files.append((f"evil_{label}_zip", _with_pickle(base, pickle.dumps({"model": payload}, protocol=2))))
    return files


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> dict[str, bytes]:
    """A training checkpoint and a pruned model of a small MLP on 1-channel 32x32 images."""
    model = tpp.create_model("mlp7_linear", num_classes=10, in_channels=1, width=8)
    buffer = io.BytesIO()
    torch.save(
        make_payload(
            model,
            optimizer=build_optimizer(model, 0.01).state_dict(),
            epoch=1,
            global_step=3,
            best_top1=50.0,
            last_top1=50.0,
            rng=get_rng_state(),
            config={"model": "mlp7_linear", "dataset": "mnist_subset"},
        ),
        buffer,
    )
    pruned = save_pruned(
        L1Pruner(model, torch.randn(2, 1, 32, 32), ratio=0.5).prune(), tmp_path_factory.mktemp("good") / "pruned.pt"
    )
    return {"checkpoint": buffer.getvalue(), "pruned": pruned.read_bytes()}


def _argv(command: str, path: Path, work: Path) -> list[str]:
    data = ["--dataset", "mnist_subset"]
    return {
        "train": [
            "train",
            "--model",
            "mlp7_linear",
            *data,
            "--epochs",
            "2",
            "--out",
            str(path.parent),
            "--resume",
            "--quiet",
        ],
        "prune": [
            "prune",
            "--checkpoint",
            str(path),
            "--model",
            "mlp7_linear",
            *data,
            "--ratio",
            "0.5",
            "--out",
            str(work / "prune_out"),
            "--quiet",
        ],
        "eval": ["eval", "--checkpoint", str(path), *data],
        "info": ["info", "--checkpoint", str(path)],
        "jsv": ["jsv", "--checkpoint", str(path), *data],
        "export": ["export", "--checkpoint", str(path), "--out", str(work / "model.onnx")],
    }[command]


def test_corrupt_and_malicious_checkpoints_give_one_line_and_run_nothing(tmp_path, good_files):
    started = time.perf_counter()
    sentinel = tmp_path / "code_ran"
    files = corpus(good_files, sentinel, random.Random(SEED))
    assert len(files) >= 200
    malicious = [label for label, _ in files if label.startswith("evil_")]
    calls, failures = 0, []
    for index, (label, data) in enumerate(files):
        run = tmp_path / "run" / label  # train --resume reads <out>/last.pt
        run.mkdir(parents=True)
        path = run / "last.pt"
        path.write_bytes(data)
        for loader in (load_checkpoint, read_pruned):  # the library's two readers
            try:
                loader(path)
            except CheckpointError as error:
                assert "\n" not in str(error) and str(path) in str(error), label
            else:  # well-formed files with wrong contents are the commands' to refuse
                assert label.startswith("wrong_"), (label, loader.__name__)
        commands = COMMANDS if label.startswith("evil_") else (COMMANDS[index % len(COMMANDS)],)
        for command in commands:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(_argv(command, path, tmp_path))
            calls += 1
            lines = [line for line in err.getvalue().splitlines() if line.strip()]
            if code != 2 or len(lines) != 1 or not lines[0].startswith("tpp: error: "):
                failures.append((label, command, code, lines[:3]))
            written = [p for p in (tmp_path / "prune_out", tmp_path / "model.onnx") if p.exists()]
            assert not written and os.listdir(run) == ["last.pt"], (label, command)  # nothing written
            assert not sentinel.exists(), (label, command)
    assert not failures, failures[:5]
    # the malicious ones are named as code, not as damage
    for label in malicious:
        with pytest.raises(CheckpointError, match="holds pickled code .* that tpp will not run"):
            load_checkpoint(tmp_path / "run" / label / "last.pt")
    assert calls >= len(files)
    assert time.perf_counter() - started < 60  # a few seconds on a quiet machine

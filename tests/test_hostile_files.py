"""Hostile files and folders (issue 15, items 4-8 and the zip bomb of item 12): a file may name code
but never makes tpp run it; tpp never replaces a file or folder it did not write; one writer per run
folder; a job seeded from a sibling gets the whole file or none of it.

Every refusal is one line on stderr with exit 2, and the user's files are byte-identical (and
untouched: same mtimes) afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from tests.official_format import official_module, save_official
from tests.user_model_zoo import one_line_error, small_cnn
from tpp.checkpoints import load_pruned, make_payload, save_checkpoint, save_pruned
from tpp.errors import CheckpointError
from tpp.training import RunDirectory
from tpp.util.lock import LOCK_FILE, FolderLock

REPO = Path(__file__).resolve().parents[1]
TRAIN = [
    "train",
    "--model",
    "mlp7_linear",
    "--dataset",
    "mnist_subset",
    "--train-subset",
    "100",
    "--epochs",
    "1",
    "--quiet",
]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and mtime."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------ 4. a file names code, only the user allows it


@pytest.fixture
def trojan(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A current folder whose ./train.py would create ``ran`` when imported (and is importable: the
    folder is on sys.path), and a pruned-model file whose spec names ``train:anything``."""
    marker = tmp_path / "ran"
    (tmp_path / "train.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\n"
        "def anything(num_classes=10, in_channels=1):\n    raise SystemExit('ran')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # an import would succeed: only the policy stops it
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI may add the current folder
    monkeypatch.delitem(sys.modules, "train", raising=False)
    model = small_cnn(10, 1)
    model.tpp_spec = {"spec": "train:anything", "num_classes": 10, "in_channels": 1}
    save_pruned(model, tmp_path / "m.pt")
    return tmp_path / "m.pt", marker


def _not_run(marker: Path) -> None:
    assert not marker.exists() and "train" not in sys.modules


def test_info_eval_export_on_a_file_naming_train_py_refuse_without_importing_it(trojan, run_cli):
    path, marker = trojan
    before = snapshot(path.parent)
    fix = "pass --model train:anything"
    one_line_error(
        run_cli("info", "--checkpoint", path),
        "names the model factory train:anything",
        "does not import code on a file's say-so",
        fix,
    )
    _not_run(marker)
    one_line_error(run_cli("eval", "--checkpoint", path, "--dataset", "mnist_subset"), fix)
    _not_run(marker)
    one_line_error(run_cli("export", "--checkpoint", path, "--out", path.parent / "m.onnx"), fix)
    _not_run(marker)
    assert snapshot(path.parent) == before


def test_a_training_checkpoint_whose_config_names_train_py_is_refused_too(trojan, run_cli):
    """No tpp_spec, only the run's config names the model: still the file's say-so."""
    path, marker = trojan
    torch.save({"model": small_cnn(10, 1).state_dict(), "config": {"model": "train:anything"}}, path.parent / "c.pt")
    one_line_error(run_cli("info", "--checkpoint", path.parent / "c.pt"), "pass --model train:anything")
    _not_run(marker)


def test_load_pruned_refuses_and_the_user_may_allow_the_factory(trojan):
    path, marker = trojan
    with pytest.raises(CheckpointError) as refused:
        load_pruned(path)
    assert "\n" not in str(refused.value) and "base_model='train:anything'" in str(refused.value)
    _not_run(marker)
    # the user's own word: base_model= with the spec (here a module that builds the model)
    (path.parent / "mymodels.py").write_text(
        "from tests.user_model_zoo import small_cnn\n\ndef net(num_classes=10, in_channels=3):\n"
        "    return small_cnn(num_classes, in_channels)\n"
    )
    try:
        assert isinstance(load_pruned(path, base_model="mymodels:net"), torch.nn.Module)
    finally:
        sys.modules.pop("mymodels", None)
    _not_run(marker)


def test_a_factory_named_on_the_command_line_is_allowed(tmp_path, run_cli, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "from tests.user_model_zoo import small_cnn\n\ndef net(num_classes=10, in_channels=3):\n"
        "    return small_cnn(num_classes, in_channels)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(REPO), *sys.path])  # `tests.` for mymodels; tpp adds the folder
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    model = small_cnn(10, 1)
    model.tpp_spec = {"spec": "mymodels:net", "num_classes": 10, "in_channels": 1}
    save_pruned(model, tmp_path / "m.pt")
    try:
        result = run_cli("info", "--model", "mymodels:net", "--checkpoint", tmp_path / "m.pt", "--image-size", "28")
        assert result.code == 0 and "mymodels:net: input [1, 1, 28, 28]" in result.out, result.err
        # now imported (by the user's word): the same file alone rebuilds it
        assert run_cli("info", "--checkpoint", tmp_path / "m.pt", "--image-size", "28").code == 0
    finally:
        sys.modules.pop("mymodels", None)


# ------------------------------------------------------------------ 5. import-official --out, and a zip bomb


def test_import_official_keeps_a_file_tpp_did_not_write(tmp_path, run_cli):
    with official_module(tmp_path) as official:
        source = save_official(official.ResNet(3), tmp_path / "r20.pth", "resnet20")
    mine = tmp_path / "mydata.pt"
    torch.save({"my": torch.arange(3)}, mine)  # a torch file, but not tpp's
    before = snapshot(tmp_path)
    one_line_error(
        run_cli("import-official", source, "--out", mine),
        "mydata.pt exists and was not written by tpp",
        "pass --overwrite",
    )
    assert snapshot(tmp_path) == before
    assert run_cli("import-official", source, "--out", mine, "--overwrite").code == 0
    assert run_cli("import-official", source, "--out", mine).code == 0  # tpp's own file now: replaced freely


def test_import_official_refuses_a_zip_bomb_before_inflating_it(tmp_path, run_cli):
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w") as member:  # 64 MiB of zeros in ~64 KiB
            for _ in range(64):
                member.write(bytes(2**20))
    assert bomb.stat().st_size < 2**20
    out = tmp_path / "out.pt"
    one_line_error(
        run_cli("import-official", bomb, "--model", "resnet20", "--out", out), "unpack to far more than the file holds"
    )
    assert not out.exists()


# ------------------------------------------------------------------ 6. --resume needs tpp's mark


def _users_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}\n')
    (folder / "meta.json").write_text('{"tpp_version": "0.1", "note": "my own notes"}\n')  # a tpp_version is no mark
    (folder / "report.json").write_text('{"result": 42}\n')
    return folder


def test_resume_leaves_a_users_folder_of_tpp_file_names_alone(tmp_path, run_cli):
    folder = _users_folder(tmp_path / "mine")
    before = snapshot(folder)
    one_line_error(run_cli(*TRAIN, "--out", folder, "--resume"), "is not a tpp run directory", ".tpp-run")
    with pytest.raises(CheckpointError, match="not a tpp run directory"):
        RunDirectory(folder, resume=True)
    assert snapshot(folder) == before


def test_run_folders_of_an_older_tpp_resume_when_meta_and_a_checkpoint_are_tpps(tmp_path):
    folder = _users_folder(tmp_path / "old")
    meta = {
        key: "x"
        for key in (
            "argv",
            "tpp_version",
            "torch_version",
            "python_version",
            "git",
            "hostname",
            "start_time",
            "command",
        )
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    torch.save(small_cnn().state_dict(), folder / "last.pt")  # a checkpoint, but not one tpp wrote
    with pytest.raises(CheckpointError, match="not a tpp run directory"):
        RunDirectory(folder, resume=True)
    save_checkpoint(folder / "last.pt", make_payload(small_cnn()))
    RunDirectory(folder, resume=True).close()
    assert (folder / ".tpp-run").read_text().startswith("tpp run folder\n")  # marked from now on
    assert not (folder / LOCK_FILE).exists()


# ------------------------------------------------------------------ 7. one writer per run folder


def _finished_run(folder: Path) -> Path:
    run = RunDirectory(folder)
    run.write_config({"command": "train", "model": "mlp7_linear"})
    run.write_meta(command="train")
    run.log_epoch({"epoch": 0, "test_top1": 50.0})
    run.close()
    return folder


def test_a_second_writer_is_refused_with_the_pid_of_the_first(tmp_path, run_cli):
    folder = _finished_run(tmp_path / "run")
    unlocked = snapshot(folder)
    with FolderLock(folder):  # this process is "the running tpp"
        before = snapshot(folder)
        for flag in ("--overwrite", "--resume"):
            one_line_error(run_cli(*TRAIN, "--out", folder, flag), f"is in use by tpp process {os.getpid()}")
            assert snapshot(folder) == before
        with pytest.raises(CheckpointError, match=f"in use by tpp process {os.getpid()}"):
            RunDirectory.check(folder, resume=True)  # --dry-run says so too
    assert snapshot(folder) == unlocked  # the holder removes its lock file


def test_a_second_tpp_run_on_one_output_is_refused_at_once(tmp_path, run_cli):
    out = tmp_path / "grid"
    out.mkdir()
    with FolderLock(out):
        result = run_cli(
            "run",
            REPO / "recipes" / "mnist_mlp7_linear.yaml",
            "--out",
            out,
            "--report",
            tmp_path / "report.md",
            "--quiet",
        )
        one_line_error(result, f"{out} is in use by tpp process {os.getpid()}")
    assert sorted(os.listdir(out)) == [] and not (tmp_path / "report.md").exists()


def test_a_killed_holder_leaves_a_folder_that_resumes(tmp_path):
    """Another process holds the lock (its PID is named); SIGKILL it and the kernel frees the lock."""
    folder = _finished_run(tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom tpp.util.lock import FolderLock\n"
            "lock = FolderLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(60)\n",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"in use by tpp process {holder.pid}"):
            RunDirectory(folder, resume=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (folder / LOCK_FILE).exists()  # stale: the killed holder could not remove it
    RunDirectory(folder, resume=True).close()


def test_a_symlink_in_place_of_the_lock_file_is_not_followed(tmp_path):
    folder = _finished_run(tmp_path / "run")
    victim = tmp_path / "precious.txt"
    victim.write_text("keep")
    (folder / LOCK_FILE).symlink_to(victim)
    with pytest.raises(CheckpointError, match="cannot be opened"):
        RunDirectory(folder, resume=True)
    assert victim.read_text() == "keep"


# ------------------------------------------------------------------ 8. a job seeded from a sibling: all or nothing


def _point(lr_label: str):
    from tpp.recipes.grid import GridPoint

    return GridPoint(
        method="tpp",
        ratio_index=0,
        ratio_entry=0.5,
        ratio="0.5",
        ratio_label="0.5",
        lr_index=0,
        lr="0.01",
        lr_label=lr_label,
        seed=0,
    )


def test_a_sibling_pruned_model_is_linked_not_copied(tmp_path):
    from tpp.recipes.runner import _shared_regularisation

    first, second = _point("a"), _point("b")
    save_pruned(small_cnn(), tmp_path / first.folder / "pruned.pt")
    folder = tmp_path / second.folder
    assert _shared_regularisation(second, folder, tmp_path) == tmp_path / first.folder
    assert os.path.samefile(folder / "pruned.pt", tmp_path / first.folder / "pruned.pt")
    # killed before run.json was written: the link still says where the model came from
    assert _shared_regularisation(second, folder, tmp_path) == tmp_path / first.folder


def test_without_hard_links_a_copy_killed_midway_leaves_no_file(tmp_path, monkeypatch):
    from tpp.recipes import runner

    first, second = _point("a"), _point("b")
    save_pruned(small_cnn(), tmp_path / first.folder / "pruned.pt")

    def no_links(*_):
        raise PermissionError("hard links not supported")

    def dies_midway(source, target):
        target.write(source.read(100))
        raise KeyboardInterrupt  # as a kill would, half-way through the bytes

    monkeypatch.setattr(runner.os, "link", no_links)
    monkeypatch.setattr(runner.shutil, "copyfileobj", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        runner._shared_regularisation(second, tmp_path / second.folder, tmp_path)
    assert os.listdir(tmp_path / second.folder) == []  # no pruned.pt, no temporary: the next run starts clean
    monkeypatch.undo()
    monkeypatch.setattr(runner.os, "link", no_links)
    runner._shared_regularisation(second, tmp_path / second.folder, tmp_path)
    assert (tmp_path / second.folder / "pruned.pt").read_bytes() == (tmp_path / first.folder / "pruned.pt").read_bytes()

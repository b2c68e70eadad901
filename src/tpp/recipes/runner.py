"""``run_recipe``: run (or resume) a recipe's grid of pruning jobs and write its report.

Output folder layout::

    <out>/base_s{seed}/                          pretrained base model (recipes with a ``base:`` section)
    <out>/{method}__r{ratio}__lr{lr}__s{seed}/    one tpp.jobs prune job: report.json, metrics.jsonl,
                                                  pruned_model.pt, ... plus run.json (its grid point)

A job whose ``report.json`` exists is skipped, so an interrupted grid continues where it stopped
(an interrupted job resumes from its own checkpoints). Regularised methods (TPP, ...) regularise
once per (method, ratio, seed): the jobs for the other fine-tuning LRs start from the first job's
``pruned.pt``, because the regularisation phase does not depend on the fine-tuning LR. That file
is hard-linked into the job's folder (no copy; an atomic copy where links are not supported), so
the job finds it on its resume path, complete or not at all, whenever the run is killed.

``<out>`` is locked (:mod:`tpp.util.lock`) while the grid runs: a second ``tpp run`` on it is
refused at once with the PID of the first.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from tpp.errors import CheckpointError, ConfigError
from tpp.recipes.base import base_model, data_config
from tpp.recipes.dryrun import check_inputs, describe_grid
from tpp.recipes.grid import GridPoint, build_grid, method_options
from tpp.recipes.recipe_report import read_json_dict, write_recipe_report
from tpp.recipes.schema import Recipe, load_recipe
from tpp.training import seed_everything
from tpp.util.atomic import atomic_write, atomic_write_json, describe_os_error
from tpp.util.lock import FolderLock
from tpp.util.owned import markdown_is_ours, refuse_foreign

RUN_FILE = "run.json"


def run_recipe(
    recipe: Recipe | str | Path,
    out_dir: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    ratios: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    lrs: Sequence[int] | None = None,
    data_dir: str | None = None,
    download: bool = False,
    checkpoint: str | None = None,
    report: str | Path | None = None,
    device: str | torch.device = "cpu",
    quiet: bool = False,
    dry_run: bool = False,
    fast: bool = False,
    overwrite: bool = False,
    print_fn: Callable[[str], None] = print,
) -> list[Path]:
    """Run every selected grid point of ``recipe`` into ``out_dir``; returns the job folders.

    ``report`` overrides the recipe's ``report:`` path; ``download`` fetches missing MNIST/CIFAR files. ``dry_run`` only prints the grid, the
    FLOPs speedup of each ratio and whether the checkpoint and data can be read (no training). ``fast`` shortens the TPP schedule 10x.
    ``overwrite`` lets the report replace a file that tpp did not write.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    out = Path(out_dir)
    grid = build_grid(recipe, seeds=seeds, ratios=ratios, methods=methods, lrs=lrs)
    if dry_run:
        print_fn(describe_grid(recipe, grid, out, fast, data_dir))
        print_fn("\n".join(check_inputs(recipe, checkpoint, data_dir)))
        return [out / p.folder for p in grid]
    if recipe.base is None and not (checkpoint or recipe.checkpoint):
        raise ConfigError(
            f"recipe {recipe.name} prunes a pretrained model: set 'checkpoint:' in the recipe or pass --checkpoint FILE"
        )
    report_path = report if report is not None else recipe.report
    if report_path is not None:  # before hours of jobs, not when the report is finally written
        refuse_foreign(report_path, markdown_is_ours, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot create {out}: {describe_os_error(error)}; pass a writable --out") from None
    with FolderLock(out):  # before the data: a second `tpp run` on this --out is refused at once
        return _run_grid(
            recipe, grid, out, report_path, data_dir, download, checkpoint, device, quiet, fast, overwrite, print_fn
        )


def _run_grid(
    recipe: Recipe,
    grid: list[GridPoint],
    out: Path,
    report_path,
    data_dir,
    download,
    checkpoint,
    device,
    quiet,
    fast,
    overwrite,
    print_fn,
) -> list[Path]:
    from tpp.data import build_loaders
    from tpp.data.record import data_record
    from tpp.models import example_inputs

    data_dir = data_dir if data_dir is not None else recipe.data_dir
    folders = []
    for seed in dict.fromkeys(p.seed for p in grid):
        points = [p for p in grid if p.seed == seed]
        if all((out / p.folder / "report.json").is_file() for p in points):
            folders += [out / p.folder for p in points]
            _say(quiet, print_fn, f"seed {seed}: all {len(points)} jobs already finished")
            continue
        train, test, info = build_loaders(
            recipe.dataset,
            data_dir,
            batch_size=recipe.batch_size,
            test_batch_size=recipe.test_batch_size,
            device=device,
            seed=seed,
            num_workers=recipe.num_workers,
            download=download,
            train_subset=recipe.train_subset,
            image_options=recipe.image_options(),
            val_split=recipe.val_split,
            eval_split=recipe.eval_split,
        )
        base = base_model(
            recipe,
            out,
            seed,
            (train, test),
            checkpoint=checkpoint,
            device=device,
            quiet=quiet,
            print_fn=print_fn,
            info=info,
            data_dir=data_dir,
        )
        inputs = example_inputs(
            recipe.model, in_channels=info.in_channels, batch_size=2, image_size=info.image_size
        ).to(device)
        # every file of the jobs then says how its inputs are prepared (tpp eval needs no data flag)
        base.tpp_data = data_record(
            info, {"data_dir": data_dir, "image_options": recipe.image_options(), "val_split": recipe.val_split}
        )
        for point in points:
            folders.append(
                _run_point(
                    recipe,
                    point,
                    out,
                    base,
                    (train, test),
                    inputs,
                    fast,
                    quiet,
                    print_fn,
                    data_config(recipe, data_dir),
                )
            )
    if report_path is not None:
        write_recipe_report(recipe, out, report_path, overwrite=overwrite)
        _say(quiet, print_fn, f"report: {report_path}")
    return folders


def _run_point(recipe, point: GridPoint, out: Path, base, loaders, inputs, fast, quiet, print_fn, data) -> Path:
    from tpp.jobs import JobContext, PruneJobConfig, run_prune_job
    from tpp.pruning import get_method
    from tpp.training import RunDirectory
    from tpp.training.rundir import read_metrics

    folder = out / point.folder
    if (folder / "report.json").is_file():
        _say(quiet, print_fn, f"skip {point.folder} (finished)")
        return folder
    method = recipe.base_method(point.method)  # the registered method a variant runs
    shared = _shared_regularisation(point, folder, out) if get_method(method).regularized else None
    resume = folder.is_dir() and any(folder.iterdir())
    _say(
        quiet,
        print_fn,
        f"{'resume' if resume else 'run'} {point.folder}"
        + (f" (regularised model from {shared.name})" if shared else ""),
    )
    job = PruneJobConfig(
        method=method,
        ratio=point.ratio,
        scope=recipe.prune["scope"],
        pruner_options={**method_options(recipe, point.method, fast), "ignored_layers": recipe.prune["ignore"] or None},
        prune_lr=recipe.prune["prune_lr"],
        ft_epochs=recipe.finetune["epochs"],
        ft_lr=point.lr,
        budget_steps=recipe.finetune.get("budget_steps"),
        weight_decay=recipe.finetune["weight_decay"],
        momentum=recipe.finetune["momentum"],
        jsv_batches=recipe.jsv["batches"],
        jsv_every_epoch=recipe.jsv["every_epoch"],
        jsv_mode=recipe.jsv["mode"],
    )
    earlier = read_metrics(folder / RunDirectory.METRICS) if resume else []
    run_dir = RunDirectory(folder, overwrite=True)
    for record in earlier:  # keep the epochs logged before the interruption
        run_dir.log_epoch(record)
    atomic_write_json(
        folder / RUN_FILE,
        {
            "recipe": recipe.name,
            "recipe_file": str(recipe.path or ""),
            "fast": fast,
            "regularization_shared_from": shared.name if shared else None,
            **point.describe(),
        },
    )
    run_dir.write_config(
        {"recipe": recipe.name, **data, "seed": point.seed, "batch_size": recipe.batch_size, **asdict(job)}
    )
    run_dir.write_meta(command="run", recipe=recipe.name, seed=point.seed)
    seed_everything(point.seed)
    try:
        run_prune_job(
            copy.deepcopy(base),
            loaders[0],
            loaders[1],
            inputs,
            job,
            JobContext(out=folder, resume=resume, quiet=quiet, print_fn=print_fn, loggers=[run_dir]),
        )
        if shared is not None:
            _copy_regularisation_facts(shared, folder)
    finally:
        run_dir.close()
    return folder


def _shared_regularisation(point: GridPoint, folder: Path, out: Path) -> Path | None:
    """Seed this job with a sibling's regularised model (same method, ratio, seed; other LR)."""
    if (folder / "pruned.pt").is_file():
        record = read_json_dict(folder / RUN_FILE)
        if record is None:  # killed between the link and run.json: the link still says whose it is
            return next(
                (s for s in _siblings(point, out) if s != folder and _same_file(s / "pruned.pt", folder / "pruned.pt")),
                None,
            )
        name = record.get("regularization_shared_from")
        return out / name if name else None
    for sibling in _siblings(point, out):
        if sibling.name != point.folder and (sibling / "pruned.pt").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _share_file(sibling / "pruned.pt", folder / "pruned.pt")
            return sibling
    return None


def _siblings(point: GridPoint, out: Path) -> list[Path]:
    return sorted(out.glob(f"{point.method}__r{point.ratio_label}__lr*__s{point.seed}"))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _share_file(source: Path, target: Path) -> None:
    """Make ``target`` hold ``source``'s bytes, all or nothing: a hard link (no copy; every tpp
    write replaces a file by renaming, so neither job ever changes the other's), or an atomic copy
    where the filesystem has no links."""
    try:
        os.link(source, target)
        return
    except FileExistsError:  # not a file (a job holding pruned.pt is not seeded again)
        raise CheckpointError(
            f"cannot start {target.parent} from {source}: {target} is in the way; remove it"
        ) from None
    except OSError:
        pass  # no hard links on this filesystem
    with open(source, "rb") as handle:
        atomic_write(target, lambda out: shutil.copyfileobj(handle, out))


def _copy_regularisation_facts(source: Path, folder: Path) -> None:
    """A job that started from a sibling's pruned model reports the sibling's regularisation phase."""
    theirs, ours = read_json_dict(source / "report.json"), read_json_dict(folder / "report.json")
    if theirs is None or ours is None:
        return
    for key in ("regularization", "pruned_indices"):
        if key in theirs:
            ours[key] = theirs[key]
    ours["regularization_shared_from"] = source.name
    atomic_write_json(folder / "report.json", ours)


def _say(quiet: bool, print_fn, text: str) -> None:
    if not quiet:
        print_fn(text)

"""The unpruned model a recipe starts from: pretrained once per seed, or loaded from a checkpoint.

Pretraining writes ``<out>/base_s{seed}/`` (metrics.jsonl, last.pt/best.pt every epoch and, when
finished, ``base.pt`` + ``base.json``); a later invocation reuses ``base.pt``, or resumes from
``last.pt`` after an interruption. The *last*-epoch weights are used, not the best: choosing the
base by test accuracy would leak the test set into the experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from tpp.checkpoints import load_checkpoint, load_model_weights, make_payload, save_checkpoint
from tpp.errors import ConfigError
from tpp.jobs import JobContext, TrainJobConfig, run_train_job
from tpp.recipes.schema import Recipe
from tpp.training import RunDirectory, seed_everything
from tpp.util.atomic import atomic_write_json


def fresh_model(recipe: Recipe, device: torch.device | str = "cpu") -> nn.Module:
    """A randomly initialised model of the recipe (classes and input channels from the dataset)."""
    from tpp.data import dataset_info
    from tpp.models import create_model

    info = dataset_info(recipe.dataset)
    return create_model(recipe.model, num_classes=info.num_classes, in_channels=info.in_channels).to(device)


def base_model(
    recipe: Recipe,
    out: Path,
    seed: int,
    loaders: tuple[Any, Any],
    *,
    checkpoint: str | None = None,
    device: torch.device | str = "cpu",
    quiet: bool = False,
    print_fn: Callable[[str], None] = print,
) -> nn.Module:
    """The base model for ``seed``: loaded from ``checkpoint`` (or the recipe's), else pretrained/reused."""
    path = checkpoint or recipe.checkpoint
    if recipe.base is None or checkpoint is not None:
        if path is None:
            raise ConfigError(
                f"recipe {recipe.name} prunes a pretrained model: set 'checkpoint:' in the recipe or pass --checkpoint FILE")
        model = fresh_model(recipe, device)
        load_model_weights(model, load_checkpoint(path), path)
        return model
    return _pretrain(recipe, out / f"base_s{seed}", seed, loaders, device, quiet, print_fn)


def _pretrain(recipe, folder: Path, seed: int, loaders, device, quiet: bool, print_fn) -> nn.Module:
    base = recipe.base
    final = folder / "base.pt"
    seed_everything(seed)
    model = fresh_model(recipe, device)
    if final.is_file():
        load_model_weights(model, load_checkpoint(final), final)
        if not quiet:
            print_fn(f"base model (seed {seed}): reusing {final}")
        return model
    resume = (folder / RunDirectory.LAST).is_file()
    run_dir = RunDirectory(folder, resume=resume, overwrite=True)
    config = {"recipe": recipe.name, "model": recipe.model, "dataset": recipe.dataset, "seed": seed,
              "batch_size": recipe.batch_size, **base}
    run_dir.write_config(config)
    run_dir.write_meta(command="run (base model)", seed=seed, device=str(device))
    if not quiet:
        print_fn(f"base model (seed {seed}): training {recipe.model} on {recipe.dataset} for {base['epochs']} epochs "
                 f"(lr {base['lr']}) into {folder}")
    job = TrainJobConfig(base["epochs"], base["lr"], base["momentum"], base["weight_decay"])
    context = JobContext(out=folder, resume=resume, quiet=quiet, print_fn=print_fn, loggers=[run_dir])
    last = run_dir.last_checkpoint
    try:
        result = run_train_job(model, loaders[0], loaders[1], job, context, run_config=config,
                               resume_from=(last, load_checkpoint(last)) if resume else None)
        save_checkpoint(final, make_payload(model, config=config, epoch=result.epochs_completed))
        atomic_write_json(folder / "base.json", {"seed": seed, "epochs": result.epochs_completed,
                                                 "last_top1": result.last_top1, "best_top1": result.best_top1})
    finally:
        run_dir.close()  # the folder's lock
    return model

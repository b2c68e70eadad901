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


def recipe_info(recipe: Recipe, data_dir: str | None = None) -> Any:
    """The :class:`tpp.data.DatasetInfo` of the recipe's data (``data_dir`` overrides the recipe's;
    ``imagefolder`` reads its classes from the folder and its input format from the recipe).

    Raises:
        DataError: an image folder that cannot be read.
    """
    from tpp.data import dataset_info

    return dataset_info(recipe.dataset, data_dir if data_dir is not None else recipe.data_dir, recipe.image_options())


def fresh_model(recipe: Recipe, device: torch.device | str = "cpu", info: Any = None) -> nn.Module:
    """A randomly initialised model of the recipe, any model spec (a ``module:function`` from the
    current folder too, as on the command line); classes, input channels and image size come
    from ``info`` (default: :func:`recipe_info`)."""
    from tpp.models import build_model
    from tpp.models.specs import allow_imports_from_cwd

    info = recipe_info(recipe) if info is None else info
    allow_imports_from_cwd(recipe.model)  # the recipe names the factory: the user vouches for it
    return build_model(
        recipe.model, num_classes=info.num_classes, in_channels=info.in_channels, image_size=info.image_size
    ).to(device)


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
    info: Any = None,
    data_dir: str | None = None,
) -> nn.Module:
    """The base model for ``seed``: loaded from ``checkpoint`` (or the recipe's), else pretrained/reused.
    ``info`` is the :class:`tpp.data.DatasetInfo` of the loaders (default: :func:`recipe_info`) and
    ``data_dir`` the folder they read (default: the recipe's)."""
    path = checkpoint or recipe.checkpoint
    if recipe.base is None or checkpoint is not None:
        if path is None:
            raise ConfigError(
                f"recipe {recipe.name} prunes a pretrained model: set 'checkpoint:' in the recipe or pass --checkpoint FILE"
            )
        model = fresh_model(recipe, device, info)
        load_model_weights(model, load_checkpoint(path), path)
        return model
    return _pretrain(recipe, out / f"base_s{seed}", seed, loaders, device, quiet, print_fn, info, data_dir)


def data_config(recipe: Recipe, data_dir: str | None = None) -> dict[str, Any]:
    """The model, dataset and (image folder) data options a run's config.json records, so that
    ``tpp eval --checkpoint`` finds the same data as the recipe did."""
    from tpp.data.info import canonical_name

    config: dict[str, Any] = {
        "model": recipe.model,
        "dataset": canonical_name(recipe.dataset),
        "val_split": recipe.val_split,
        "eval_split": recipe.eval_split,
    }
    if recipe.image_options() is not None:
        config["data_dir"] = data_dir if data_dir is not None else recipe.data_dir
        config.update(recipe.image)
    return config


def _pretrain(recipe, folder: Path, seed: int, loaders, device, quiet: bool, print_fn, info, data_dir) -> nn.Module:
    base = recipe.base
    final = folder / "base.pt"
    seed_everything(seed)
    model = fresh_model(recipe, device, info)
    if final.is_file():
        load_model_weights(model, load_checkpoint(final), final)
        if not quiet:
            print_fn(f"base model (seed {seed}): reusing {final}")
        return model
    resume = (folder / RunDirectory.LAST).is_file()
    run_dir = RunDirectory(folder, resume=resume, overwrite=True)
    config = {
        "recipe": recipe.name,
        **data_config(recipe, data_dir),
        "seed": seed,
        "batch_size": recipe.batch_size,
        **base,
    }
    run_dir.write_config(config)
    run_dir.write_meta(command="run (base model)", seed=seed, device=str(device))
    if not quiet:
        print_fn(
            f"base model (seed {seed}): training {recipe.model} on {recipe.dataset} for {base['epochs']} epochs "
            f"(lr {base['lr']}) into {folder}"
        )
    job = TrainJobConfig(base["epochs"], base["lr"], base["momentum"], base["weight_decay"])
    context = JobContext(out=folder, resume=resume, quiet=quiet, print_fn=print_fn, loggers=[run_dir])
    last = run_dir.last_checkpoint
    try:
        result = run_train_job(
            model,
            loaders[0],
            loaders[1],
            job,
            context,
            run_config=config,
            resume_from=(last, load_checkpoint(last)) if resume else None,
        )
        save_checkpoint(final, make_payload(model, config=config, epoch=result.epochs_completed))
        atomic_write_json(
            folder / "base.json",
            {
                "seed": seed,
                "epochs": result.epochs_completed,
                "last_top1": result.last_top1,
                "best_top1": result.best_top1,
            },
        )
    finally:
        run_dir.close()  # the folder's lock
    return model

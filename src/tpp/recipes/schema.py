"""Recipe files: a YAML grid of pruning experiments, validated strictly.

Schema (unknown keys anywhere are a :class:`~tpp.errors.ConfigError` naming the key)::

    name: mnist_mlp7_linear            # optional (default: the file's name); names runs/<name>
    description: "..."                 # optional
    paper: "Fig. 2 (MLP on MNIST)"     # optional: what the recipe reproduces
    hardware: "2-core CPU"             # optional: what the wall time below was estimated on
    expected_wall_time: "~9 h"         # optional: stated honestly (estimate from a timed short run)
    notes: "..."                       # optional free text (deviations, UNCONFIRMED choices)
    model: mlp7_linear                 # required: any model spec (a tpp name, timm:NAME, torchvision:NAME,
                                       #   hf:CLASS_OR_DIR, package.module:function from the current folder)
    dataset: mnist                     # required: a tpp.data name (imagefolder: your images in data_dir)
    data_dir: null                     # optional; `tpp run --data-dir` overrides
    image_size: 64                     # optional: network input side (imagefolder; others: their own size)
    resize: 72                         # optional, dataset: imagefolder only, as `tpp train --resize`; likewise
                                       #   channels, normalize, mean, std, augment, stream
    batch_size: 128                    # training batch size of every stage (default 128)
    test_batch_size: 256               # optional (default 256)
    num_workers: 4                     # optional, ImageNet loaders only
    train_subset: 6000                 # optional: train on this many class-balanced images (CPU-sized runs)
    val_split: 0.1                     # optional, built-in datasets: hold out 10% of the training set (never
    eval_split: valid                  #   trained on); valid: every number is on it (choose), test: report
    base:                              # EITHER pretrain the base model once per seed ...
      epochs: 30
      lr: "0:0.01,15:0.001"            # LR schedule in the paper's notation
      weight_decay: 1e-4               # optional (default 5e-4); momentum optional (0.9)
    checkpoint: path/to/base.pt        # ... OR pretrained weights (null = must be given by --checkpoint)
    prune:
      methods: [l1, l1+orthp, tpp]     # registered names (tpp.pruning.list_methods())
      ratios: [0.5, 0.7]               # numbers in [0, 1), or full 'pattern:ratio,...' strings
      ratio_pattern: null              # e.g. "*layer*.conv1:{ratio}": numbers are substituted into it
      scope: internal                  # internal | all
      ignore: []                       # module names/patterns never pruned (pruner ignored_layers)
      variants:                        # optional: a method under a name of its own with other options (an
        tpp-nogram: {method: tpp, options: {gram_weight: 0}}   #   ablation); list the name in methods
      tpp: {reg_step: 1e-4, reg_interval: 10, stabilize_iters: 10000}   # a method's own options, keyed
      kernorth+l1: {orth_iters: 10000}   # by its name (the fields of its config: `tpp prune --help`)
      prune_lr: 0.001                  # constant LR of the regularisation phase
    finetune:                          # optional (default: `tpp prune`'s, 120 epochs at 0:0.01,60:0.001,90:0.0001)
      epochs: 90                       # or budget_steps: N (steps after the base, regularisation included)
      lrs:                             # one fine-tuning run per schedule; a mapping limits
        - "0:0.01,30:0.001,60:0.0001"    # the schedule to some methods
        - {schedule: "0:0.001,30:0.0001,60:0.00001", methods: [l1, tpp]}
      weight_decay: 1e-4               # optional (default 5e-4), also used while regularising
      momentum: 0.9                    # optional
    seeds: [0, 1, 2]                   # default [0]
    jsv: {batches: 1, every_epoch: true, mode: train}   # optional Jacobian-singular-value logging
                                       # (mode: eval, or train = the paper's BatchNorm batch statistics)
    expected:                          # optional paper numbers for the report
      source: "Table 1"
      unpruned_top1: 93.78
      speedups: [1.45, 1.99]           # aligned with prune.ratios (null = unknown)
      params_reduction: [31.14, 49.82] # percent, aligned with prune.ratios
      top1: {"tpp@0": [93.81, 93.46]}  # key: method or method@LR-index; a list aligned with the
      top1_std: {"tpp@0": [0.11, 0.06]}   # ratios, or one number when the paper's ratio is unknown
      jsv_after_prune: {l1: 0.0040}    # mean JSV right after pruning, per method
    report: docs/results/mnist_mlp7_linear.md   # optional markdown report (plots next to it)

Relative paths (``data_dir``, ``checkpoint``, ``report``) are relative to the current directory,
so run recipes from the repository root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from tpp.errors import ConfigError
from tpp.recipes import checks
from tpp.recipes.expected import validate_expected
from tpp.recipes.prune_section import prune_section
from tpp.recipes.recipe import Recipe
from tpp.training.optim import DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY

_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# the image-folder options of `tpp train` (tpp.cli.arguments.add_data_args), as recipe keys
IMAGE_KEYS = ("image_size", "resize", "channels", "normalize", "mean", "std", "augment", "stream")
TOP_KEYS = {
    "name",
    "description",
    "paper",
    "hardware",
    "expected_wall_time",
    "notes",
    "model",
    "dataset",
    "data_dir",
    "batch_size",
    "test_batch_size",
    "num_workers",
    "train_subset",
    "val_split",
    "eval_split",
    "base",
    "checkpoint",
    "prune",
    "finetune",
    "seeds",
    "jsv",
    "expected",
    "report",
    *IMAGE_KEYS,
}
REQUIRED_TOP = ("model", "dataset", "prune")
DESCRIPTIVE = ("description", "paper", "hardware", "expected_wall_time")
# no finetune section: what `tpp prune` does by default (the paper's CIFAR schedule)
DEFAULT_FINETUNE = {"epochs": 120, "lrs": ["0:0.01,60:0.001,90:0.0001"]}
BASE_KEYS = {"epochs", "lr", "weight_decay", "momentum"}
FINETUNE_KEYS = {"epochs", "budget_steps", "lrs", "weight_decay", "momentum"}
JSV_KEYS = {"batches", "every_epoch", "mode"}


MAX_RECIPE_BYTES = 2**20  # recipes are a few KiB; /dev/zero or a huge file is refused before it fills memory


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (ConfigError with one line on any problem)."""
    import yaml

    from tpp.util.files import FileTooLarge, read_bounded
    from tpp.util.yamlfile import load_yaml

    path = Path(path)
    if not path.is_file():  # also a FIFO or a device, which read_bounded would refuse anyway
        raise ConfigError(f"recipe {path} is not a file; pass the path of a recipe YAML (see recipes/)")
    try:
        data = load_yaml(read_bounded(path, MAX_RECIPE_BYTES).decode("utf-8"))
    except FileTooLarge:
        raise ConfigError(
            f"recipe {path} is larger than {MAX_RECIPE_BYTES // 2**20} MiB, far more than a recipe "
            "holds; pass the path of a recipe YAML (see recipes/)"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError(f"recipe {path} cannot be read as YAML{where}: {problem}") from None
    recipe = validate_recipe(data if data is not None else {}, where=str(path), default_name=path.stem)
    recipe.path = path
    return recipe


def validate_recipe(data: Mapping[str, Any], where: str = "recipe", default_name: str | None = None) -> Recipe:
    """Check every key and value of a recipe mapping and return the :class:`Recipe`.

    Only ``model``, ``dataset``, ``prune`` and one of ``base``/``checkpoint`` are required; a
    missing ``name`` is ``default_name`` (a recipe file's name) made a folder name."""
    checks.keys(data, TOP_KEYS, where)
    for key in REQUIRED_TOP:
        if data.get(key) in (None, ""):
            raise ConfigError(f"{where}: required key {key!r} is missing")
    text = {k: checks.text(data[k], f"{where}: {k}") for k in ("model", "dataset")}
    text.update({k: checks.text(data.get(k) or "", f"{where}: {k}", empty=True) for k in DESCRIPTIVE})
    fallback = re.sub(r"[^A-Za-z0-9._+-]+", "_", default_name or "").lstrip("._+-") or "recipe"
    text["name"] = checks.text(data["name"], f"{where}: name") if data.get("name") is not None else fallback
    if not _FOLDER_NAME.fullmatch(text["name"]):
        raise ConfigError(
            f"{where}: name {text['name']!r} must be a plain folder name (letters, digits, '.', '_', "
            "'+', '-'; no '/' or '..'), because the jobs are written to runs/<name>"
        )
    if ("base" in data) == ("checkpoint" in data):
        raise ConfigError(
            f"{where}: give exactly one of 'base' (pretrain the model) or 'checkpoint' (pretrained weights)"
        )
    recipe = Recipe(
        **text,
        prune=prune_section(data["prune"], f"{where}: prune"),
        finetune=_finetune(data.get("finetune") or DEFAULT_FINETUNE, f"{where}: finetune"),
        image=_image(data, text["dataset"], where),
        notes=checks.text(data.get("notes", ""), f"{where}: notes", empty=True),
        data_dir=checks.opt_text(data.get("data_dir"), f"{where}: data_dir"),
        batch_size=checks.whole(data.get("batch_size", 128), f"{where}: batch_size", 1),
        test_batch_size=checks.whole(data.get("test_batch_size", 256), f"{where}: test_batch_size", 1),
        num_workers=checks.whole(data.get("num_workers", 4), f"{where}: num_workers", 0),
        train_subset=(
            checks.whole(data["train_subset"], f"{where}: train_subset", 1)
            if data.get("train_subset") is not None
            else None
        ),
        val_split=_val_split(data.get("val_split"), text["dataset"], f"{where}: val_split"),
        eval_split=_eval_split(data.get("eval_split", "test"), data.get("val_split"), f"{where}: eval_split"),
        base=_base(data["base"], f"{where}: base") if "base" in data else None,
        checkpoint=checks.opt_text(data.get("checkpoint"), f"{where}: checkpoint"),
        has_checkpoint_key="checkpoint" in data,
        seeds=_seeds(data.get("seeds", [0]), f"{where}: seeds"),
        jsv=_jsv(data.get("jsv") or {}, f"{where}: jsv"),
        report=checks.opt_text(data.get("report"), f"{where}: report"),
        raw=dict(data),
    )
    _check_names(recipe, where)  # before `expected`, whose keys name methods
    recipe.expected = validate_expected(data.get("expected") or {}, f"{where}: expected", recipe)
    return recipe


def _val_split(value: Any, dataset: str, where: str) -> float | None:
    """The fraction of the training set held out (tpp.data.builders.validation_indices), or None."""
    from tpp.data.info import TEXT_DATASETS, canonical_name

    if value is None:
        return None
    if canonical_name(dataset) in (*TEXT_DATASETS, "imagefolder", "imagenet"):
        raise ConfigError(
            f"{where}: a validation carve is for the built-in image datasets; {dataset} has its own "
            "validation data: drop it"
        )
    fraction = checks.number(value, where)
    if not 0 < fraction <= 0.5:
        raise ConfigError(f"{where} must be in (0, 0.5], got {value!r} (e.g. 0.1: 10% of the training set)")
    return fraction


def _eval_split(value: Any, val_split: Any, where: str) -> str:
    if value not in ("valid", "test"):
        raise ConfigError(f"{where} must be valid or test, got {value!r}")
    if value == "valid" and val_split is None:
        raise ConfigError(f"{where}: valid needs val_split (the held-out fraction of the training set), e.g. 0.1")
    return value


def _check_names(recipe: Recipe, where: str) -> None:
    from tpp.errors import ModelError
    from tpp.models import list_models
    from tpp.models.specs import SPEC_FORMS, parse_spec
    from tpp.pruning import list_methods

    try:  # the spec's form only: a factory is imported when the model is built, not by validation
        kind, _ = parse_spec(recipe.model)
    except ModelError as error:
        raise ConfigError(f"{where}: model: {error}") from None
    if kind == "registry" and recipe.model not in list_models():
        raise ConfigError(
            f"{where}: unknown model {recipe.model!r}; choose from {', '.join(list_models())} or {SPEC_FORMS}"
        )
    for methods in recipe.finetune["lr_methods"]:
        for method in methods or ():
            if method not in recipe.prune["methods"]:
                raise ConfigError(f"{where}: finetune: lrs: method {method!r} is not in prune.methods")
    unknown = [m for m in recipe.prune["methods"] if m not in list_methods() and m not in recipe.prune["variants"]]
    if unknown:
        raise ConfigError(f"{where}: unknown pruning method {unknown[0]!r}; choose from {', '.join(list_methods())}")


def _image(data: Mapping[str, Any], dataset: str, where: str) -> dict[str, Any]:
    """The image options of ``data``, checked as ``tpp train`` checks its flags."""
    from tpp.data import dataset_info
    from tpp.data.imagefolder import ImageFolderOptions
    from tpp.data.info import canonical_name
    from tpp.errors import DataError

    given = {k: data[k] for k in IMAGE_KEYS if data.get(k) is not None}
    name = canonical_name(dataset)
    if name != "imagefolder":
        size = dataset_info(name).image_size  # DataError names the valid datasets
        if given.get("image_size") not in (None, size) or any(k != "image_size" for k in given):
            key = next(k for k in given if k != "image_size" or given[k] != size)
            raise ConfigError(
                f"{where}: {key} applies to dataset: imagefolder; {name} has its own {size}x{size} images, drop it"
            )
        return given
    for key in ("image_size", "resize"):
        if key in given:
            given[key] = checks.whole(given[key], f"{where}: {key}", 1)
    for key in ("augment", "stream"):
        if key in given and not isinstance(given[key], bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {given[key]!r}")
    for key in ("mean", "std"):
        if key in given and not isinstance(given[key], list):
            given[key] = [given[key]]
    try:
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k != "stream"}
        ImageFolderOptions(**options)
    except (DataError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: image options: {' '.join(str(error).split())}") from None
    return given


def _base(data: Any, where: str) -> dict[str, Any]:
    checks.keys(data, BASE_KEYS, where)
    if "epochs" not in data or "lr" not in data:
        raise ConfigError(f"{where} needs 'epochs' and 'lr' (e.g. epochs: 30, lr: '0:0.01,15:0.001')")
    return {
        "epochs": checks.whole(data["epochs"], f"{where}: epochs", 1),
        "lr": checks.schedule(data["lr"], f"{where}: lr"),
        "weight_decay": checks.number(data.get("weight_decay", DEFAULT_WEIGHT_DECAY), f"{where}: weight_decay"),
        "momentum": checks.number(data.get("momentum", DEFAULT_MOMENTUM), f"{where}: momentum"),
    }


def _finetune(data: Any, where: str) -> dict[str, Any]:
    checks.keys(data, FINETUNE_KEYS, where)
    if ("epochs" in data) == ("budget_steps" in data) or "lrs" not in data:
        raise ConfigError(
            f"{where} needs 'lrs' (a list of LR schedules) and one of 'epochs' or 'budget_steps' "
            "(equal budgets: steps after the base model, regularisation included)"
        )
    lrs, lr_methods = [], []
    for entry in checks.non_empty_list(data["lrs"], f"{where}: lrs"):
        if isinstance(entry, Mapping):  # {schedule: ..., methods: [...]}: only these methods use it
            checks.keys(entry, {"schedule", "methods"}, f"{where}: lrs")
            methods = entry.get("methods")
            if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods) or not methods:
                raise ConfigError(f"{where}: lrs: 'methods' must be a non-empty list of method names")
            lrs.append(checks.schedule(entry.get("schedule"), f"{where}: lrs: schedule"))
            lr_methods.append(list(methods))
        else:
            lrs.append(checks.schedule(entry, f"{where}: lrs"))
            lr_methods.append(None)
    budget = checks.whole(data["budget_steps"], f"{where}: budget_steps", 1) if "budget_steps" in data else None
    return {
        "epochs": checks.whole(data.get("epochs", 0), f"{where}: epochs", 0),
        "budget_steps": budget,
        "lrs": lrs,
        "lr_methods": lr_methods,
        "weight_decay": checks.number(data.get("weight_decay", DEFAULT_WEIGHT_DECAY), f"{where}: weight_decay"),
        "momentum": checks.number(data.get("momentum", DEFAULT_MOMENTUM), f"{where}: momentum"),
    }


def _seeds(value: Any, where: str) -> list[int]:
    seeds = [checks.whole(s, where, 0) for s in checks.non_empty_list(value, where)]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} contain a duplicate")
    return seeds


def _jsv(data: Any, where: str) -> dict[str, Any]:
    checks.keys(data, JSV_KEYS, where)
    every = data.get("every_epoch", False)
    if not isinstance(every, bool):
        raise ConfigError(f"{where}: every_epoch must be true or false, got {every!r}")
    mode = data.get("mode", "eval")
    if mode not in ("eval", "train"):
        raise ConfigError(f"{where}: mode must be 'eval' or 'train' (the paper's), got {mode!r}")
    return {"batches": checks.whole(data.get("batches", 1), f"{where}: batches", 0), "every_epoch": every, "mode": mode}

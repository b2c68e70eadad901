"""Find and read the ``report.json`` of pruning jobs (``tpp prune`` or ``tpp run`` folders).

Every run is normalised to ``{"path", "model", "dataset", "method", "ratio", "lr", "seed", "run", "settings",
"report"}`` where ``ratio`` and ``lr`` are short labels used for grouping: from the job's ``run.json`` (written by
``tpp run``) when present, else derived from the report's config (ratio text, initial LR). ``model`` and
``dataset`` come from the job's ``config.json`` (``tpp prune`` and ``tpp run`` both record them there), else
from the recipe file named in ``run.json``, else ``'?'`` (a recipe's jobs: ``'recipe <name>'``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from tpp.errors import ConfigError
from tpp.reporting.groups import UNKNOWN

REPORT = "report.json"
DENSE_CONTROL = "dense control"


def collect(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read the jobs in ``run_dirs``: job folders, or folders searched recursively for job folders.

    Raises:
        ConfigError: a path does not exist, or holds no ``report.json`` at any depth.
    """
    runs: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for item in run_dirs:
        path = Path(item)
        if not path.exists():
            raise ConfigError(f"run directory {path} does not exist; pass folders written by `tpp prune` or `tpp run`")
        if path.is_file():
            path = path.parent if path.name == REPORT else path
        files = [path / REPORT] if (path / REPORT).is_file() else sorted(path.rglob(REPORT))
        if not files:
            raise ConfigError(f"no {REPORT} under {path}; pass job folders written by `tpp prune` or `tpp run`")
        for file in files:
            folder = file.parent.resolve()
            if folder not in seen:
                seen.add(folder)
                runs.append(_normalise(file.parent, _read(file, required=True)))
    return runs


def _read(path: Path, required: bool = False) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        if required:
            raise ConfigError(
                f"cannot read {path} ({type(error).__name__}); delete the half-written job or rerun it"
            ) from None
        return None
    if not isinstance(data, dict):
        if required:
            raise ConfigError(f"{path} is not a job report (a JSON object); pass job folders only")
        return None
    return data


def _normalise(folder: Path, report: dict[str, Any]) -> dict[str, Any]:
    run = _read(folder / "run.json") or {}
    config = report.get("config") or {}
    settings = _read(folder / "config.json") or {}  # the command's options, as `tpp prune` recorded them
    seed = run.get("seed")
    if seed is None:
        for found in (settings, _read(folder / "meta.json") or {}):
            seed = found.get("seed")
            if seed is not None:
                break
    _complete_history(folder, report)
    method = str(run.get("method") or report.get("method") or config.get("method") or "?")
    importance = config.get("importance")
    if isinstance(importance, str) and importance != "l1":  # the criterion is part of what was compared
        method = f"{method} [{importance}]"
    if value({"report": report}, "params_reduction") == 0.0 and "perplexity" in (report.get("accuracy_before") or {}):
        method = DENSE_CONTROL  # nothing removed: the unpruned model trained with the same budget
    model, dataset = _model_and_data(settings, run)
    return {
        "path": str(folder),
        "model": model,
        "dataset": dataset,
        "method": method,
        "ratio": str(run.get("ratio_label") or ratio_text(config.get("ratio"), config.get("global_ratio"))),
        "lr": str(run.get("lr_label") or lr_text(config.get("ft_lr"))),
        "seed": seed,
        "run": run,
        "settings": settings,
        "report": report,
    }


# datasets read from the user's folder: two such folders are two datasets, so the folder is part of the label
FOLDER_DATASETS = ("imagefolder", "text")


def _model_and_data(settings: dict[str, Any], run: dict[str, Any]) -> tuple[str, str]:
    """The model and dataset labels of a job: its ``config.json``, else its recipe's, else ``'?'``."""
    model, dataset = settings.get("model"), settings.get("dataset")
    if (model is None or dataset is None) and run.get("recipe_file"):
        recipe = _recipe(str(run["recipe_file"]))
        model = model if model is not None or recipe is None else recipe.model
        dataset = dataset if dataset is not None or recipe is None else recipe.dataset
    if model is None and run.get("recipe"):
        model = f"recipe {run['recipe']}"  # one recipe, one model: keeps two recipes' jobs apart
    dataset_text = UNKNOWN if dataset is None else str(dataset)
    if dataset_text in FOLDER_DATASETS and settings.get("data_dir"):
        dataset_text = f"{dataset_text} ({settings['data_dir']})"
    if settings.get("eval_split") == "valid":  # numbers on held-out training data: never averaged with test ones
        dataset_text += " [validation]"
    return (UNKNOWN if model is None else str(model)), dataset_text


def _recipe(path: str) -> Any:
    """The ``model`` and ``dataset`` of the recipe file at ``path`` (``recipe.model``/``recipe.dataset``),
    or None when it is gone or unreadable (a report does not need it). Read as plain YAML, not
    validated: the report layer stays below the recipe runner."""
    from types import SimpleNamespace

    from tpp.util.files import read_bounded
    from tpp.util.yamlfile import load_yaml

    try:
        data = load_yaml(read_bounded(path, 2**20).decode("utf-8"))
    except Exception:  # noqa: BLE001 - any unreadable recipe only loses a label
        return None
    if not isinstance(data, dict):
        return None
    return SimpleNamespace(model=data.get("model"), dataset=data.get("dataset"))


def _complete_history(folder: Path, report: dict[str, Any]) -> None:
    """A job resumed mid-fine-tuning reports only the epochs of its last process; metrics.jsonl has them all."""
    finetune = report.get("finetune")
    if not isinstance(finetune, dict) or len(finetune.get("history") or []) >= int(finetune.get("epochs") or 0):
        return
    try:
        lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    by_epoch: dict[int, dict[str, Any]] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("stage") == "finetune" and isinstance(record.get("epoch"), int):
            by_epoch[record["epoch"]] = record  # a re-run epoch replaces the older line
    if len(by_epoch) > len(finetune.get("history") or []):
        finetune["history"] = [by_epoch[e] for e in sorted(by_epoch)]


def ratio_text(ratio: Any, global_ratio: Any = None) -> str:
    """A short label of a job's ratio setting (number, pattern mapping or pattern text); a
    ``global_ratio`` is what the pruner used whenever it is set, whatever ``ratio`` says."""
    if isinstance(global_ratio, (int, float)):
        return f"global {global_ratio:g}"
    if ratio is None:
        return "?"
    if isinstance(ratio, (int, float)):
        return f"{ratio:g}"
    if isinstance(ratio, dict):
        return ",".join(f"{k}:{v:g}" if isinstance(v, (int, float)) else f"{k}:{v}" for k, v in ratio.items())
    return str(ratio)


def lr_text(schedule: Any) -> str:
    """The initial LR of a schedule text (``'0:0.01,60:0.001' -> '0.01'``), else the text itself."""
    if schedule is None:
        return "?"
    from tpp.training import parse_lr_schedule

    try:
        return f"{parse_lr_schedule(str(schedule)).lr_at(0, 1000):g}"
    except Exception:  # any malformed schedule still gets a label
        return str(schedule)


def value(run: dict[str, Any], *keys: str) -> float | None:
    """A nested number of a run's report (``value(run, "finetune", "best_top1")``), or None."""
    node: Any = run["report"]
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None

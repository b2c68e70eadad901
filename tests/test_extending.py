"""docs/extending.md, executed: its one-file method (a growing-L1 regulariser) is loaded from the page
into a temporary module and used from Python and from the CLI, exactly as the page shows.

Nothing is written under src/: the code block is saved to a temporary folder and imported from there,
and the method is removed from the registry afterwards, so other tests see the built-in methods only.
Also checked here: every ``docs/*.md#anchor`` that the code, tests, recipes and docs cite exists.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import tpp
from tpp.data.embedded import load_mnist_subset
from tpp.errors import ConfigError
from tpp.pruning import registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGE = DOCS / "extending.md"
METHOD_FILE = "# src/tpp/pruning/methods/growing_l1.py"
PYTHON_USE = "# Python: prune the paper's linear MLP"
METHOD = "growing-l1"
MODULE = "_tpp_docs_growing_l1"


def _blocks(language: str) -> list[str]:
    """The fenced code blocks of docs/extending.md in ``language``."""
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(encoding="utf-8"), flags=re.S | re.M)


def _block(language: str, first_line: str) -> str:
    found = [b for b in _blocks(language) if b.startswith(first_line)]
    assert len(found) == 1, f"docs/extending.md should have one {language} block starting {first_line!r}"
    return found[0]


def _commands() -> list[list[str]]:
    """The ``tpp ...`` commands of the page's bash block, as argument lists (continuations joined)."""
    block = next(b for b in _blocks("bash") if f"--method {METHOD}" in b)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("tpp ")]


def _with(args: list[str], **values: str) -> list[str]:
    """``args`` with the value of each ``--flag`` in ``values`` replaced."""
    args = list(args)
    for flag, value in values.items():
        args[args.index("--" + flag.replace("_", "-")) + 1] = value
    return args


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The page's method file, imported as a module (which registers ``growing-l1``)."""
    registry.list_methods()  # the built-in methods first, as when the file sits in tpp.pruning.methods
    path = tmp_path_factory.mktemp("extending") / "growing_l1.py"
    path.write_text(_block("python", METHOD_FILE), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        registry._METHODS.pop(METHOD, None)
        sys.modules.pop(MODULE, None)


def _mnist():
    images, labels = load_mnist_subset("train")
    return (images.float() / 255 - 0.1307) / 0.3081, labels


def test_the_method_is_registered_with_its_options(example):
    method = tpp.pruning.get_method(METHOD)
    assert method.regularized and method.pruner is example.GrowingL1Pruner
    assert {o.flag for o in method.options} == {"--l1-weight", "--reg-step", "--reg-interval", "--stabilize-iters"}
    model = tpp.create_model("mlp7_linear", num_classes=10, in_channels=1)
    with pytest.raises(ConfigError, match="has no option 'gram_weight'"):
        method.make_pruner(model, torch.zeros(2, 1, 32, 32), ratio=0.5, gram_weight=1.0)
    with pytest.raises(ConfigError, match="l1_weight must be a number >= 0"):
        method.make_pruner(model, torch.zeros(2, 1, 32, 32), ratio=0.5, l1_weight=-1.0)


def test_the_python_example_runs_as_written(example):
    namespace: dict = {}
    exec(compile(_block("python", PYTHON_USE), str(PAGE), "exec"), namespace)
    pruner, model = namespace["pruner"], namespace["model"]
    assert pruner.done and pruner.iteration == 44 and pruner.reg_value == 1.0
    assert [getattr(model, f"fc{i}").out_features for i in range(1, 8)] == [50] * 6 + [10]


def _run(example, l1_weight: float) -> tuple[dict, dict, dict, list[float]]:
    """The page's loop with the class itself: filter L1 norms before/after, pruned indices, penalties seen."""
    images, labels = _mnist()
    torch.manual_seed(0)
    model = tpp.create_model("mlp7_linear", num_classes=10, in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pruner = example.GrowingL1Pruner(
        model, images[:2], ratio=0.5, l1_weight=l1_weight, reg_step=0.25, reg_interval=1, stabilize_iters=40
    )
    pruned = pruner.pruned_indices

    def norms() -> dict[str, torch.Tensor]:
        return {name: getattr(model, name).weight.detach().abs().sum(1).clone() for name in pruned}

    before, penalties = norms(), []
    for x, y in zip(images.split(64), labels.split(64)):
        penalty = pruner.penalty()
        if pruner.iteration == 2:  # lambda = 0.5: the term is l1_weight * lambda * sum |w| of the pruned filters
            rows = sum(getattr(model, n).weight[idx].abs().sum() for n, idx in pruned.items())
            assert torch.allclose(penalty, l1_weight * 0.5 * rows)
        penalties.append(float(penalty.detach()))
        loss = F.cross_entropy(model(x), y) + penalty
        optimizer.zero_grad()
        loss.backward()
        pruner.regularize()
        optimizer.step()
        pruner.step()
        if pruner.done:
            break
    after = norms()
    assert pruner.done and pruner.phase == "done"
    pruned_model = pruner.prune(optimizer)
    assert pruned_model.fc1.out_features == 50 and pruned_model.fc7.in_features == 50
    return before, after, pruned, penalties


def test_the_regulariser_shrinks_only_the_pruned_filters(example):
    before, after, pruned, penalties = _run(example, l1_weight=0.1)
    assert penalties[0] == 0.0 and penalties[1] > 0  # lambda is 0 at the start, then grows
    for name, idx in pruned.items():
        kept = [i for i in range(len(before[name])) if i not in idx]
        shrink_pruned = float((after[name][idx] / before[name][idx]).mean())
        shrink_kept = float((after[name][kept] / before[name][kept]).mean())
        assert shrink_pruned < 0.2 and shrink_kept > 0.95, (name, shrink_pruned, shrink_kept)
    # control: the same run without the penalty leaves the pruned filters as they were
    before, after, pruned, penalties = _run(example, l1_weight=0.0)
    assert set(penalties) == {0.0}
    for name, idx in pruned.items():
        assert float((after[name][idx] / before[name][idx]).mean()) > 0.95


def test_state_dict_resumes_the_schedule(example):
    model = tpp.create_model("mlp7_linear", num_classes=10, in_channels=1)
    pruner = example.GrowingL1Pruner(
        model, torch.zeros(2, 1, 32, 32), ratio=0.5, reg_step=0.25, reg_interval=1, stabilize_iters=40
    )
    for _ in range(7):
        pruner.step()
    state = pruner.state_dict()
    assert state["config"]["l1_weight"] == 1.0
    other = example.GrowingL1Pruner(
        model, torch.zeros(2, 1, 32, 32), ratio=0.5, reg_step=0.25, reg_interval=1, stabilize_iters=40
    )
    other.load_state_dict(state)
    assert (other.iteration, other.phase, other.pruned_indices) == (7, "stabilize", pruner.pruned_indices)


@pytest.fixture(scope="module")
def trained(example, tmp_path_factory):
    """The page's ``tpp train`` command, writing into a temporary folder."""
    from tpp.cli.main import main

    train = next(c for c in _commands() if c[0] == "train")
    out = tmp_path_factory.mktemp("extending-base") / "base"
    assert main(_with(train, out=str(out)) + ["--quiet"]) == 0
    return out / "best.pt"


def test_the_cli_example_runs_as_written(trained, run_cli, tmp_path):
    prune = next(c for c in _commands() if c[0] == "prune")
    assert prune[prune.index("--method") + 1] == METHOD
    out = tmp_path / "job"
    result = run_cli(*_with(prune, checkpoint=str(trained), out=str(out)), "--quiet")
    assert result.code == 0, result.err
    assert result.out.strip().startswith(f"{METHOD}: top-1") and "params 154,010 -> 64,510" in result.out
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == METHOD and report["config"]["pruner_options"]["l1_weight"] == 0.1
    assert report["regularization"]["iterations"] == 44 and report["regularization"]["final_lambda"] == 1.0
    assert report["counts_after"]["params"] == 64510
    assert tpp.load_pruned(out / "pruned_model.pt").fc1.out_features == 50


def test_the_cli_lists_the_option_and_refuses_it_for_another_method(trained, run_cli):
    helped = run_cli("prune", "--help")
    assert helped.code == 0 and "--l1-weight" in helped.out and METHOD in helped.out
    result = run_cli(
        "prune",
        "--method",
        "l1",
        "--model",
        "mlp7_linear",
        "--dataset",
        "mnist_subset",
        "--checkpoint",
        trained,
        "--ratio",
        "0.5",
        "--l1-weight",
        "0.1",
    )
    assert result.code == 2 and result.out == ""
    assert result.err_lines == [f"tpp: error: --l1-weight is an option of {METHOD}; --method l1 does not use it"]


def test_a_method_outside_the_package_is_loaded_by_tpp_plugins(tmp_path):
    """The page's file, kept in the user's own folder, reaches the CLI through TPP_PLUGINS."""
    import os
    import subprocess

    (tmp_path / "growing_l1.py").write_text(_block("python", METHOD_FILE), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}

    def tpp_cli(plugins: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tpp", *args],
            env={**env, "TPP_PLUGINS": plugins},
            capture_output=True,
            text=True,
            timeout=120,
        )

    shown = tpp_cli("growing_l1", "prune", "--help")
    assert shown.returncode == 0 and "--l1-weight" in shown.stdout and "growing-l1" in shown.stdout
    assert "--l1-weight" not in tpp_cli("", "prune", "--help").stdout
    missing = tpp_cli("no_such_plugin_module", "prune", "--help")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "TPP_PLUGINS names 'no_such_plugin_module'" in missing.stderr.strip().splitlines()[-1]


def test_a_taken_method_name_is_a_config_error(example):
    from dataclasses import replace

    with pytest.raises(ConfigError, match="already registered"):
        registry.register_method(replace(registry.get_method(METHOD), pruner=lambda *a, **k: None))
    registry.register_method(registry.get_method(METHOD))  # the same method again (a re-import) is fine


def test_the_decorator_registers_at_the_definition_and_fields_are_keyword_only():
    registry.list_methods()  # the built-ins first, so the cleanup below removes only this test's method

    def build(model, example_inputs, **options):
        return None

    try:

        @tpp.pruning.pruning_method("_test-decorated", regularized=True, description="d")
        def decorated(model, example_inputs, **options):
            return None

        method = tpp.pruning.get_method("_test-decorated")
        assert method.pruner is decorated and callable(decorated)  # the decorator hands back the pruner unchanged
        assert (
            method.regularized,
            method.description,
            method.config,
            method.after_prune,
            method.finetune_penalty,
            method.hook_options,
        ) == (True, "d", None, None, None, ())
    finally:
        registry._METHODS.pop("_test-decorated", None)
    assert "_test-decorated" not in registry.list_methods()
    with pytest.raises(TypeError):
        registry.Method("x", build, True, "d")  # a bare positional bool is refused


def test_a_method_option_of_an_unparseable_type_is_refused():
    from dataclasses import dataclass, field

    from tpp.pruning.options import options_of

    @dataclass
    class Config:
        sizes: list = field(default_factory=list)

    with pytest.raises(ConfigError, match="must be float, int, str or bool"):
        options_of(Config)


def test_the_recipe_block_validates(example):
    from tpp.recipes.schema import validate_recipe

    block = yaml.safe_load(next(b for b in _blocks("yaml") if METHOD in b))
    recipe = yaml.safe_load((ROOT / "recipes" / "mnist_mlp7_linear.yaml").read_text(encoding="utf-8"))
    recipe.pop("expected", None)  # its keys name the recipe's own methods
    recipe["prune"] = block["prune"]
    assert validate_recipe(recipe).prune["options"][METHOD] == {"l1_weight": 0.1, "stabilize_iters": 2000}


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_cited_docs_anchor_exists():
    cited: set[tuple[str, str]] = set()
    sources = [
        ROOT / "README.md",
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "recipes").glob("*.yaml"),
        *DOCS.glob("*.md"),
    ]
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace")
        for prefix, page, anchor in re.findall(r"(docs/)?\b([a-z_]+\.md)#([a-z0-9\-]+)", text):
            if prefix or path.parent == DOCS:
                cited.add((page, anchor))
        if path.parent == DOCS:  # links within the page
            cited.update((path.name, anchor) for anchor in re.findall(r"\]\(#([a-z0-9\-]+)\)", text))
    assert ("method.md", "official-code") in cited  # the scan itself works
    missing = []
    for page, anchor in sorted(cited):
        if not (DOCS / page).is_file():
            missing.append(f"{page} (no such page)")
            continue
        text = re.sub(r"^```.*?^```", "", (DOCS / page).read_text(encoding="utf-8"), flags=re.S | re.M)
        if anchor not in {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}:
            missing.append(f"{page}#{anchor}")
    assert not missing, f"cited anchors without a heading: {missing}"

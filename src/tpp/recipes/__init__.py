"""Recipes: YAML grids of pruning experiments (the paper's tables and figures) and their runner.

>>> from tpp.recipes import load_recipe, run_recipe
>>> recipe = load_recipe("recipes/mnist_mlp7_linear.yaml")          # doctest: +SKIP
>>> run_recipe(recipe, "runs/mnist_mlp7_linear", dry_run=True)      # doctest: +SKIP

The schema is documented in :mod:`tpp.recipes.schema`.
"""

from tpp.recipes.dryrun import describe_grid, recipe_speedups
from tpp.recipes.expected import paper_rows
from tpp.recipes.grid import FAST_REG_STEP_FACTOR, FAST_STABILIZE_DIVISOR, GridPoint, build_grid, method_options
from tpp.recipes.runner import run_recipe, write_recipe_report
from tpp.recipes.schema import Recipe, load_recipe, validate_recipe

__all__ = [
    "FAST_REG_STEP_FACTOR",
    "FAST_STABILIZE_DIVISOR",
    "GridPoint",
    "Recipe",
    "build_grid",
    "describe_grid",
    "load_recipe",
    "method_options",
    "paper_rows",
    "recipe_speedups",
    "run_recipe",
    "validate_recipe",
    "write_recipe_report",
]

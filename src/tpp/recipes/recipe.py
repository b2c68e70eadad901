"""A validated recipe as data (:func:`tpp.recipes.schema.load_recipe` builds it).

Its own module, below the schema, so that the modules the schema uses (``expected``, ``grid``) can
name the type without importing the schema back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Recipe:
    """A validated recipe; ``raw`` keeps the YAML mapping, ``path`` the file it came from.

    ``model`` is any model spec (:mod:`tpp.models.specs`); ``image`` holds the image-folder
    options given (``image_size``, ``resize``, ``channels``, ...; see :meth:`image_options`).
    The descriptive fields (``description``, ``paper``, ``hardware``, ``expected_wall_time``)
    are empty when the recipe does not state them.
    """

    name: str
    model: str
    dataset: str
    prune: dict[str, Any]
    finetune: dict[str, Any]
    description: str = ""
    paper: str = ""
    hardware: str = ""
    expected_wall_time: str = ""
    notes: str = ""
    data_dir: str | None = None
    image: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    test_batch_size: int = 256
    num_workers: int = 4
    train_subset: int | None = None
    val_split: float | None = None  # held out of the training set (tpp.data.builders.validation_indices)
    eval_split: str = "test"  # valid: every number of the grid is on the held-out images
    base: dict[str, Any] | None = None
    checkpoint: str | None = None
    has_checkpoint_key: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    jsv: dict[str, Any] = field(default_factory=lambda: {"batches": 1, "every_epoch": False, "mode": "eval"})
    expected: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> int | None:
        """The network input side the recipe asks for (None: the dataset's own)."""
        return self.image.get("image_size")

    def image_options(self) -> Any:
        """The :class:`tpp.data.imagefolder.ImageFolderOptions` of ``dataset: imagefolder``
        (unset options at their defaults); None for the other datasets."""
        from tpp.data.imagefolder import ImageFolderOptions
        from tpp.data.info import canonical_name

        if canonical_name(self.dataset) != "imagefolder":
            return None
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.image.items() if k != "stream"}
        if self.image.get("stream"):
            values["in_memory"] = False
        return ImageFolderOptions(**values)

    def base_method(self, name: str) -> str:
        """The registered method that ``name`` (a method, or a variant of one in ``prune.variants``) runs."""
        return self.prune.get("variants", {}).get(name, {}).get("method", name)

    def ratio_spec(self, entry: float | str) -> str:
        """The ratio text given to the pruner for one ``prune.ratios`` entry."""
        pattern = self.prune.get("ratio_pattern")
        if isinstance(entry, str) or not pattern:
            return str(entry)
        return pattern.replace("{ratio}", f"{entry:g}")

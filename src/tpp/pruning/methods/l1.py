"""L1: one-shot L1-norm filter pruning (Li et al., 2017), the paper's main baseline."""

from __future__ import annotations

from tpp.pruning.configured import ConfiguredPruner
from tpp.pruning.registry import pruning_method


@pruning_method("l1", regularized=False, description="one-shot L1-norm filter pruning (Li et al., 2017)")
class L1Pruner(ConfiguredPruner):
    """The same selection and removal as TPP, with no regularisation phase and no options.

    ``done`` is True from the start, so the usual loop ends at once; :meth:`prune` removes the
    smallest-L1 filters immediately. The arguments are :class:`~tpp.pruning.configured.ConfiguredPruner`'s.
    """

    Config = None

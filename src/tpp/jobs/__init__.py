"""Jobs built from the core library, shared by the CLI and the recipes: training and the three-stage
pruning job (regularise -> remove -> fine-tune), with the context they run in."""

from tpp.jobs.context import JobContext
from tpp.jobs.preview import preview_prune_job
from tpp.jobs.prune_job import PruneJobConfig, run_prune_job
from tpp.jobs.train_job import TrainJobConfig, run_train_job

__all__ = ["JobContext", "PruneJobConfig", "TrainJobConfig", "preview_prune_job", "run_prune_job", "run_train_job"]

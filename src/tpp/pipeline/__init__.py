"""End-to-end jobs built from the core library: the three-stage pruning job."""

from tpp.pipeline.preview import preview_prune_job
from tpp.pipeline.prune_job import JobContext, PruneJobConfig, run_prune_job

__all__ = ["JobContext", "PruneJobConfig", "preview_prune_job", "run_prune_job"]

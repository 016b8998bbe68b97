"""Evaluation of ranking models: the pointwise pass (AUC, GAUC), the sampled protocols (HR@K,
NDCG@K against drawn negatives) and reports that record the protocol. `python -m tfrec.evaluate`
is the command line; `evaluator` holds the API the reproduction harness uses."""

from tfrec.evaluation.evaluator import (LoadedRun, evaluate, evaluate_split, load_run,
                                       validation_record)
from tfrec.evaluation.report import output_path, to_markdown, write_result
from tfrec.evaluation.sampled import negative_pool, sample_users, train_stats

__all__ = ["LoadedRun", "evaluate", "evaluate_split", "load_run", "negative_pool", "output_path",
           "sample_users", "to_markdown", "train_stats", "validation_record", "write_result"]

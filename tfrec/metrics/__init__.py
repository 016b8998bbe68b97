"""Offline evaluation metrics (numpy): AUC, GAUC, HR@K, NDCG@K, sampled-negative protocols."""

from tfrec.metrics.ranking import (PROTOCOLS, SampledProtocol, auc, gauc, hit_rate_at_k,
                                   ndcg_at_k, rank_of_positive, sample_negatives)

__all__ = ["PROTOCOLS", "SampledProtocol", "auc", "gauc", "hit_rate_at_k", "ndcg_at_k",
           "rank_of_positive", "sample_negatives"]

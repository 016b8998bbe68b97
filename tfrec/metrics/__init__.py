"""Offline evaluation metrics (numpy): AUC, GAUC, HR@K, NDCG@K, sampled-negative protocols;
THACIL §4.4 per-user top-K precision / recall / F-score / NDCG over the user's impressions."""

from tfrec.metrics.ranking import (PROTOCOLS, SampledProtocol, auc, gauc, hit_rate_at_k,
                                   ndcg_at_k, per_user_auc, rank_of_positive, sample_negatives)
from tfrec.metrics.topk import THACIL_KS, UserTopK, topk_metrics, user_topk

__all__ = ["PROTOCOLS", "SampledProtocol", "THACIL_KS", "UserTopK", "auc", "gauc",
           "hit_rate_at_k", "ndcg_at_k", "per_user_auc", "rank_of_positive", "sample_negatives",
           "topk_metrics", "user_topk"]

"""The planted scores of the record kinds that have no `oracle_prob` of their own, computed
from the generator's own distributions (no sampling):

  matching   `positive_intensity`: the expected number of target positives on item i in the
             request's session,
               E[n_i] = r_t P_beh(i) + r_imp P_cand(i) p_i + r_cold P_cold(i) p_i,
             with r_t, r_imp, r_cold the session's Poisson rates (`users.session_rates`),
             P_beh the organic target draw (topic = target intent w.p. intent_weight, else
             from the day's tilted theta_u^t; the item from the user's tilted topic pool),
             P_cand / P_cold the impression candidate distributions (intent topic / popular /
             uniform) and p_i the planted P(click). Ranking candidates by E[n_i] is the
             Bayes-optimal retrieval of the session's next positive.
  dual_pair  `mount_intensity`: the expected number of times product s is mounted on a story,
             P_first(s) + dual_second_share * P_second(s) (`world.dual_pair_records`).
"""

from __future__ import annotations

import numpy as np

from tfrec.data import schema
from tfrec.datasets.synthetic import users
from tfrec.datasets.synthetic.world import Pool, World, mount_weights


def pool_probability(pool: Pool, items: np.ndarray) -> np.ndarray:
  """<float64>[n] P(a draw from `pool` (by its weights) is each of `items`); 0 outside it."""
  if not len(pool):
    return np.zeros(len(items))
  weights = np.diff(np.concatenate([[0.0], pool.cdf]))
  order = np.argsort(pool.ids, kind="stable")
  ids = pool.ids[order]
  pos = np.minimum(np.searchsorted(ids, items), len(ids) - 1)
  found = ids[pos] == items
  return np.where(found, weights[order][pos], 0.0) / pool.cdf[-1]


def uniform_probability(pool: Pool, items: np.ndarray) -> np.ndarray:
  """<float64>[n] P(a uniform draw from `pool` is each of `items`)."""
  if not len(pool):
    return np.zeros(len(items))
  return np.isin(items, pool.ids) / len(pool.ids)


def _topic_mixture(pools, topic_probs: np.ndarray, items: np.ndarray) -> np.ndarray:
  """sum_k P(topic k) P_{pools[k]}(item): a topic's pool may be a fallback holding others."""
  out = np.zeros(len(items))
  for k in np.nonzero(topic_probs > 0)[0]:
    out += topic_probs[k] * pool_probability(pools[k], items)
  return out


def positive_intensity(world: World, user: users.UserProfile, sess: users.Session,
                       items: np.ndarray) -> np.ndarray:
  """<float64>[n] E[number of target positives on each of `items`] in session `sess` (module
  docstring)."""
  cfg = world.config
  items = np.asarray(items, np.int64)
  rate_t, rate_i, rate_c = users.session_rates(world, user, sess)
  intent = sess.target_intent
  out = np.zeros(len(items))
  if rate_t or rate_i or rate_c:
    p_click = users.click_probability(world, user, items, intent, sess.scenario, sess.day)
  if rate_t:
    theta = users.behaviour_interest(world, user, schema.TARGET, sess)
    topics = (1.0 - cfg.intent_weight) * theta / theta.sum()
    topics[intent] += cfg.intent_weight
    pools = users.user_pools(world, user, schema.TARGET, sess.scenario)
    out += rate_t * _topic_mixture(pools, topics, items)
  if rate_i:
    by_topic, pool = users.candidate_pools(world, sess.scenario, cold=False)
    popular = cfg.candidate_intent_share + cfg.candidate_popular_share
    cand = (cfg.candidate_intent_share * pool_probability(by_topic[intent], items)
            + cfg.candidate_popular_share * pool_probability(pool, items)
            + (1.0 - popular) * uniform_probability(pool, items))
    out += rate_i * cand * p_click
  if rate_c:
    by_topic, pool = users.candidate_pools(world, sess.scenario, cold=True)
    cand = (cfg.candidate_intent_share * pool_probability(by_topic[intent], items)
            + (1.0 - cfg.candidate_intent_share) * uniform_probability(pool, items))
    out += rate_c * cand * p_click
  return out


def mount_intensity(world: World, story: int, products: np.ndarray) -> np.ndarray:
  """<float64>[n] E[number of dual pairs (story, product)] for each of `products`."""
  store = world.store
  products = np.asarray(products, np.int64)
  k = int(world.topic[story])
  src = store.item_ids(domain=schema.SOURCE)
  same = src[store.category[src] == store.category[story]]
  if len(same):
    first = Pool(same, np.cumsum(world.popularity[same]))
  else:
    first = world.warm[schema.SOURCE][k]
  if world.config.story_product_closeness > 0:
    first = Pool(first.ids, np.cumsum(mount_weights(world, story, first.ids)))
  return (pool_probability(first, products)
          + world.config.dual_second_share * pool_probability(world.warm[schema.SOURCE][k],
                                                              products))

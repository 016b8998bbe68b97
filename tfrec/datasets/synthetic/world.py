"""The synthetic generator's world: the `World` (items, pools, global tables) built once per
dataset from the config's seed (`build_world`), and the dual-pair mounting. Item attributes are
drawn in `items.py`, user profiles, sessions and the click oracle in `users.py` (re-exported
here, as is the config); the session simulation and records live in `simulate.py`, and the
package docstring states the planted model as equations.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfrec.data import schema
from tfrec.data.item_store import ItemStore
from tfrec.datasets.synthetic import items as item_lib
# Re-exported: `world.SyntheticConfig`, `world.get_config`, ... as before the config moved out.
from tfrec.datasets.synthetic.config import (CCL_PAIR_SCOPES, CONFIGS, SyntheticConfig,
                                             config_from_dict, get_config, parse_assignments)

__all__ = ["CCL_PAIR_SCOPES", "CONFIGS", "Pool", "SyntheticConfig", "World", "build_world",
           "config_from_dict", "draw", "dual_pair_records", "get_config", "make_pool",
           "parse_assignments"]

# Second word of the world's seed sequence: users use [seed, user_id], so the world's
# three-word key (last word non-zero) never collides with a user's stream.
_WORLD_KEY = (0xFFFFFFFF, 0x5EED)
_DUAL_KEY = (0xFFFFFFFF, 0xD0A1)
_TASTE_KEY = (0xFFFFFFFF, 0x7A57)
_SCENARIO_POOL_KEY = 0x5CE0   # third word of `items.stream` keys owned here.
_GROUP_KEY = 0x6A0B
TASTE_DIM = 8              # dimension of the target-only taste (style_u, taste latent_i).
WEEK_S = 7 * 86_400

USER_FEATURE_SIZES = (2, 7, 21, 10)  # gender, age bucket, occupation, region.
AGE_PROBS = np.array([0.05, 0.2, 0.3, 0.2, 0.12, 0.08, 0.05])
REGION_PROBS = np.arange(10, 0, -1) / np.arange(10, 0, -1).sum()
DAY_S = 86_400
HOUR_S = 3_600


@dataclasses.dataclass(frozen=True)
class Pool:
  """Item ids to draw from in proportion to popularity.

  Attributes:
    ids: <int64>[n] item ids.
    cdf: <float64>[n] cumulative popularity of `ids` (last entry = total).
  """

  ids: np.ndarray
  cdf: np.ndarray

  def __len__(self) -> int:
    return len(self.ids)

  def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """<int64>[n] ids drawn with replacement, proportional to popularity."""
    idx = np.searchsorted(self.cdf, rng.random(n) * self.cdf[-1], side="right")
    return self.ids[np.minimum(idx, len(self.ids) - 1)]

  def uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """<int64>[n] ids drawn uniformly with replacement."""
    return self.ids[rng.integers(0, len(self.ids), n)]


def draw(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
  """<int64>[n] indices drawn from the (unnormalised) distribution `probs`."""
  cdf = np.cumsum(probs)
  idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
  return np.minimum(idx, len(probs) - 1)


def make_pool(ids: np.ndarray, popularity: np.ndarray) -> Pool:
  """Pool of `ids` weighted by `popularity[ids]`."""
  ids = np.asarray(ids, np.int64)
  return Pool(ids, np.cumsum(popularity[ids]))


@dataclasses.dataclass
class World:
  """Items and global tables of one synthetic dataset (everything except users).

  Attributes:
    config: the parameters.
    store: the item feature store (row 0 padding).
    topic: <int64>[num_items + 1] topic of each item (0-based; -1 for the padding row).
    latent: <float64>[num_items + 1, latent_dim] item latent vectors z_i.
    popularity: <float64>[num_items + 1] power-law popularity (sums to 1 per domain).
    quality: <float64>[num_items + 1] item quality bias q_i in the click logit.
    topic_centers: <float64>[num_topics, latent_dim].
    warm: warm[d][k] pool of non-cold items of domain d and topic k (domain-wide if empty).
    warm_all: warm_all[d] pool of all non-cold items of domain d.
    cold: cold[k] pool of cold target items of topic k (all cold items if none).
    cold_all: pool of all cold target items (may be empty).
    scenario_category_pref: <float64>[num_scenarios, num_categories + 1] s_{scn,cat}.
    region_scenario_logit: <float64>[10, num_scenarios] scenario traffic tilt per region.
    age_topic_logit: <float64>[7, num_topics] tilt of the long-term interest per age bucket.
    hour_weights: <float64>[24] relative activity per hour of the day.
    taste: <float64>[num_items + 1, TASTE_DIM] target items' taste latents tau_i (zero rows for
      the padding row and source items; its own stream, drawn whatever the knobs).
    residual: <float64>[num_items + 1, latent_dim] z_i - mu_{k_i}, the latent away from its
      topic centre (`item_taste_weight`; zero for the padding row).
    item_level: <float64>[num_items + 1, latent_dim] eps_i = z_i - mu_{k_i} - o_{c_i}, the
      item's own part of the latent (`story_product_closeness`).
    scenario_warm: per scenario, per topic, the warm target items it can show (None when
      `scenario_pool_share` = 1: every scenario shows `warm[target]`).
    scenario_warm_all: per scenario, all warm target items it can show (or None).
    group_centers: <float64>[user_groups, num_topics] the groups' interest centres theta_g.
    kind_transfer: <float64>[num_item_kinds + 1] tr_j per item kind (row 0 unused).
  """

  config: SyntheticConfig
  store: ItemStore
  topic: np.ndarray
  latent: np.ndarray
  popularity: np.ndarray
  quality: np.ndarray
  topic_centers: np.ndarray
  warm: Tuple[Tuple[Pool, ...], ...]
  warm_all: Tuple[Pool, ...]
  cold: Tuple[Pool, ...]
  cold_all: Pool
  scenario_category_pref: np.ndarray
  region_scenario_logit: np.ndarray
  age_topic_logit: np.ndarray
  hour_weights: np.ndarray
  taste: np.ndarray
  residual: np.ndarray
  item_level: np.ndarray
  scenario_warm: Optional[Tuple[Tuple[Pool, ...], ...]]
  scenario_warm_all: Optional[Tuple[Pool, ...]]
  group_centers: np.ndarray
  kind_transfer: np.ndarray
  _dual_pairs: Optional[List[Dict[str, int]]] = None

  @property
  def num_items(self) -> int:
    return self.store.num_items


def _pools(cfg: SyntheticConfig, domain: np.ndarray, topic: np.ndarray, cold: np.ndarray,
           popularity: np.ndarray):
  """Sampling pools: warm[d][k], warm_all[d], cold[k], cold_all (see `World`)."""
  ids = np.arange(len(domain))
  real = ids > 0
  warm_all = tuple(make_pool(ids[real & (domain == d) & (cold == 0)], popularity)
                   for d in (0, 1))
  warm = tuple(
      tuple(_pool_or(ids[real & (domain == d) & (cold == 0) & (topic == k)], warm_all[d],
                     popularity) for k in range(cfg.num_topics))
      for d in (0, 1))
  cold_all = make_pool(ids[real & (cold == 1)], popularity)
  cold_by_topic = tuple(_pool_or(ids[real & (cold == 1) & (topic == k)], cold_all, popularity)
                        for k in range(cfg.num_topics))
  return warm, warm_all, cold_by_topic, cold_all


def _pool_or(ids: np.ndarray, fallback: Pool, popularity: np.ndarray) -> Pool:
  return make_pool(ids, popularity) if len(ids) else fallback


def hour_weights() -> np.ndarray:
  """<float64>[24] relative activity per hour: a lunch and a larger evening peak."""
  h = np.arange(24)
  return 0.15 + 0.5 * np.exp(-((h - 12.5) / 1.5) ** 2) + np.exp(-((h - 20.5) / 2.5) ** 2)


def build_world(config: SyntheticConfig, with_visual: bool = True) -> World:
  """Builds topics, items, the item store and the global tables from `config.seed`.

  Args:
    config: the parameters.
    with_visual: False leaves the store's visual column 0-wide (the user simulation does not
      need it; every other column and table is the same, the visual RNG is separate).
  """
  cfg = config
  r_items, r_vis, r_tables, r_text = (
      np.random.default_rng(s)
      for s in np.random.SeedSequence([cfg.seed, *_WORLD_KEY]).spawn(4))
  ns, nt = cfg.num_source_items, cfg.num_target_items
  n = ns + nt + 1
  domain = np.concatenate([[0], np.zeros(ns, np.int64), np.ones(nt, np.int64)])
  topic_probs = r_items.dirichlet(np.full(cfg.num_topics, 5.0))
  t_s, c_s = item_lib.item_topics(cfg, r_items, ns, topic_probs)
  t_t, c_t = item_lib.item_topics(cfg, r_items, nt, item_lib.target_topic_probs(cfg, topic_probs))
  topic = np.concatenate([[-1], t_s, t_t])
  category = np.concatenate([[0], c_s, c_t])
  centers = r_items.normal(0.0, 1.0, (cfg.num_topics, cfg.latent_dim))
  offsets = r_items.normal(0.0, cfg.category_offset_std, (cfg.num_categories + 1, cfg.latent_dim))
  latent = centers[topic] + offsets[category]
  eps = r_items.normal(0.0, cfg.item_noise_std, latent.shape)
  latent += eps
  latent[0] = eps[0] = 0.0
  pop = np.concatenate([[0.0], item_lib.popularity(cfg, r_items, ns),
                        item_lib.popularity(cfg, r_items, nt)])
  quality = np.concatenate([[0.0], r_items.normal(0.0, cfg.quality_std, n - 1)])
  cold = np.zeros(n, np.int64)
  num_cold = int(round(cfg.cold_item_share * nt))
  cold[ns + 1 + r_items.choice(nt, num_cold, replace=False)] = 1
  store = item_lib.make_store(cfg, r_text, r_vis, domain, category, topic, latent, cold,
                              with_visual=with_visual)
  warm, warm_all, cold_pools, cold_all = _pools(cfg, domain, topic, cold, pop)
  scp = r_tables.normal(0.0, cfg.scenario_pref_std, (cfg.num_scenarios, cfg.num_categories + 1))
  scp[:, 0] = 0.0
  residual = latent - np.where(topic[:, None] >= 0, centers[np.maximum(topic, 0)], 0.0)
  scenario_warm, scenario_all = _scenario_pools(cfg, warm, warm_all, topic, pop)
  world = World(
      config=cfg, store=store, topic=topic, latent=latent, popularity=pop,
      quality=quality, topic_centers=centers, warm=warm, warm_all=warm_all, cold=cold_pools,
      cold_all=cold_all, scenario_category_pref=scp,
      region_scenario_logit=r_tables.normal(0.0, 0.3, (USER_FEATURE_SIZES[3], cfg.num_scenarios)),
      age_topic_logit=r_tables.normal(0.0, 0.5, (USER_FEATURE_SIZES[1], cfg.num_topics)),
      hour_weights=hour_weights(), taste=_taste_latents(cfg, domain), residual=residual,
      item_level=eps,
      scenario_warm=scenario_warm, scenario_warm_all=scenario_all,
      group_centers=_group_centers(cfg),
      kind_transfer=np.concatenate([[cfg.transfer], np.asarray(cfg.item_kind_transfer)]))
  if cfg.story_title_copy > 0:  # The stories' titles copy words of their mounted products.
    item_lib.copy_product_words(cfg, store.title, dual_pair_records(world))
  return world


def _taste_latents(cfg: SyntheticConfig, domain: np.ndarray) -> np.ndarray:
  """<float64>[n, TASTE_DIM] tau_i ~ N(0, I) for target items, zeros elsewhere (own stream)."""
  rng = np.random.default_rng([cfg.seed, *_TASTE_KEY])
  taste = rng.normal(0.0, 1.0, (len(domain), TASTE_DIM))
  taste[domain != schema.TARGET] = 0.0
  taste[0] = 0.0
  return taste


def _group_centers(cfg: SyntheticConfig) -> np.ndarray:
  """<float64>[user_groups, num_topics] theta_g ~ Dir(alpha) (own stream; empty for 0 groups)."""
  if cfg.user_groups < 1:
    return np.zeros((0, cfg.num_topics))
  rng = item_lib.stream(cfg, _GROUP_KEY)
  return rng.dirichlet(np.full(cfg.num_topics, cfg.interest_concentration), cfg.user_groups)


def _scenario_pools(cfg: SyntheticConfig, warm, warm_all, topic: np.ndarray,
                    pop: np.ndarray):
  """Per scenario a random `scenario_pool_share` of the warm target items (at least one), as
  (per-topic pools, all) tuples; (None, None) when the share is 1."""
  if cfg.scenario_pool_share >= 1.0:
    return None, None
  rng = item_lib.stream(cfg, _SCENARIO_POOL_KEY)
  ids = warm_all[schema.TARGET].ids
  by_topic, every = [], []
  for _ in range(cfg.num_scenarios):
    keep = rng.random(len(ids)) < cfg.scenario_pool_share
    keep[rng.integers(0, len(ids))] = True
    shown = make_pool(ids[keep], pop)
    every.append(shown)
    by_topic.append(tuple(_pool_or(shown.ids[topic[shown.ids] == k], shown, pop)
                          for k in range(cfg.num_topics)))
  return tuple(by_topic), tuple(every)


def dual_pair_records(world: World) -> List[Dict[str, int]]:
  """ADAPT §III-D mounting: each non-cold target item (story) paired with a source item.

  The first pair uses a source item of the same category (same topic when the category has
  none), drawn with weight pop_s * exp(w_m cos(eps_story, eps_s)) (w_m =
  story_product_closeness, eps the items' own parts of their latents;
  popularity alone at 0); a `dual_second_share` of stories gets a second pair with a source
  item of the same topic, by popularity. Cached on the world.

  Returns:
    list of {"target_item_id", "source_item_id"} dicts, ordered by target item (every split;
    `items.split_dual_pairs` assigns them to train/valid/test).
  """
  if world._dual_pairs is not None:
    return list(world._dual_pairs)
  rng = np.random.default_rng([world.config.seed, *_DUAL_KEY])
  store, w = world.store, world.config.story_product_closeness
  src = store.item_ids(domain=schema.SOURCE)
  by_cat: Dict[int, Pool] = {}
  for c in np.unique(store.category[src]):
    by_cat[int(c)] = make_pool(src[store.category[src] == c], world.popularity)
  out = []
  for t in store.item_ids(domain=schema.TARGET, cold=False):
    k = int(world.topic[t])
    first = by_cat.get(int(store.category[t]), world.warm[0][k])
    if w > 0:
      first = Pool(first.ids, np.cumsum(mount_weights(world, int(t), first.ids)))
    out.append({"target_item_id": int(t), "source_item_id": int(first.sample(rng, 1)[0])})
    if rng.random() < world.config.dual_second_share:
      out.append({"target_item_id": int(t),
                  "source_item_id": int(world.warm[0][k].sample(rng, 1)[0])})
  world._dual_pairs = out
  return list(out)


def mount_weights(world: World, story: int, products: np.ndarray) -> np.ndarray:
  """<float64>[n] unnormalised weight of mounting `products` on `story` as its first pair:
  pop_s * exp(w_m cos(eps_story, eps_s)) (eps: `World.item_level`)."""
  z = world.item_level
  cos = (z[products] @ z[story]) / (np.linalg.norm(z[products], axis=1)
                                    * np.linalg.norm(z[story]) + 1e-12)
  return world.popularity[products] * np.exp(world.config.story_product_closeness * cos)

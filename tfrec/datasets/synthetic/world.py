"""The synthetic generator's world: topics, items, user profiles, the oracle (the config and its
presets: `config.py`, re-exported here).

Items and tables are O(items) and built once per dataset from the config's seed
(`build_world`); user profiles, session plans and the click oracle are drawn here per user,
the session simulation and the records live in `tfrec.datasets.synthetic`, whose docstring
states the planted model as equations.

Id layouts (0 is padding everywhere):
  items      1..Ns are source items, Ns+1..Ns+Nt target items.
  categories topic k owns categories k*C+1 .. k*C+C (C = categories_per_topic).
  tags       topic k owns a block of P_sh + 2*P_ex ids: P_sh tags shared by both domains,
             then P_ex source-only and P_ex target-only tags, with P = P_sh + P_ex tags per
             topic and domain and P_sh = round(tag_overlap * P).
  tokens     1..F function words (target titles only), then per topic a block of
             S shared, Ks source keyword and Kt target tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from tfrec.data import schema
from tfrec.data.item_store import ItemStore
# Re-exported: `world.SyntheticConfig`, `world.get_config`, ... as before the config moved out.
from tfrec.datasets.synthetic.config import (CCL_PAIR_SCOPES, CONFIGS, SyntheticConfig,
                                             get_config, parse_assignments)

__all__ = ["CCL_PAIR_SCOPES", "CONFIGS", "SyntheticConfig", "World", "build_world",
           "click_probability", "dual_pair_records", "get_config", "make_user",
           "parse_assignments", "plan_sessions"]

# Second word of the world's seed sequence: users use [seed, user_id], so the world's
# three-word key (last word non-zero) never collides with a user's stream.
_WORLD_KEY = (0xFFFFFFFF, 0x5EED)
_DUAL_KEY = (0xFFFFFFFF, 0xD0A1)
_TASTE_KEY = (0xFFFFFFFF, 0x7A57)
# Third word of a user's own streams for the issue-11 latents ([seed, user_id, stream]): they
# never draw from the user's main stream [seed, user_id], so its draws (and the oracle's replay
# of make_user + plan_sessions) stay where they were.
_USER_KNOB_STREAM = 1      # activity multiplier, session-count gamma, cold-user flag, style.
_TARGET_INTENT_STREAM = 2  # per-session target intents.
TASTE_DIM = 8              # dimension of the target-only taste (style_u, taste latent_i).
WEEK_S = 7 * 86_400

USER_FEATURE_SIZES = (2, 7, 21, 10)  # gender, age bucket, occupation, region.
AGE_PROBS = np.array([0.05, 0.2, 0.3, 0.2, 0.12, 0.08, 0.05])
REGION_PROBS = np.arange(10, 0, -1) / np.arange(10, 0, -1).sum()
SOURCE_TITLE_LEN = (3, 6)    # inclusive range of keyword-list title lengths.
TARGET_TITLE_LEN = (8, 16)   # inclusive range of natural-language title lengths.
MIN_TAGS = 2
DAY_S = 86_400
HOUR_S = 3_600
_SESSION_START_JITTER_S = 60
_SESSION_MIN_S, _SESSION_MAX_S = 300, 3_480  # start jitter + duration < 1 hour.


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

  @property
  def num_items(self) -> int:
    return self.store.num_items


def _item_topics(cfg: SyntheticConfig, rng: np.random.Generator, n: int,
                 topic_probs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Topic (0-based) and category (1-based, inside the topic) of `n` items: [n], [n]."""
  topic = rng.choice(cfg.num_topics, size=n, p=topic_probs)
  category = topic * cfg.categories_per_topic + rng.integers(0, cfg.categories_per_topic, n) + 1
  return topic.astype(np.int64), category.astype(np.int64)


def _popularity(cfg: SyntheticConfig, rng: np.random.Generator, n: int) -> np.ndarray:
  """<float64>[n] power-law popularity over a random ranking, summing to 1."""
  pop = (1.0 + rng.permutation(n)) ** -cfg.popularity_exponent
  return pop / pop.sum()


def _tag_table(cfg: SyntheticConfig) -> np.ndarray:
  """<int64>[num_topics, 2, P] tag ids of each topic in each domain (shared ones first)."""
  shared = cfg.shared_tags_per_topic
  excl = cfg.tags_per_topic - shared
  block = shared + 2 * excl
  table = np.zeros((cfg.num_topics, 2, cfg.tags_per_topic), np.int64)
  for k in range(cfg.num_topics):
    base = 1 + k * block
    common = np.arange(base, base + shared)
    table[k, 0] = np.concatenate([common, np.arange(base + shared, base + shared + excl)])
    table[k, 1] = np.concatenate([common, np.arange(base + shared + excl, base + block)])
  return table


def _item_tags(cfg: SyntheticConfig, rng: np.random.Generator, topic: np.ndarray,
               domain: int) -> np.ndarray:
  """<int64>[n, MAX_TAGS]: 2..8 distinct tags from each item's topic tag set, 0-padded."""
  n, width = len(topic), schema.MAX_TAGS
  per_topic = _tag_table(cfg)[topic, domain]                       # [n, P]
  order = np.argsort(rng.random((n, cfg.tags_per_topic)), axis=1)[:, :width]
  chosen = np.take_along_axis(per_topic, order, axis=1)
  most = min(width, cfg.tags_per_topic)
  length = rng.integers(min(MIN_TAGS, most), most + 1, n)
  out = np.zeros((n, width), np.int64)
  out[:, :chosen.shape[1]] = chosen
  out[np.arange(width)[None, :] >= length[:, None]] = 0
  return out


def _title_tokens(cfg: SyntheticConfig, rng: np.random.Generator, topic: np.ndarray,
                  domain: int) -> np.ndarray:
  """<int64>[n, MAX_TITLE_LEN] title tokens, 0-padded (see the module docstring's layout)."""
  n, width = len(topic), schema.MAX_TITLE_LEN
  base = (cfg.title_function_words + 1 + topic * cfg.tokens_per_topic)[:, None]
  shared = base + rng.integers(0, cfg.title_shared_tokens, (n, width))
  u = rng.random((n, width))
  if domain == schema.SOURCE:
    own = base + cfg.title_shared_tokens + rng.integers(0, cfg.title_source_tokens, (n, width))
    tokens = np.where(u < 0.15, shared, own)
    low, high = SOURCE_TITLE_LEN
  else:
    off = cfg.title_shared_tokens + cfg.title_source_tokens
    own = base + off + rng.integers(0, cfg.title_target_tokens, (n, width))
    zipf = 1.0 / np.arange(1, cfg.title_function_words + 1)
    func = 1 + np.searchsorted(np.cumsum(zipf) / zipf.sum(), rng.random((n, width)))
    func = np.minimum(func, cfg.title_function_words)
    tokens = np.where(u < 0.4, func, np.where(u < 0.9, own, shared))
    low, high = TARGET_TITLE_LEN
  length = rng.integers(low, high + 1, n)
  tokens[np.arange(width)[None, :] >= length[:, None]] = 0
  return tokens.astype(np.int64)


def _visual(cfg: SyntheticConfig, rng: np.random.Generator, latent: np.ndarray,
            domain: np.ndarray, chunk: int = 8192) -> np.ndarray:
  """<float32>[n, visual_dim]: W_domain @ z + shift_domain + noise (different W per domain).

  Built in row chunks so that the peak memory stays near the float32 output.
  """
  v, d = cfg.visual_dim, cfg.latent_dim
  proj = rng.normal(0.0, 1.0 / np.sqrt(d), (2, v, d))
  shift = rng.normal(0.0, cfg.visual_domain_shift, (2, v))
  out = np.empty((len(latent), v), np.float32)
  for lo in range(0, len(latent), chunk):
    z, dom = latent[lo:lo + chunk], domain[lo:lo + chunk]
    noise = rng.standard_normal((len(z), v), dtype=np.float32) * np.float32(cfg.visual_noise_std)
    signal = np.where(dom[:, None] == schema.SOURCE, z @ proj[0].T, z @ proj[1].T)
    out[lo:lo + chunk] = signal + shift[dom] + noise
  return out


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
  t_s, c_s = _item_topics(cfg, r_items, ns, topic_probs)
  t_t, c_t = _item_topics(cfg, r_items, nt, topic_probs)
  topic = np.concatenate([[-1], t_s, t_t])
  category = np.concatenate([[0], c_s, c_t])
  centers = r_items.normal(0.0, 1.0, (cfg.num_topics, cfg.latent_dim))
  offsets = r_items.normal(0.0, cfg.category_offset_std, (cfg.num_categories + 1, cfg.latent_dim))
  latent = centers[topic] + offsets[category]
  latent += r_items.normal(0.0, cfg.item_noise_std, latent.shape)
  latent[0] = 0.0
  popularity = np.concatenate([[0.0], _popularity(cfg, r_items, ns), _popularity(cfg, r_items, nt)])
  quality = np.concatenate([[0.0], r_items.normal(0.0, cfg.quality_std, n - 1)])
  cold = np.zeros(n, np.int64)
  num_cold = int(round(cfg.cold_item_share * nt))
  cold[ns + 1 + r_items.choice(nt, num_cold, replace=False)] = 1
  store = _make_store(cfg if with_visual else dataclasses.replace(cfg, visual_dim=0), r_text,
                      r_vis, domain, category, topic, latent, cold)
  warm, warm_all, cold_pools, cold_all = _pools(cfg, domain, topic, cold, popularity)
  scp = r_tables.normal(0.0, cfg.scenario_pref_std, (cfg.num_scenarios, cfg.num_categories + 1))
  scp[:, 0] = 0.0
  return World(
      config=cfg, store=store, topic=topic, latent=latent, popularity=popularity,
      quality=quality, topic_centers=centers, warm=warm, warm_all=warm_all, cold=cold_pools,
      cold_all=cold_all, scenario_category_pref=scp,
      region_scenario_logit=r_tables.normal(0.0, 0.3, (USER_FEATURE_SIZES[3], cfg.num_scenarios)),
      age_topic_logit=r_tables.normal(0.0, 0.5, (USER_FEATURE_SIZES[1], cfg.num_topics)),
      hour_weights=hour_weights(), taste=_taste_latents(cfg, domain))


def _taste_latents(cfg: SyntheticConfig, domain: np.ndarray) -> np.ndarray:
  """<float64>[n, TASTE_DIM] tau_i ~ N(0, I) for target items, zeros elsewhere (own stream)."""
  rng = np.random.default_rng([cfg.seed, *_TASTE_KEY])
  taste = rng.normal(0.0, 1.0, (len(domain), TASTE_DIM))
  taste[domain != schema.TARGET] = 0.0
  taste[0] = 0.0
  return taste


def _make_store(cfg: SyntheticConfig, r_text: np.random.Generator, r_vis: np.random.Generator,
                domain: np.ndarray, category: np.ndarray, topic: np.ndarray,
                latent: np.ndarray, cold: np.ndarray) -> ItemStore:
  """The item store; row 0 (padding) is all zeros."""
  n = len(domain)
  tags = np.zeros((n, schema.MAX_TAGS), np.int64)
  title = np.zeros((n, schema.MAX_TITLE_LEN), np.int64)
  for d in (schema.SOURCE, schema.TARGET):
    rows = np.nonzero((domain == d) & (np.arange(n) > 0))[0]
    tags[rows] = _item_tags(cfg, r_text, topic[rows], d)
    title[rows] = _title_tokens(cfg, r_text, topic[rows], d)
  visual = _visual(cfg, r_vis, latent, domain)
  visual[0] = 0.0
  return ItemStore(domain=domain, category=category, tags=tags, title=title, visual=visual,
                   cold=cold)


def dual_pair_records(world: World) -> List[Dict[str, int]]:
  """ADAPT §III-D mounting: each non-cold target item paired with a source item.

  The first pair uses a popular source item of the same category (same topic when the
  category has no source item); a `dual_second_share` of target items gets a second pair
  with a source item of the same topic.

  Returns:
    list of {"target_item_id", "source_item_id"} dicts, ordered by target item.
  """
  rng = np.random.default_rng([world.config.seed, *_DUAL_KEY])
  store = world.store
  src = store.item_ids(domain=schema.SOURCE)
  by_cat: Dict[int, Pool] = {}
  for c in np.unique(store.category[src]):
    by_cat[int(c)] = make_pool(src[store.category[src] == c], world.popularity)
  out = []
  for t in store.item_ids(domain=schema.TARGET, cold=False):
    k = int(world.topic[t])
    first = by_cat.get(int(store.category[t]), world.warm[0][k])
    out.append({"target_item_id": int(t), "source_item_id": int(first.sample(rng, 1)[0])})
    if rng.random() < world.config.dual_second_share:
      out.append({"target_item_id": int(t),
                  "source_item_id": int(world.warm[0][k].sample(rng, 1)[0])})
  return out


# ----------------------------------------------------------------------------- users


class UserProfile(NamedTuple):
  """One user's latent profile.

  Attributes:
    user_id: 0-based id.
    features: [4] gender, age bucket, occupation, region.
    shared: <float64>[T] long-term shared interest theta_u.
    interest: per domain <float64>[T] theta_u^d.
    scenario_probs: <float64>[num_scenarios].
    active: dense target-domain user.
    style: <float64>[TASTE_DIM] target-only taste style_u (own stream).
    activity: multiplier of the target event rate, exp(sigma z_u - sigma^2/2) (1.0 at sigma 0).
    session_scale: g_u, the multiplier of the mean extra session count (1.0 at kappa 0).
    cold: True for a cold user (target activity from the test day on).
    target_pools: per topic, the pool organic target behaviours draw from (tilted by the
      taste when target_taste_weight > 0, else the world's warm target pools).
  """

  user_id: int
  features: List[int]
  shared: np.ndarray
  interest: Tuple[np.ndarray, np.ndarray]
  scenario_probs: np.ndarray
  active: bool
  style: np.ndarray
  activity: float
  session_scale: float
  cold: bool
  target_pools: Tuple[Pool, ...]


class Session(NamedTuple):
  start: int      # seconds
  duration: int   # seconds, events lie in [start, start + duration)
  scenario: int
  intent: int     # the session's (source) intent topic
  target_intent: int  # the target-domain intent (= intent w.p. target_intent_coupling)


def draw(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
  """<int64>[n] indices drawn from the (unnormalised) distribution `probs`."""
  cdf = np.cumsum(probs)
  idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
  return np.minimum(idx, len(probs) - 1)


def make_user(world: World, rng: np.random.Generator, user_id: int) -> UserProfile:
  cfg = world.config
  age = int(draw(rng, AGE_PROBS, 1)[0])
  region = int(draw(rng, REGION_PROBS, 1)[0])
  features = [int(rng.integers(0, USER_FEATURE_SIZES[0])), age,
              int(rng.integers(0, USER_FEATURE_SIZES[2])), region]
  alpha = np.full(cfg.num_topics, cfg.interest_concentration)
  shared = rng.dirichlet(alpha * np.exp(world.age_topic_logit[age]))
  interest = tuple(cfg.transfer * shared + (1 - cfg.transfer) * rng.dirichlet(alpha)
                   for _ in range(2))
  traffic = np.asarray(cfg.scenario_traffic) * np.exp(world.region_scenario_logit[region])
  active = bool(rng.random() < cfg.active_share)
  # The issue-11 latents, from the user's own knob stream (drawn whatever the knobs).
  knob = np.random.default_rng([cfg.seed, user_id, _USER_KNOB_STREAM])
  z, gamma_u, cold_u = knob.standard_normal(), knob.random(), knob.random()
  style = knob.normal(0.0, 1.0 / np.sqrt(TASTE_DIM), TASTE_DIM)
  sigma, kappa = cfg.target_activity_spread, cfg.session_dispersion
  activity = float(np.exp(sigma * z - sigma ** 2 / 2)) if sigma > 0 else 1.0
  # g_u ~ Gamma(1/kappa, kappa) by inversion of one uniform (one draw whatever kappa is).
  session_scale = float(_gamma_ppf(gamma_u, 1.0 / kappa) * kappa) if kappa > 0 else 1.0
  return UserProfile(user_id, features, shared, interest, traffic / traffic.sum(), active,
                     style, activity, session_scale, bool(cold_u < cfg.cold_user_share),
                     _target_pools(world, style))


def _gamma_ppf(u: float, shape: float) -> float:
  from scipy import special
  return float(special.gammaincinv(shape, u))


def _target_pools(world: World, style: np.ndarray) -> Tuple[Pool, ...]:
  """Per topic, the organic target behaviours' pool: popularity tilted by exp(w <style, tau>)."""
  w = world.config.target_taste_weight
  pools = world.warm[schema.TARGET]
  if w <= 0:
    return pools
  return tuple(Pool(p.ids, np.cumsum(world.popularity[p.ids]
                                     * np.exp(w * (world.taste[p.ids] @ style))))
               for p in pools)


def plan_sessions(world: World, rng: np.random.Generator, user: UserProfile) -> List[Session]:
  """Sessions in distinct hours (weighted by hour of day), time-ordered, with Markov intents."""
  cfg = world.config
  slots = cfg.days * 24
  mean_extra = max(cfg.sessions_per_user - 1, 0)
  if cfg.session_dispersion > 0:
    mean_extra *= user.session_scale
  n = int(min(1 + rng.poisson(mean_extra), slots))
  weights = np.tile(world.hour_weights, cfg.days)
  hours = np.sort(rng.choice(slots, n, replace=False, p=weights / weights.sum()))
  starts = hours * HOUR_S + rng.integers(0, _SESSION_START_JITTER_S, n)
  durations = rng.integers(_SESSION_MIN_S, _SESSION_MAX_S, n)
  scenarios = draw(rng, user.scenario_probs, n)
  drift = rng.random(n) < cfg.intent_drift
  fresh = draw(rng, user.shared, n)
  intents = []
  for s in range(n):
    intents.append(int(fresh[s]) if s == 0 or drift[s] else intents[-1])
  # Target intents from the user's own stream (the main stream's draws above are unchanged).
  own = np.random.default_rng([cfg.seed, user.user_id, _TARGET_INTENT_STREAM])
  coupled = own.random(n) < cfg.target_intent_coupling
  redrawn = draw(own, user.interest[schema.TARGET], n)
  target = [k if c else int(r) for k, c, r in zip(intents, coupled, redrawn)]
  return [Session(int(a), int(b), int(c), k, kt)
          for a, b, c, k, kt in zip(starts, durations, scenarios, intents, target)]


def click_probability(world: World, target_interest: np.ndarray, items: np.ndarray,
                      intent: int, scenario: int,
                      style: Optional[np.ndarray] = None) -> np.ndarray:
  """The planted P(click) of target items (the oracle).

  Args:
    world: the world.
    target_interest: <float>[T] the user's target-domain interest theta_u^t.
    items: <int64>[n] candidate item ids.
    intent: the session's target-domain intent topic.
    scenario: the request's scenario id.
    style: <float>[TASTE_DIM] the user's target taste; required when target_taste_weight > 0.

  Returns:
    <float64>[n] sigmoid(a*theta[k_i] + b*[k_i == intent] + q_i + s[scenario, c_i] + c
    + w_tau * <style_u, tau_i>) (the last term only when target_taste_weight > 0).
  """
  cfg = world.config
  topic = world.topic[items]
  logit = (cfg.click_interest_weight * target_interest[topic]
           + cfg.click_intent_weight * (topic == intent)
           + world.quality[items]
           + world.scenario_category_pref[scenario, world.store.category[items]]
           + cfg.click_bias)
  if cfg.target_taste_weight > 0:
    if style is None:
      raise ValueError("target_taste_weight > 0: click_probability needs the user's style")
    logit = logit + cfg.target_taste_weight * (world.taste[items] @ style)
  return 1.0 / (1.0 + np.exp(-logit))


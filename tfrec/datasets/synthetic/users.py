"""The synthetic world's users: profiles (`make_user`), session plans (`plan_sessions`), what
drives a session's behaviours (`behaviour_interest`, `user_pools`, `session_rates`) and the
planted P(click) (`click_probability`, the oracle).

A user draws from its main stream `default_rng([seed, user_id])` exactly what the first
version drew; every later latent has a stream of its own (`[seed, user_id, 1|2]`, and
`[seed, user_id, 3, j]` for the THACIL / COUPLE / M5 latents, drawn only when their knob is
on), so default knobs leave every user as it was.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from tfrec.data import schema
from tfrec.datasets.synthetic.world import (DAY_S, HOUR_S, TASTE_DIM, USER_FEATURE_SIZES, Pool,
                                            World, draw)

__all__ = ["Session", "UserProfile", "behaviour_interest", "candidate_pools",
           "click_probability", "draw_rows",
           "interest_at", "make_user", "plan_sessions", "session_rates", "split_of_day",
           "user_pools"]

AGE_PROBS = np.array([0.05, 0.2, 0.3, 0.2, 0.12, 0.08, 0.05])
REGION_PROBS = np.arange(10, 0, -1) / np.arange(10, 0, -1).sum()
_SESSION_START_JITTER_S = 60
_SESSION_MIN_S, _SESSION_MAX_S = 300, 3_480  # start jitter + duration < 1 hour.
_USER_KNOB_STREAM = 1      # activity multiplier, session-count gamma, cold-user flag, style.
_TARGET_INTENT_STREAM = 2  # per-session target intents.
_LATENT_STREAM = 3         # [seed, user, 3, j]: one stream per later latent j below.
_GROUP, _DRIFT, _CATEGORY, _ITEM, _SCENARIO = range(5)


class UserProfile(NamedTuple):
  """One user's latent profile.

  Attributes:
    user_id: 0-based id.
    features: [4] gender, age bucket, occupation, region.
    shared: <float64>[T] long-term shared interest theta_u (around its group's centre when
      user_group_weight > 0).
    interest: per domain <float64>[T] theta_u^d = transfer theta_u + (1 - transfer) phi_u^d.
    scenario_probs: <float64>[num_scenarios].
    active: dense target-domain user.
    style: <float64>[TASTE_DIM] target-only taste style_u (own stream).
    activity: multiplier of the target event rate, exp(sigma z_u - sigma^2/2) (1.0 at sigma 0).
    session_scale: g_u, the multiplier of the mean extra session count (1.0 at kappa 0).
    cold: True for a cold user (target activity from the test day on).
    own: per domain <float64>[T] phi_u^d, the domain-specific part of the interest.
    group: the user's group (-1 without groups).
    drift: <float64>[T] phi_u^drift, where the interests drift to (None when rho = 0).
    category_pref: <float64>[num_categories + 1] psi_u (None when w_c = 0).
    item_pref: <float64>[latent_dim] p_u (None when w_z = 0).
    scenario_tilt: <float64>[num_scenarios, T] t_u (None when w_s = 0).
    pools: cache of `user_pools` by (domain, scenario).
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
  own: Tuple[np.ndarray, np.ndarray]
  group: int
  drift: Optional[np.ndarray]
  category_pref: Optional[np.ndarray]
  item_pref: Optional[np.ndarray]
  scenario_tilt: Optional[np.ndarray]
  pools: Dict[Tuple[int, int], Tuple[Pool, ...]]


class Session(NamedTuple):
  start: int      # seconds
  duration: int   # seconds, events lie in [start, start + duration)
  scenario: int
  intent: int     # the session's (source) intent topic
  target_intent: int  # the target-domain intent (= intent w.p. target_intent_coupling)

  @property
  def day(self) -> int:
    return self.start // DAY_S


def split_of_day(cfg, t: int) -> str:
  """The split of an event at time `t` (seconds) by its day: the last day "test", the day
  before "valid", the days before that "train". A session lies inside one hour, so inside one
  day: the split of its start is the split of all its events."""
  day = t // DAY_S
  if day >= cfg.days - 1:
    return "test"
  return "valid" if day == cfg.days - 2 else "train"


def _latent_rng(cfg, user_id: int, j: int) -> np.random.Generator:
  return np.random.default_rng([cfg.seed, user_id, _LATENT_STREAM, j])


def make_user(world: World, rng: np.random.Generator, user_id: int) -> UserProfile:
  cfg = world.config
  age = int(draw(rng, AGE_PROBS, 1)[0])
  region = int(draw(rng, REGION_PROBS, 1)[0])
  features = [int(rng.integers(0, USER_FEATURE_SIZES[0])), age,
              int(rng.integers(0, USER_FEATURE_SIZES[2])), region]
  alpha = np.full(cfg.num_topics, cfg.interest_concentration)
  shared = rng.dirichlet(alpha * np.exp(world.age_topic_logit[age]))
  group = -1
  if cfg.user_groups > 0:
    group = int(_latent_rng(cfg, user_id, _GROUP).integers(0, cfg.user_groups))
    if cfg.user_group_weight > 0:
      shared = ((1.0 - cfg.user_group_weight) * shared
                + cfg.user_group_weight * world.group_centers[group])
  own = tuple(rng.dirichlet(alpha) for _ in range(2))
  interest = tuple(cfg.transfer * shared + (1 - cfg.transfer) * phi for phi in own)
  traffic = np.asarray(cfg.scenario_traffic)
  if cfg.scenario_traffic_skew != 1.0:
    traffic = traffic ** cfg.scenario_traffic_skew
  traffic = traffic * np.exp(world.region_scenario_logit[region])
  active = bool(rng.random() < cfg.active_share)
  # The SEMI-knob latents, from the user's own knob stream (drawn whatever the knobs).
  knob = np.random.default_rng([cfg.seed, user_id, _USER_KNOB_STREAM])
  z, gamma_u, cold_u = knob.standard_normal(), knob.random(), knob.random()
  style = knob.normal(0.0, 1.0 / np.sqrt(TASTE_DIM), TASTE_DIM)
  sigma, kappa = cfg.target_activity_spread, cfg.session_dispersion
  activity = float(np.exp(sigma * z - sigma ** 2 / 2)) if sigma > 0 else 1.0
  # g_u ~ Gamma(1/kappa, kappa) by inversion of one uniform (one draw whatever kappa is).
  session_scale = float(_gamma_ppf(gamma_u, 1.0 / kappa) * kappa) if kappa > 0 else 1.0
  drift = (_latent_rng(cfg, user_id, _DRIFT).dirichlet(alpha)
           if cfg.interest_drift_per_day > 0 else None)
  category_pref = (_latent_rng(cfg, user_id, _CATEGORY).standard_normal(cfg.num_categories + 1)
                   if cfg.category_interest_weight > 0 else None)
  item_pref = (_latent_rng(cfg, user_id, _ITEM).normal(0.0, 1.0 / np.sqrt(cfg.latent_dim),
                                                        cfg.latent_dim)
               if cfg.item_taste_weight > 0 else None)
  tilt = (_latent_rng(cfg, user_id, _SCENARIO).standard_normal((cfg.num_scenarios,
                                                                cfg.num_topics))
          if cfg.scenario_user_tilt > 0 else None)
  return UserProfile(user_id, features, shared, interest, traffic / traffic.sum(), active,
                     style, activity, session_scale, bool(cold_u < cfg.cold_user_share),
                     own, group, drift, category_pref, item_pref, tilt, {})


def _gamma_ppf(u: float, shape: float) -> float:
  from scipy import special
  return float(special.gammaincinv(shape, u))


def _drift_share(world: World, day: int) -> float:
  """l_t = 1 - (1 - rho)^t: how far the interests have drifted by day t."""
  return 1.0 - (1.0 - world.config.interest_drift_per_day) ** day


def interest_at(world: World, user: UserProfile, which: int, day: int) -> np.ndarray:
  """<float64>[T] the user's interest on `day`: `which` = SOURCE/TARGET (theta_u^d) or -1
  (the shared theta_u); (1 - l_t) theta + l_t phi^drift (the profile's array itself when
  there is no drift)."""
  base = user.shared if which < 0 else user.interest[which]
  if user.drift is None:
    return base
  share = _drift_share(world, day)
  return (1.0 - share) * base + share * user.drift


def behaviour_interest(world: World, user: UserProfile, domain: int,
                       sess: Session) -> np.ndarray:
  """<float64>[T] (unnormalised) topic weights of the session's non-intent behaviours: the
  day's theta_u^d, tilted by exp(w_s t_u[scenario]) when scenario_user_tilt > 0."""
  theta = interest_at(world, user, domain, sess.day)
  if user.scenario_tilt is not None:
    theta = theta * np.exp(world.config.scenario_user_tilt * user.scenario_tilt[sess.scenario])
  return theta


def user_pools(world: World, user: UserProfile, domain: int, scenario: int) -> Tuple[Pool, ...]:
  """Per topic, the pool the user's organic behaviours of `domain` draw from in a session of
  `scenario`: popularity tilted by exp(w_tau <style, tau_i> (target) + w_c psi_u[c_i] +
  w_z <p_u, z_i - mu_k> + w_b s[scenario, c_i] (target)); the world's warm pools when no tilt
  applies. Cached on the profile."""
  cfg = world.config
  by_scenario = domain == schema.TARGET and cfg.scenario_behaviour_weight > 0
  key = (domain, scenario if by_scenario else -1)
  if key in user.pools:
    return user.pools[key]
  tilt_taste = domain == schema.TARGET and cfg.target_taste_weight > 0
  pools = world.warm[domain]
  if tilt_taste or by_scenario or user.category_pref is not None or user.item_pref is not None:
    out = []
    for p in pools:
      weight = world.popularity[p.ids] * np.exp(_tilt(world, user, p.ids, domain, scenario,
                                                      by_scenario))
      out.append(Pool(p.ids, np.cumsum(weight)))
    pools = tuple(out)
  user.pools[key] = pools
  return pools


def _tilt(world: World, user: UserProfile, ids: np.ndarray, domain: int, scenario: int,
          by_scenario: bool) -> np.ndarray:
  """<float64>[n] the log-weight tilt of `user_pools` (see there)."""
  cfg = world.config
  out = np.zeros(len(ids))
  if domain == schema.TARGET and cfg.target_taste_weight > 0:
    out = cfg.target_taste_weight * (world.taste[ids] @ user.style)
  out = out + _preference(world, user, ids)
  if by_scenario:
    out = out + cfg.scenario_behaviour_weight * world.scenario_category_pref[
        scenario, world.store.category[ids]]
  return out


def _preference(world: World, user: UserProfile, ids: np.ndarray) -> np.ndarray:
  """<float64>[n] w_c psi_u[c_i] + w_z <p_u, z_i - mu_{k_i}> (0 without those knobs)."""
  cfg = world.config
  out = np.zeros(len(ids))
  if user.category_pref is not None:
    out = out + cfg.category_interest_weight * user.category_pref[world.store.category[ids]]
  if user.item_pref is not None:
    out = out + cfg.item_taste_weight * (world.residual[ids] @ user.item_pref)
  return out


def session_rates(world: World, user: UserProfile, sess: Session) -> Tuple[float, float, float]:
  """(organic target events, warm impressions, cold impressions) expected in the session: the
  Poisson means `simulate` draws from (a cold user is silent before the test day; cold-item
  impressions only on the test day)."""
  cfg = world.config
  rate_t = (cfg.active_target_events_per_session if user.active
            else cfg.target_events_per_session)
  rate_i = cfg.impressions_per_session
  if cfg.target_activity_spread > 0:  # The user's target activity: events and impressions.
    rate_t *= user.activity
    rate_i *= user.activity
  test = split_of_day(cfg, sess.start) == "test"
  if user.cold and not test:
    rate_t = rate_i = 0.0
  rate_c = cfg.cold_impressions_per_session if test and len(world.cold_all) else 0.0
  return rate_t, rate_i, rate_c


def candidate_pools(world: World, scenario: int, cold: bool) -> Tuple[Pool, Pool]:
  """(the intent topic pools' tuple, the whole pool) impressions of `scenario` draw from."""
  if cold:
    return world.cold, world.cold_all
  if world.scenario_warm is not None:
    return world.scenario_warm[scenario], world.scenario_warm_all[scenario]
  return world.warm[schema.TARGET], world.warm_all[schema.TARGET]


def draw_rows(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """<int64>[n] index per row of <float>[n, T] unnormalised `probs`, by the uniforms <[n]> u
  (row r: the first index whose cumulative weight exceeds u_r times the row's total)."""
  cdf = np.cumsum(probs, axis=1)
  idx = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1)
  return np.minimum(idx, probs.shape[1] - 1)


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
  days = starts // DAY_S
  if user.drift is None:
    fresh = draw(rng, user.shared, n)
  else:  # The same uniforms, each against its day's interest.
    fresh = draw_rows(rng.random(n), np.stack([interest_at(world, user, -1, d) for d in days]))
  intents = []
  for s in range(n):
    intents.append(int(fresh[s]) if s == 0 or drift[s] else intents[-1])
  # Target intents from the user's own stream (the main stream's draws above are unchanged).
  own = np.random.default_rng([cfg.seed, user.user_id, _TARGET_INTENT_STREAM])
  coupled = own.random(n) < cfg.target_intent_coupling
  if user.drift is None:
    redrawn = draw(own, user.interest[schema.TARGET], n)
  else:
    redrawn = draw_rows(own.random(n), np.stack([interest_at(world, user, schema.TARGET, d)
                                                 for d in days]))
  target = [k if c else int(r) for k, c, r in zip(intents, coupled, redrawn)]
  return [Session(int(a), int(b), int(c), k, kt)
          for a, b, c, k, kt in zip(starts, durations, scenarios, intents, target)]


def click_probability(world: World, user: UserProfile, items: np.ndarray, intent: int,
                      scenario: int, day: int) -> np.ndarray:
  """The planted P(click) of target items (the oracle).

  Args:
    world: the world.
    user: the user's profile.
    items: <int64>[n] candidate item ids.
    intent: the session's target-domain intent topic.
    scenario: the request's scenario id.
    day: the request's day (the interests drift by day when interest_drift_per_day > 0).

  Returns:
    <float64>[n] sigmoid(a theta_u^t[k_i] + b [k_i == intent] + q_i + s[scenario, c_i] + c
    + w_tau <style_u, tau_i> + w_c psi_u[c_i] + w_z <p_u, z_i - mu_{k_i}> + w_s t_u[s, k_i]);
    each added term only when its knob is on. With item kinds, an item of kind j uses
    tr_j theta_u + (1 - tr_j) phi_u^t in place of theta_u^t (all at the day's drift).
  """
  cfg = world.config
  topic = world.topic[items]
  theta = interest_at(world, user, schema.TARGET, day)[topic]
  if cfg.num_item_kinds:
    kinds = world.store.kind[items]
    has = kinds > 0
    shared = interest_at(world, user, -1, day)[topic]
    own_t = user.own[schema.TARGET]
    if user.drift is not None:
      share = _drift_share(world, day)
      own_t = (1.0 - share) * own_t + share * user.drift
    tr = world.kind_transfer[kinds]
    theta = np.where(has, tr * shared + (1.0 - tr) * own_t[topic], theta)
  logit = (cfg.click_interest_weight * theta
           + cfg.click_intent_weight * (topic == intent)
           + world.quality[items]
           + world.scenario_category_pref[scenario, world.store.category[items]]
           + cfg.click_bias)
  if cfg.target_taste_weight > 0:
    logit = logit + cfg.target_taste_weight * (world.taste[items] @ user.style)
  if user.category_pref is not None or user.item_pref is not None:
    logit = logit + _preference(world, user, items)
  if user.scenario_tilt is not None:
    logit = logit + cfg.scenario_user_tilt * user.scenario_tilt[scenario, topic]
  return 1.0 / (1.0 + np.exp(-logit))

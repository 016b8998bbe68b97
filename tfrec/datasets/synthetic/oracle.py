"""The planted P(click) of any target candidate, for a dataset written by
`tfrec.datasets.synthetic`: the ceiling of sampled ranking (HR@K / NDCG@K) in `tfrec.evaluate`,
on any split (train, valid, test, test_cold).

Records carry `oracle_prob`, the planted P(click) of their own item, which is enough for the
AUC/GAUC ceiling. Ranking needs P(click) of every sampled negative too, which depends on the
user's latent interest and the session intent that records do not carry; `SyntheticOracle`
re-simulates them from the generator's seed in `dataset.json`. `checked_probabilities` uses the
result only if it reproduces the records' `oracle_prob` of the ranked positives; otherwise the
oracle is not available (`OracleUnavailable`, with the reason), never silently wrong.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.datasets.synthetic import planted, users
from tfrec.datasets.synthetic import world as sw

TOLERANCE = 1e-5  # |re-simulated - recorded oracle_prob| (stored as float32).


class OracleUnavailable(Exception):
  """The planted model cannot be reconstructed or does not match the records."""


class SyntheticOracle:
  """The planted P(click) of any target candidate, for data written by `tfrec.datasets.synthetic`.

  Rebuilds the world from `dataset.json`'s generator config, and per user replays the first
  steps of `synthetic.user_records` from the user's own RNG (`default_rng([seed, user])`):
  `users.make_user` (the interests and every knob's latents, from their own streams) then
  `users.plan_sessions` (each session's start, duration, scenario and target-domain intent).
  A request at time t lies in exactly one session (sessions occupy distinct hours). Scores:
  ranking records: P(click) (`users.click_probability`); matching records: the expected
  number of target positives on a candidate in that session (`positive_intensities`); dual
  pairs: the expected number of mountings (`dual_scores`).

  Raises:
    OracleUnavailable: not synthetic data, or a config/store this version cannot rebuild.
  """

  def __init__(self, info: DatasetInfo, store: Optional[ItemStore] = None):
    extra = info.extra or {}
    if extra.get("generator") != "tfrec.datasets.synthetic" or "config" not in extra:
      raise OracleUnavailable(f"dataset {info.name!r} was not written by tfrec.datasets.synthetic:"
                              " there is no planted model to rank candidates with")
    try:
      cfg = sw.config_from_dict(extra["config"])
    except (TypeError, ValueError) as e:
      raise OracleUnavailable(f"dataset.json's generator config cannot be rebuilt by this "
                              f"version of tfrec.datasets.synthetic ({e})") from None
    self.config = cfg
    self.world = sw.build_world(cfg, with_visual=False)
    if store is not None:
      mine = self.world.store
      for col in ("domain", "category", "cold"):
        if not np.array_equal(getattr(mine, col), getattr(store, col)):
          raise OracleUnavailable(f"the item store's {col} column differs from the one the "
                                  "generator rebuilds from dataset.json")
    self._users: Dict[int, Tuple[Any, List[Any], np.ndarray]] = {}

  def replay(self, user_id: int):
    """(profile, sessions, <int64>[n] session starts) of a user, re-simulated (cached)."""
    if user_id not in self._users:
      if not 0 <= user_id < self.config.num_users:
        raise OracleUnavailable(f"user {user_id} is outside the generator's "
                                f"{self.config.num_users} users")
      rng = np.random.default_rng([self.config.seed, user_id])
      user = users.make_user(self.world, rng, user_id)
      sessions = users.plan_sessions(self.world, rng, user)
      self._users[user_id] = (user, sessions, np.array([s.start for s in sessions], np.int64))
    return self._users[user_id]

  def session(self, user_id: int, t: int, scenario: int):
    """(profile, the session holding request time `t`), checking the record's scenario."""
    user, sessions, starts = self.replay(int(user_id))
    j = int(np.searchsorted(starts, t, side="right")) - 1
    if j < 0 or t >= sessions[j].start + sessions[j].duration:
      raise OracleUnavailable(f"user {user_id}: request time {t} lies in no re-simulated "
                              "session")
    if sessions[j].scenario != scenario:
      raise OracleUnavailable(f"user {user_id} at {t}: scenario {scenario} in the record, "
                              f"{sessions[j].scenario} in the re-simulated session")
    return user, sessions[j]

  def probabilities(self, user_ids: np.ndarray, timestamps: np.ndarray,
                    scenario_ids: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """<int64>[n] users, request times, scenarios; <int64>[n, c] items -> <float64>[n, c]
    planted P(click)."""
    out = np.empty(candidate_ids.shape, np.float64)
    for r, (u, t, s) in enumerate(zip(user_ids, timestamps, scenario_ids)):
      user, sess = self.session(u, t, int(s))
      out[r] = users.click_probability(self.world, user, candidate_ids[r], sess.target_intent,
                                       int(s), sess.day)
    return out

  def positive_intensities(self, user_ids: np.ndarray, timestamps: np.ndarray,
                           scenario_ids: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """The planted score of matching records: <float64>[n, c] the expected number of target
    positives (organic behaviours, clicked impressions, clicked cold impressions) on each
    candidate in the request's session (`planted.positive_intensity`)."""
    out = np.empty(candidate_ids.shape, np.float64)
    for r, (u, t, s) in enumerate(zip(user_ids, timestamps, scenario_ids)):
      user, sess = self.session(u, t, int(s))
      out[r] = planted.positive_intensity(self.world, user, sess, candidate_ids[r])
    return out

  def dual_scores(self, stories: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """The planted score of dual pairs: <float64>[n, c] the expected number of times each
    candidate product is mounted on story `stories[r]` (`planted.mount_intensity`)."""
    return np.stack([planted.mount_intensity(self.world, int(t), candidate_ids[r])
                     for r, t in enumerate(stories)])


def ranking_oracle_for(info: DatasetInfo, store: Optional[ItemStore] = None
                       ) -> Tuple[Optional[SyntheticOracle], str]:
  """(the dataset's ranking oracle, "") or (None, why there is none)."""
  try:
    return SyntheticOracle(info, store), ""
  except OracleUnavailable as e:
    return None, str(e)


def checked_probabilities(oracle: SyntheticOracle, users: np.ndarray, timestamps: np.ndarray,
                          scenarios: np.ndarray, candidates: np.ndarray,
                          recorded: np.ndarray) -> np.ndarray:
  """The oracle's <float64>[n, c] P(click) of <int64>[n, c] candidates whose column 0 is the
  records' own item, whose `oracle_prob` (<float>[n]) it must reproduce within `TOLERANCE`.

  Raises:
    OracleUnavailable: column 0 does not reproduce the records (another generator version or
      seed), or the oracle cannot place a request.
  """
  probs = oracle.probabilities(users, timestamps, scenarios, candidates)
  diff = np.abs(probs[:, 0] - recorded)
  if diff.max() > TOLERANCE:
    raise OracleUnavailable(
        f"the re-simulated P(click) of the positive differs from the record's oracle_prob "
        f"in {int(np.sum(diff > TOLERANCE))} of {len(diff)} ranked examples of a batch "
        f"(max {diff.max():.3g}): the data were written by another generator version or seed")
  return probs

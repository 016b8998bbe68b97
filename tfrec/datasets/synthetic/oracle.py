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

from typing import Dict, Optional, Tuple

import numpy as np

from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.datasets.synthetic import world as sw

TOLERANCE = 1e-5  # |re-simulated - recorded oracle_prob| (stored as float32).


class OracleUnavailable(Exception):
  """The planted model cannot be reconstructed or does not match the records."""


class SyntheticOracle:
  """The planted P(click) of any target candidate, for data written by `tfrec.datasets.synthetic`.

  Rebuilds the world from `dataset.json`'s generator config, and per user replays the first
  steps of `synthetic.user_records` from the user's own RNG (`default_rng([seed, user])`):
  `make_user` (theta_u^t, and the target taste style_u from the user's own knob stream) then
  `plan_sessions` (each session's start, duration, scenario and target-domain intent, the
  latter from its own stream). A request at time t lies in exactly one session (sessions
  occupy distinct hours). P(click) is `world.click_probability` (sigmoid(a theta[k_i] +
  b [k_i = target intent] + q_i + s[scenario, c_i] + c + w_tau <style_u, tau_i>)).

  Raises:
    OracleUnavailable: not synthetic data, or a config/store this version cannot rebuild.
  """

  def __init__(self, info: DatasetInfo, store: Optional[ItemStore] = None):
    extra = info.extra or {}
    if extra.get("generator") != "tfrec.datasets.synthetic" or "config" not in extra:
      raise OracleUnavailable(f"dataset {info.name!r} was not written by tfrec.datasets.synthetic:"
                              " there is no planted model to rank candidates with")
    raw = dict(extra["config"])
    try:
      raw["scenario_traffic"] = tuple(raw.get("scenario_traffic", ()))
      cfg = sw.SyntheticConfig(**raw)
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
    self._users: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                 np.ndarray]] = {}

  def _user(self, user_id: int):
    if user_id not in self._users:
      if not 0 <= user_id < self.config.num_users:
        raise OracleUnavailable(f"user {user_id} is outside the generator's "
                                f"{self.config.num_users} users")
      rng = np.random.default_rng([self.config.seed, user_id])
      user = sw.make_user(self.world, rng, user_id)
      sessions = sw.plan_sessions(self.world, rng, user)
      self._users[user_id] = (user.interest[schema.TARGET], user.style,
                              *(np.array([getattr(s, f) for s in sessions], np.int64)
                                for f in ("start", "duration", "scenario", "target_intent")))
    return self._users[user_id]

  def probabilities(self, user_ids: np.ndarray, timestamps: np.ndarray,
                    scenario_ids: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """<int64>[n] users, request times, scenarios; <int64>[n, c] items -> <float64>[n, c]."""
    out = np.empty(candidate_ids.shape, np.float64)
    for r, (u, t, s) in enumerate(zip(user_ids, timestamps, scenario_ids)):
      interest, style, starts, durations, scenarios, intents = self._user(int(u))
      j = int(np.searchsorted(starts, t, side="right")) - 1
      if j < 0 or t >= starts[j] + durations[j]:
        raise OracleUnavailable(f"user {u}: request time {t} lies in no re-simulated session")
      if scenarios[j] != s:
        raise OracleUnavailable(f"user {u} at {t}: scenario {s} in the record, "
                                f"{scenarios[j]} in the re-simulated session")
      out[r] = sw.click_probability(self.world, interest, candidate_ids[r], int(intents[j]),
                                    int(s), style)
    return out


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

"""tfrec.datasets.synthetic.oracle: the re-simulated planted P(click) reproduces the oracle_prob of
every ranking record the generator writes, and the oracle refuses what it cannot rebuild."""

import dataclasses

import numpy as np
import pytest

from conftest import tiny_info
from tfrec.datasets import synthetic
from tfrec.datasets.synthetic import world as sw
from tfrec.datasets.synthetic.oracle import (TOLERANCE, OracleUnavailable, SyntheticOracle,
                                         checked_probabilities, ranking_oracle_for)

CONFIG = sw.get_config("tiny", num_users=12, visual_dim=0)


@pytest.fixture(scope="module")
def world():
  return sw.build_world(CONFIG, with_visual=False)


@pytest.fixture(scope="module")
def records(world):
  """Every ranking record (train, valid, test, test_cold) of every user, field -> <[n]> array;
  "split" holds each record's split."""
  recs = [dict(r, split=split) for u in range(CONFIG.num_users)
          for split, rs in synthetic.user_records(world, u)["ranking"].items() for r in rs]
  return {k: np.array([r[k] for r in recs]) for k in ("user_id", "timestamp", "scenario_id",
                                                      "item_id", "oracle_prob", "split")}


def test_oracle_reproduces_every_ranking_records_oracle_prob(world, records):
  oracle = SyntheticOracle(synthetic.dataset_info(CONFIG), world.store)
  r = records
  assert len(r["item_id"]) > 20
  # Column 0: the record's own item; columns 1-2: other target items, scored alike.
  others = np.resize(world.store.item_ids(domain=1, cold=False), (len(r["item_id"]), 2))
  cand = np.concatenate([r["item_id"][:, None], others], axis=1)
  probs = checked_probabilities(oracle, r["user_id"], r["timestamp"], r["scenario_id"], cand,
                                r["oracle_prob"])
  assert probs.shape == cand.shape and np.all((probs > 0) & (probs < 1))
  np.testing.assert_allclose(probs[:, 0], r["oracle_prob"], atol=TOLERANCE)
  # Every split is covered, the valid split (the day before the test day) included.
  for split in ("train", "valid", "test", "test_cold"):
    sel = r["split"] == split
    assert sel.sum() >= 5, split
    np.testing.assert_allclose(probs[sel, 0], r["oracle_prob"][sel], atol=TOLERANCE,
                               err_msg=split)
  with pytest.raises(OracleUnavailable, match="differs from the record's oracle_prob in 1 of"):
    checked_probabilities(oracle, r["user_id"][:3], r["timestamp"][:3], r["scenario_id"][:3],
                          cand[:3], r["oracle_prob"][:3] + np.array([0.0, 0.01, 0.0]))


def test_oracle_refuses_what_it_cannot_rebuild(world, records):
  info = synthetic.dataset_info(CONFIG)

  def altered(**change):
    return dataclasses.replace(info, extra=dict(info.extra, config=dict(info.extra["config"],
                                                                        **change)))
  oracle, reason = ranking_oracle_for(tiny_info())
  assert oracle is None and "not written by tfrec.datasets.synthetic" in reason
  oracle, reason = ranking_oracle_for(altered(seed=CONFIG.seed + 1), world.store)
  assert oracle is None and "column differs" in reason
  oracle, reason = ranking_oracle_for(altered(no_such_field=1))
  assert oracle is None and "cannot be rebuilt" in reason
  oracle, reason = ranking_oracle_for(info, world.store)
  assert reason == ""
  one = np.array([[int(records["item_id"][0])]])
  with pytest.raises(OracleUnavailable, match="outside the generator's 12 users"):
    oracle.probabilities(np.array([12]), np.array([0]), np.array([0]), one)
  with pytest.raises(OracleUnavailable, match="lies in no re-simulated session"):
    oracle.probabilities(np.array([0]), np.array([-1]), np.array([0]), one)


_KNOBS = {"target_intent_coupling": 0.2, "target_taste_weight": 2.0,
          "target_activity_spread": 1.0, "session_dispersion": 0.5, "cold_user_share": 0.3,
          "ccl_only_users": 5, "ccl_pair_scope": "week"}


@pytest.mark.parametrize("knobs", [{k: v} for k, v in _KNOBS.items()] + [_KNOBS],
                         ids=list(_KNOBS) + ["all"])
def test_oracle_reproduces_oracle_prob_with_knobs_away_from_default(knobs):
  config = dataclasses.replace(CONFIG, num_users=30, **knobs)
  world = sw.build_world(config, with_visual=False)
  recs = [dict(r, split=split) for u in range(config.num_users)
          for split, rs in synthetic.user_records(world, u)["ranking"].items() for r in rs]
  r = {k: np.array([x[k] for x in recs]) for k in ("user_id", "timestamp", "scenario_id",
                                                   "item_id", "oracle_prob", "split")}
  info = synthetic.dataset_info(config)  # As written to dataset.json: the knobs included.
  oracle = SyntheticOracle(info, world.store)
  assert oracle.config == config
  probs = checked_probabilities(oracle, r["user_id"], r["timestamp"], r["scenario_id"],
                                r["item_id"][:, None], r["oracle_prob"])
  for split in ("train", "valid", "test", "test_cold"):
    sel = r["split"] == split
    assert sel.sum() >= 3, split
    np.testing.assert_allclose(probs[sel, 0], r["oracle_prob"][sel], atol=TOLERANCE,
                               err_msg=split)

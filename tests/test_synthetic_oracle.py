"""tfrec.datasets.synthetic.oracle: the re-simulated planted P(click) reproduces the oracle_prob of
every ranking record the generator writes, and the oracle refuses what it cannot rebuild."""

import dataclasses

import numpy as np
import pytest

from conftest import tiny_info
from tfrec.datasets import synthetic
from tfrec.data import schema
from tfrec.datasets.synthetic import items as synthetic_items
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
          "ccl_only_users": 5, "ccl_pair_scope": "week", "category_interest_weight": 1.5,
          "item_taste_weight": 1.5, "interest_drift_per_day": 0.3, "user_groups": 3,
          "user_group_weight": 0.5, "scenario_user_tilt": 1.0, "scenario_behaviour_weight": 1.0,
          "scenario_pool_share": 0.5, "item_kind_transfer": (0.2, 0.9), "max_seq_len": 20,
          "topic_popularity_divergence": 0.5, "category_tags": 2, "category_tag_share": 0.5}


_NEEDS = {"user_group_weight": "user_groups", "category_tag_share": "category_tags"}


@pytest.mark.parametrize("knobs", [{k: v, **({_NEEDS[k]: _KNOBS[_NEEDS[k]]} if k in _NEEDS else {})}
                                   for k, v in _KNOBS.items()] + [_KNOBS],
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


def test_oracle_scores_matching_and_dual_pair_records_of_every_test_split():
  config = dataclasses.replace(CONFIG, num_users=30, **_KNOBS)
  world = sw.build_world(config, with_visual=False)
  oracle = SyntheticOracle(synthetic.dataset_info(config), world.store)
  catalogue = world.store.item_ids(domain=schema.TARGET)
  for split in ("test", "test_cold"):
    recs = [r for u in range(config.num_users)
            for r in synthetic.user_records(world, u)["matching"][split]]
    assert len(recs) >= 3, split
    scores = oracle.positive_intensities(
        np.array([r["user_id"] for r in recs]), np.array([r["timestamp"] for r in recs]),
        np.array([r["scenario_id"] for r in recs]), np.broadcast_to(catalogue, (len(recs),
                                                                              len(catalogue))))
    own = scores[np.arange(len(recs)), np.searchsorted(catalogue, [r["positive_item_id"]
                                                                   for r in recs])]
    assert np.all(own > 0), split  # every planted positive is possible under the oracle.
    # Better than chance: the positive's rank among the catalogue.
    ranks = (scores > own[:, None]).sum(axis=1)
    assert ranks.mean() < 0.25 * len(catalogue), split
  pairs = synthetic_items.split_dual_pairs(config, sw.dual_pair_records(world),
                                           world.num_items)["test"]
  src = world.store.item_ids(domain=schema.SOURCE)
  scores = oracle.dual_scores(np.array([p["target_item_id"] for p in pairs]),
                              np.broadcast_to(src, (len(pairs), len(src))))
  own = scores[np.arange(len(pairs)), np.searchsorted(src, [p["source_item_id"] for p in pairs])]
  assert np.all(own > 0) and (scores > own[:, None]).sum(axis=1).mean() < 0.1 * len(src)

"""COUPLE §4.1's cold-start protocol (`tfrec.datasets.cold_start`) on a hand-made event table, and
MovieLens-1M's `--view=couple` (`tfrec.datasets.movielens.couple`) on a tiny raw directory written
by `test_movielens.write_grouplens`.

Event table (user, item, domain S/T, time), in table order = row index:
   0 (0, 3, S, 50)    7 (1, 12, T, 5)    14 (2, 11, T, 3)    18 (4, 14, T, 1)
   1 (0, 1, S, 10)    8 (1, 1, S, 6)     15 (2, 15, T, 4)    19 (5, 3, S, 2)
   2 (0, 16, T, 15)   9 (1, 17, T, 7)    16 (3, 2, S, 7)
   3 (0, 10, T, 20)  10 (1, 13, T, 8)    17 (3, 13, T, 7)
   4 (0, 2, S, 30)   11 (1, 16, T, 9)
   5 (0, 11, T, 40)  12 (1, 10, T, 9)
   6 (0, 12, T, 40)  13 (1, 14, T, 12)
Per user by time (ties in table order):
  user 0: 1 16 10 2 11 12 3   (rows 5, 6 tie at 40: 12 is last -> the test item)
  user 1: 12 1 17 13 16 10 14 (rows 11, 12 tie at 9: 10 is the later)
  user 2: 11 15; user 3: 2 13 (rows 16, 17 tie at 7); user 4: 14; user 5: 3 (source only)
Test = the last target positive: 12 (u0), 14 (u1), 15 (u2), 13 (u3), 14 (u4): cold items
T = {12, 13, 14, 15}. User 4's has no earlier positive: dropped (counted); test users 0-3.
Valid = the last target positive not on a T item: 11 (u0, row 5), 10 (u1, row 12: after 16 in
the tie), 11 (u2, row 14); none for u3, u4: V = {10, 11}. Warm items: 16, 17.
Train (all users warm): rows 2 (16 <- [1]), 9 (17 <- [1]; 12 erased), 11 (16 <- [1, 17]; 13
erased). Valid histories erase T and V: u0 [1, 16, 2] (10 erased), u1 [1, 17, 16], u2 [] ->
dropped. Test histories erase T only: u0 [1, 16, 10, 2, 11], u1 [1, 17, 16, 10], u2 [11], u3
[2]. Cold users' histories keep the source items: u0 [1, 2], u1 [1], u2 [] (dropped), u3 [2].
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import tfrec  # noqa: F401
from tfrec.data import schema, seen_items
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.validate import validate
from tfrec.datasets import cold_start as cs
from tfrec.datasets.movielens import couple
from tfrec.datasets.movielens import raw as mr
from test_movielens import MOVIES, T0, USERS, write_grouplens

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S, T = schema.SOURCE, schema.TARGET
EVENTS = [(0, 3, S, 50), (0, 1, S, 10), (0, 16, T, 15), (0, 10, T, 20), (0, 2, S, 30),
          (0, 11, T, 40), (0, 12, T, 40), (1, 12, T, 5), (1, 1, S, 6), (1, 17, T, 7),
          (1, 13, T, 8), (1, 16, T, 9), (1, 10, T, 9), (1, 14, T, 12), (2, 11, T, 3),
          (2, 15, T, 4), (3, 2, S, 7), (3, 13, T, 7), (4, 14, T, 1), (5, 3, S, 2)]
WARM_TEST = {0: [1, 16, 10, 2, 11], 1: [1, 17, 16, 10], 2: [11], 3: [2]}
COLD_HISTORY = {0: [1, 2], 1: [1], 3: [2]}  # test and valid; user 2 has none (dropped)
ALL_WARM = cs.ColdStartConfig(cold_user_share=0.0)


def _split(events=EVENTS, config=cs.ColdStartConfig(), num_users=6):
  return cs.protocol(*np.asarray(events).T, num_users=num_users, config=config)


def _records(s, split):
  """[(user, history items, positive, cold_user)] of a split, in record order."""
  plan = s.plans[split]
  return [(int(s.user[p]), s.item[plan.history(j)].tolist(), int(s.item[p]),
           int(plan.cold_user[j])) for j, p in enumerate(plan.pos)]


def test_held_out_items_and_histories_by_hand():
  s = _split(config=ALL_WARM)
  assert s.cold_items.tolist() == [12, 13, 14, 15] and s.valid_items.tolist() == [10, 11]
  assert s.test_users.tolist() == [0, 1, 2, 3] and s.cold_users.tolist() == []
  assert s.rows("train").tolist() == [2, 9, 11]
  assert s.rows("valid").tolist() == [5, 12]
  assert s.rows("test_cold").tolist() == [6, 13, 15, 17]
  assert _records(s, "train") == [(0, [1], 16, 0), (1, [1], 17, 0), (1, [1, 17], 16, 0)]
  assert _records(s, "valid") == [(0, [1, 16, 2], 11, 0), (1, [1, 17, 16], 10, 0)]
  assert _records(s, "test_cold") == [(u, h, p, 0) for u, h, p in (
      (0, WARM_TEST[0], 12), (1, WARM_TEST[1], 14), (2, WARM_TEST[2], 15), (3, WARM_TEST[3], 13))]
  assert s.dropped == {
      "test_cold: no positive before the held-out item once the cold items are erased": 1,
      "train: warm user, no positive before it once the cold and valid items are erased": 0,
      "valid: warm user, no positive before it once the cold and valid items are erased": 1,
      "valid: cold user, no source-domain positive before it (target items erased)": 0,
      "test_cold: cold user, no source-domain positive before it (target items erased)": 0}
  # rows 7, 10 (T); row 3 (V); no cold user; nothing after a test positive (the paper's rule)
  assert list(s.erased.values()) == [2, 1, 0, 0]
  # Seen items: every earlier positive of the user, erased ones included.
  assert [(u, x.tolist()) for u, x in s.seen("valid")] == [(0, [1, 16, 10, 2]),
                                                          (1, [12, 1, 17, 13, 16])]


def test_ties_keep_table_order():
  swapped = list(EVENTS)
  swapped[5], swapped[6] = swapped[6], swapped[5]  # 12 before 11 at t = 40: 11 is last
  s = _split(swapped, ALL_WARM)
  assert 11 in s.cold_items and 12 not in s.cold_items
  assert _records(s, "test_cold")[0][2] == 11


def test_cold_users_are_half_the_test_users_seeded():
  s = _split()  # 4 test users -> 2 cold
  assert len(s.cold_users) == 2 and set(s.cold_users) <= {0, 1, 2, 3}
  np.testing.assert_array_equal(_split().cold_users, s.cold_users)  # reproducible
  others = {tuple(_split(config=cs.ColdStartConfig(seed=k)).cold_users) for k in range(8)}
  assert len(others) > 1  # the seed chooses
  cold = set(s.cold_users.tolist())
  for split in ("valid", "test_cold"):
    for user, history, _, flag in _records(s, split):
      assert flag == int(user in cold)
      if flag:
        assert history == COLD_HISTORY[user]  # no target item
  for user, history, positive, flag in _records(s, "test_cold"):
    if not flag:
      assert history == WARM_TEST[user]
  assert not cold & {int(s.user[p]) for p in s.plans["train"].pos}  # no train record
  n_cold_dropped = int(2 in cold)  # user 2's only earlier positive is a target one
  assert s.dropped["test_cold: cold user, no source-domain positive before it (target "
                   "items erased)"] == n_cold_dropped
  assert len(s.plans["test_cold"]) == 4 - n_cold_dropped
  # Rounded down: 5 and 7 test users give 2 and 3 cold users.
  for n, k in ((5, 2), (7, 3), (1, 0)):
    table = [(u, 1, S, 1) for u in range(n)] + [(u, 2, T, 2) for u in range(n)]
    assert len(_split(table, num_users=n).cold_users) == k


def test_cold_items_never_in_train_or_valid_and_no_valid_option():
  for config in (cs.ColdStartConfig(), ALL_WARM, cs.ColdStartConfig(valid=False, seed=3)):
    s = _split(config=config)
    cold = set(s.cold_items.tolist())
    for split in ("train", "valid"):
      for _, history, positive, _ in _records(s, split):
        assert positive not in cold and not cold & set(history)
    for _, history, _, _ in _records(s, "train"):
      assert not set(s.valid_items.tolist()) & set(history)
  s = _split(config=cs.ColdStartConfig(valid=False, cold_user_share=0.0))
  assert len(s.plans["valid"]) == 0 and cs.splits(s.config) == ("train", "test_cold")
  # Without valid, 10 and 11 stay in the training pool: rows 3, 5, 12, 14 join train.
  assert s.rows("train").tolist() == [2, 3, 5, 9, 11, 12]
  assert _records(s, "train")[2] == (0, [1, 16, 10, 2], 11, 0)


def test_history_cut_to_max_len_and_bad_input():
  s = _split(config=cs.ColdStartConfig(max_len=2, cold_user_share=0.0))
  assert _records(s, "test_cold")[0] == (0, [2, 11], 12, 0)
  with pytest.raises(ValueError, match="event row 1: domain 2"):
    cs.protocol([0, 0], [1, 2], [0, 2], [1, 2], num_users=1)
  with pytest.raises(ValueError, match="user 3 out of range"):
    cs.protocol([3], [1], [1], [1], num_users=2)


# ----------------------------------------------------------------------------- MovieLens

# Two-domain item ids: source 1 Heat, 2 Misérables, 3 Grumpier Old Men, 6 Casablanca, 8 Star
# Wars; target 10 Toy Story, 11 Alien, 12 Shining, 13 Fargo, 14 Hoop Dreams (MovieIDs below).
# Positives (>= 4) per user row, by time: u0 Heat Toy Mis(tie: file order) Shining Hoop Alien
# (Hoop, Alien tie at 40: Alien is later in the file; Fargo 3 is no positive); u1 Toy Grumpier
# Fargo Alien; u2 Hoop Heat; u3 Casablanca Toy Shining Hoop (Star Wars 2 is no positive).
# Test: Alien (u0, u1), Hoop (u2: no earlier positive, dropped; u3): cold {11, 14}. Valid:
# Shining (u0, u3), Fargo (u1): {12, 13}. Warm: Toy Story (10).
ML_RATINGS = [(1, 2, 5, 10), (1, 1, 4, 20), (1, 3, 4, 20), (1, 20, 4, 30), (1, 30, 5, 40),
              (1, 5, 4, 40), (1, 21, 3, 50),
              (2, 1, 5, 5), (2, 6, 4, 6), (2, 21, 4, 7), (2, 5, 5, 8),
              (3, 30, 4, 1), (3, 2, 4, 2),
              (4, 10, 4, 1), (4, 1, 5, 2), (4, 12, 2, 3), (4, 20, 5, 3), (4, 30, 5, 4)]
ML_CONFIG = couple.CoupleConfig(max_target_share=0.9,
                                protocol=cs.ColdStartConfig(cold_user_share=0.0))


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory):
  return write_grouplens(tmp_path_factory.mktemp("gl"), ML_RATINGS, MOVIES, USERS)


def test_movielens_couple_view_by_hand(ml_dir):
  view = couple.prepare(mr.load_raw(ml_dir), ML_CONFIG)
  s = view.split
  assert s.cold_items.tolist() == [11, 14] and s.valid_items.tolist() == [12, 13]
  assert view.store.cold[1:].nonzero()[0].tolist() == [10, 13]  # ids 11, 14
  assert view.store.domain[1:].tolist() == [0] * 9 + [1] * 5
  assert _records(s, "train") == [(0, [1], 10, 0), (3, [6], 10, 0)]  # u1's Toy: no history
  assert _records(s, "valid") == [(0, [1, 10, 2], 12, 0), (1, [10, 3], 13, 0),
                                  (3, [6, 10], 12, 0)]
  assert _records(s, "test_cold") == [(0, [1, 10, 2, 12], 11, 0), (1, [10, 3, 13], 11, 0),
                                      (3, [6, 10, 12], 14, 0)]
  rec = next(cs.records(s, "test_cold", view.user_features, view.scenario))
  assert int(rec["timestamp"]) == T0 + 40 and rec["seq_timestamps"].tolist() == [
      T0 + 10, T0 + 20, T0 + 20, T0 + 30]
  assert rec["seq_domain_ids"].tolist() == [0, 1, 0, 1]
  assert rec["user_features"].tolist() == view.user_features[0].tolist()
  assert rec["seq_subsidiary"].shape == (4, 2) and not rec["seq_subsidiary"].any()
  # Tags are the two-domain view's: genres first (Alien: Horror, Sci-Fi), then its decade.
  assert view.names["tags"][view.store.tags[11, 0] - 1] == "Horror"
  paper_rule = couple.CoupleConfig(max_target_share=0.9, protocol=cs.ColdStartConfig())
  assert len(couple.prepare(mr.load_raw(ml_dir), paper_rule).split.cold_users) == 1  # 3 // 2
  # MovieLens' default holds the positives on 10% of the target movies: 5 here, round(0.5) = 0
  # candidates, so none of the 4 users with a target positive has a test record (counted).
  default = couple.prepare(mr.load_raw(ml_dir), couple.CoupleConfig(max_target_share=0.9))
  assert default.config.protocol.cold_item_share == 0.1 and not len(default.split.cold_users)
  assert default.split.dropped[
      "test_cold: no target positive on a test candidate item (no test record)"] == 4


def test_movielens_couple_command_writes_a_valid_dataset(ml_dir, tmp_path):
  out = tmp_path / "out"
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run([sys.executable, "-m", "tfrec.datasets.movielens", f"--out={out}",
                        "--view=couple", "--source=local", f"--local_dir={ml_dir}",
                        "--max_target_share=0.9", "--num_shards=2", "--couple_max_len=60",
                        "--couple_cold_items=0"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  report = validate(str(out))
  assert report.ok, report.render()
  assert report.records["matching/test_cold"] == 3 and report.records["matching/valid"] == 3
  info = DatasetInfo.load(str(out))
  assert info.extra["view"] == "couple" and info.max_seq_len == 60
  assert info.extra["splits"] == {"matching": ["train", "valid", "test_cold"]}
  assert ItemStore.load(str(out)).cold.sum() == 2
  seen = seen_items.load(str(out), "test_cold")
  assert sorted(seen) == [0, 1, 3] and seen[0].tolist() == [1, 10, 2, 12, 14]
  stats = (out / "stats.md").read_text()
  assert "COUPLE Table 3, Amazon" in stats and "cold user, no source-domain positive" in stats


def test_cold_candidates_hold_the_held_out_positives_and_nothing_later_is_trained_on():
  rng = np.random.default_rng(3)
  n, users = 3000, 60
  events = np.c_[rng.integers(0, users, n), rng.integers(1, 81, n), rng.integers(0, 2, n),
                 rng.integers(0, 500, n)]
  events[:, 2] = (events[:, 1] > 40).astype(int)  # items 41-80: the target domain
  s = _split(events, cs.ColdStartConfig(cold_item_share=0.25, cold_user_share=0.5), users)
  test_c, valid_c = s.candidates
  assert len(test_c) == len(valid_c) == 10 and not set(test_c) & set(valid_c)
  assert set(s.cold_items) <= set(test_c) and set(s.valid_items) <= set(valid_c)
  order = np.lexsort((np.arange(n), events[:, 3], events[:, 0]))
  test_at = {}
  for p in s.plans["test_cold"].pos:  # each user's last target positive on a test candidate
    u = int(s.user[p])
    mine = [q for q in order if events[q, 0] == u and events[q, 2] == 1
            and events[q, 1] in set(test_c)]
    assert s.order[p] == mine[-1]
    test_at[u] = p
  for split in ("train", "valid"):
    plan = s.plans[split]
    for j, p in enumerate(plan.pos):
      u = int(s.user[p])
      assert p < test_at.get(u, n)  # nothing after the user's test positive
      assert s.item[p] not in set(s.cold_items)
      if split == "train":
        assert s.item[p] not in set(s.valid_items)
      assert not set(s.item[plan.history(j)]) & set(s.cold_items)
  with pytest.raises(ValueError, match="cold_item_share must be in"):
    cs.ColdStartConfig(cold_item_share=0.6)

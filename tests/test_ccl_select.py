"""SEMI's CCL pre-training selection (tfrec/datasets/ccl_select.py): every expectation by hand."""

import json
import os

import numpy as np
import pytest

from tfrec.data import schema
from tfrec.datasets import ccl_select
from tfrec.data.tfrecord_io import Manifest, check_record, decode

PAIR_FIELDS = {"user_id", "source_item_ids", "source_timestamps", "target_item_ids",
               "target_timestamps"}


def rec(index, user, n_source, n_target, timestamp=None):
  """A record whose item ids name it: source ids 100 + index, target ids 200 + index."""
  r = dict(user_id=user,
           source_item_ids=np.full(n_source, 100 + index, np.int64),
           source_timestamps=np.arange(n_source, dtype=np.int64),
           target_item_ids=np.full(n_target, 200 + index, np.int64),
           target_timestamps=np.arange(n_target, dtype=np.int64) * 2)
  if timestamp is not None:
    r["timestamp"] = np.int64(timestamp)
  return r


# index, user, len(source), len(target), timestamp; with mlen=10, min_source_len=5:
HAND = [
    (0, 1, 5, 10, 100),   # kept, sum 15
    (1, 1, 6, 12, 90),    # kept, sum 18: user 1's choice
    (2, 1, 9, 9, 500),    # target 9 < 10: dropped (its sum 18 would tie)
    (3, 0, 5, 11, 200),   # kept, sum 16
    (4, 0, 6, 10, 300),   # kept, sum 16, later timestamp: user 0's choice
    (5, 0, 4, 20, 400),   # source 4 < 5: dropped
    (6, 2, 3, 30, 600),   # source 3 < 5: dropped, user 2 has nothing left
    (7, 3, 5, 10, 50),    # kept, sum 15, larger timestamp: user 3's choice
    (8, 3, 5, 10, 40),    # kept, sum 15, later in input order but older
]


def hand_records():
  return [rec(*row) for row in HAND]


def test_select_pairs_hand_computed():
  pairs, stats = ccl_select.select_pairs(hand_records(), mlen=10)
  assert [int(p["user_id"]) for p in pairs] == [0, 1, 3]
  # The winning record of each user, named by its item ids.
  assert [int(p["source_item_ids"][0]) for p in pairs] == [104, 101, 107]
  assert [int(p["target_item_ids"][0]) for p in pairs] == [204, 201, 207]
  assert [p["source_item_ids"].size for p in pairs] == [6, 6, 5]
  assert [p["target_item_ids"].size for p in pairs] == [10, 12, 10]
  np.testing.assert_array_equal(pairs[0]["source_timestamps"], [0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(pairs[0]["target_timestamps"],
                                [0, 2, 4, 6, 8, 10, 12, 14, 16, 18])
  # The winning record's request time is kept: CCL's time reference (records 4, 1, 7).
  assert [int(p["timestamp"][0]) for p in pairs] == [300, 90, 50]
  assert stats["records_in"] == 9
  assert stats["users_in"] == 4
  assert stats["records_kept_by_length"] == 6
  assert stats["users"] == stats["pairs_out"] == 3
  assert stats["avg_target_len"] == pytest.approx(32 / 3)
  assert stats["avg_source_len"] == pytest.approx(17 / 3)
  assert (stats["mlen"], stats["min_source_len"]) == (10, 5)


def test_select_pairs_output_follows_ccl_pair_contract():
  pairs, _ = ccl_select.select_pairs(hand_records(), mlen=10)
  for p in pairs:
    assert set(p) == PAIR_FIELDS | {"timestamp"}  # the ranking record's request time
    check_record(schema.CCL_PAIR, p)  # raises on any contract break
    for name in PAIR_FIELDS | {"timestamp"}:
      assert np.asarray(p[name]).dtype == np.int64


def test_select_pairs_min_source_len_and_no_timestamp_ties():
  # ccl_pair records (no timestamp): a tie goes to the later record in input order.
  records = [rec(0, 5, 5, 10), rec(1, 5, 5, 10), rec(2, 4, 7, 10), rec(3, 4, 5, 10)]
  pairs, stats = ccl_select.select_pairs(records, mlen=10)
  assert [int(p["user_id"]) for p in pairs] == [4, 5]
  assert all(set(p) == PAIR_FIELDS for p in pairs)  # no request time to keep
  assert [int(p["source_item_ids"][0]) for p in pairs] == [102, 101]
  # A higher source minimum leaves only record 2.
  pairs, stats = ccl_select.select_pairs(records, mlen=10, min_source_len=6)
  assert [int(p["source_item_ids"][0]) for p in pairs] == [102]
  assert stats["records_kept_by_length"] == 1


def test_mlen_zero_acts_as_one():
  records = [rec(0, 0, 1, 0), rec(1, 1, 1, 1), rec(2, 2, 0, 3)]
  for mlen in (0, 1):
    pairs, stats = ccl_select.select_pairs(records, mlen=mlen, min_source_len=0)
    assert [int(p["user_id"]) for p in pairs] == [1]
    assert stats["records_kept_by_length"] == 1
    assert stats["mlen"] == mlen
    assert (stats["min_target_len_applied"], stats["min_source_len_applied"]) == (1, 1)
  pairs, stats = ccl_select.select_pairs([], mlen=0)
  assert pairs == [] and stats["pairs_out"] == 0 and stats["avg_target_len"] == 0.0
  with pytest.raises(ValueError, match="mlen must be an integer >= 0"):
    ccl_select.select_pairs(records, mlen=-1)


# tiny_dir (conftest): ranking records i = 0..19, user i % 5, source length i % 4 + 1,
# target length i % 3, timestamp 10000 + i. mlen=2, min_source_len=3 keeps i = 2 (user 2,
# source 3), 11 (user 1, source 4), 14 (user 4, source 3).


def read_all(directory, split):
  """The training reader's view of ccl_pair/<split>: (Reader, padded arrays)."""
  from tfrec.data.pipeline import Reader
  reader = Reader(directory, "ccl_pair", split)
  batches = list(reader.dataset(64).as_numpy_iterator())
  out = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  return reader, out


def decode_all(directory, split):
  """Records of ccl_pair/<split> decoded one by one (cheaper than building a Reader)."""
  import tensorflow as tf
  m = Manifest.load(directory, "ccl_pair", split)
  return [decode(schema.CCL_PAIR, s) for p in m.paths(directory)
          for s in tf.data.TFRecordDataset(p).as_numpy_iterator()]


def test_select_split_round_trip(tiny_dir):
  stats = ccl_select.select_split(tiny_dir, "pre", mlen=2, min_source_len=3)
  assert stats["records_in"] == 20
  assert stats["records_kept_by_length"] == 3
  assert stats["pairs_out"] == 3
  assert stats["avg_target_len"] == pytest.approx(2.0)
  assert stats["avg_source_len"] == pytest.approx(10 / 3)
  reader, out = read_all(tiny_dir, "pre")
  assert reader.num_records == 3
  np.testing.assert_array_equal(out["user_id"], [1, 2, 4])
  np.testing.assert_array_equal(out["source_mask"].sum(1), [4, 3, 3])
  np.testing.assert_array_equal(out["source_item_ids"][:, :4],
                                [[2, 3, 4, 5], [3, 4, 5, 0], [5, 1, 2, 0]])
  np.testing.assert_array_equal(out["source_timestamps"][0, :4], [0, 100, 200, 300])
  np.testing.assert_array_equal(out["target_item_ids"][:, :2], [[6, 7]] * 3)
  np.testing.assert_array_equal(out["target_timestamps"][:, :2], [[0, 50]] * 3)
  np.testing.assert_array_equal(out["timestamp"], [10011, 10002, 10014])  # request times
  with open(os.path.join(tiny_dir, "ccl_pair", "pre.selection.json")) as f:
    saved = json.load(f)
  assert (saved["mlen"], saved["min_source_len"], saved["pairs_out"]) == (2, 3, 3)
  assert (saved["from_kind"], saved["from_split"], saved["out_split"]) == (
      "ranking", "train", "pre")
  # Selecting again from the ccl_pair split: source >= 4 leaves user 1.
  stats = ccl_select.select_split(tiny_dir, "pre4", mlen=2, min_source_len=4,
                                  from_kind="ccl_pair", from_split="pre")
  assert (stats["records_in"], stats["pairs_out"]) == (3, 1)
  (only,) = decode_all(tiny_dir, "pre4")
  np.testing.assert_array_equal(only["user_id"], [1])
  np.testing.assert_array_equal(only["source_item_ids"], [2, 3, 4, 5])
  np.testing.assert_array_equal(only["timestamp"], [10011])  # carried through


def test_empty_selection_names_mlen_and_counts(tiny_dir):
  with pytest.raises(ValueError, match=r"mlen=2 .*20 records read, 0 passed the length"):
    ccl_select.select_split(tiny_dir, "pre", mlen=2)  # min_source_len 5 > every source
  assert not os.path.exists(os.path.join(tiny_dir, "ccl_pair", "pre.manifest.json"))


def test_overwrite_refused_then_replaced(tiny_dir):
  ccl_select.select_split(tiny_dir, "pre", mlen=2, min_source_len=3)
  with pytest.raises(FileExistsError, match="overwrite"):
    ccl_select.select_split(tiny_dir, "pre", mlen=1, min_source_len=1)
  # mlen=1, source >= 1, by hand (sum of lengths; ties by timestamp): user 0 i=10 (ties i=5),
  # user 1 i=11, user 2 i=7 (ties i=2), user 3 i=13, user 4 i=19 (ties i=14).
  stats = ccl_select.select_split(tiny_dir, "pre", mlen=1, min_source_len=1, num_shards=2,
                                  overwrite=True)
  assert (stats["records_kept_by_length"], stats["pairs_out"]) == (13, 5)
  assert stats["avg_target_len"] == pytest.approx(6 / 5)
  assert stats["avg_source_len"] == pytest.approx(17 / 5)
  manifest = Manifest.load(tiny_dir, "ccl_pair", "pre")
  assert manifest.num_records == 5 and len(manifest.shards) == 2
  manifest.verify(tiny_dir)
  got = sorted(decode_all(tiny_dir, "pre"), key=lambda r: int(r["user_id"][0]))
  assert [int(r["user_id"][0]) for r in got] == [0, 1, 2, 3, 4]
  assert [r["source_item_ids"].size for r in got] == [3, 4, 4, 2, 4]
  assert [r["target_item_ids"].size for r in got] == [1, 2, 1, 1, 1]
  np.testing.assert_array_equal(got[2]["source_item_ids"], [3, 4, 5, 1])  # i=7, not i=2
  kdir = os.path.join(tiny_dir, "ccl_pair")
  assert not os.path.exists(os.path.join(kdir, "pre-00000-of-00001.tfrecord"))
  with open(os.path.join(kdir, "pre.selection.json")) as f:
    assert json.load(f)["mlen"] == 1


def test_bad_arguments_refused(tiny_dir):
  with pytest.raises(ValueError, match="input split"):
    ccl_select.select_split(tiny_dir, "train", 10, from_kind="ccl_pair", from_split="train")
  with pytest.raises(ValueError, match="from_kind"):
    ccl_select.select_split(tiny_dir, "pre", 10, from_kind="matching")


def test_damaged_input_is_refused(tiny_dir):
  from tfrec.data.errors import DataError
  shard = os.path.join(tiny_dir, "ranking", "train-00001-of-00002.tfrecord")
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) - 1)
  with pytest.raises(DataError, match="train-00001-of-00002.tfrecord.*truncated"):
    ccl_select.select_split(tiny_dir, "pre", mlen=1, min_source_len=1)


def test_cli(tiny_dir, capsys):
  from absl import flags
  fv = flags.FlagValues()
  ccl_select._define_flags(fv)
  fv(["ccl_select", f"--data_dir={tiny_dir}", "--mlen=2", "--min_source_len=3"])
  ccl_select.run(fv)
  assert Manifest.load(tiny_dir, "ccl_pair", "pretrain_mlen2").num_records == 3
  printed = capsys.readouterr().out
  assert "pairs out (one per user)" in printed and "pretrain_mlen2" in printed


def test_ccl_pair_request_time_is_optional_and_checked_against_the_histories():
  pair = rec(0, 1, 2, 3)  # histories at times 0..1 and 0..4
  check_record(schema.CCL_PAIR, pair)  # absent: counts back from the latest event
  check_record(schema.CCL_PAIR, dict(pair, timestamp=np.int64(4)))
  check_record(schema.CCL_PAIR, dict(pair, timestamp=np.int64(-1)))  # the default: absent
  with pytest.raises(ValueError, match="target_timestamps: history later than the event"):
    check_record(schema.CCL_PAIR, dict(pair, timestamp=np.int64(3)))

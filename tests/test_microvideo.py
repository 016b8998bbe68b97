"""MicroVideo-1.7M converter (`tfrec.datasets.microvideo`, THACIL §4.1) on a tiny fixture written
in the public layout (train_data.csv / test_data.csv rows user,item,cate,label,timestamp with a
header, train / test cover feature .npy matrices): the records pass the contract, histories hold
only earlier clicks of warm items, the test items are the cold set, and every malformed input is
refused naming file, line (or row) and field."""

import os

import numpy as np
import pytest

from tfrec.data.errors import DataError
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.tfrecord_io import Manifest
from tfrec.data.validate import validate
from tfrec.datasets import microvideo
from tfrec.datasets.microvideo import ConvertConfig, load_raw, prepare, records

DIM = 512
HEADER = "user,item,cate,label,timestamp"
# (user, train item row, cate, label, t); item rows 0..5 used, row 6 of the features unused.
TRAIN = [(0, 0, 3, 1, 10), (0, 1, 3, 0, 20), (0, 2, 5, 1, 30), (0, 3, 5, 1, 30),
         (0, 4, 7, 0, 40), (0, 0, 3, 1, 50), (0, 5, 7, 1, 60), (0, 1, 3, 0, 70),
         (0, 2, 5, 1, 80), (0, 3, 5, 0, 90), (0, 4, 7, 1, 100),
         (1, 5, 7, 1, 15), (1, 4, 7, 1, 25), (1, 3, 5, 0, 25), (1, 2, 5, 1, 35),
         (1, 1, 3, 1, 45), (1, 0, 3, 0, 45),
         (2, 2, 5, 0, 5), (2, 1, 3, 1, 7)]
# Test items index the TEST feature matrix: test row 0 is not train row 0.
TEST = [(0, 0, 9, 1, 5), (0, 1, 9, 0, 35), (0, 2, 2, 1, 95), (0, 3, 2, 0, 200),
        (1, 0, 9, 0, 25), (1, 3, 2, 1, 50), (2, 2, 2, 1, 8), (2, 1, 9, 0, 6)]


def write_layout(d, train=TRAIN, test=TEST, train_rows=7, test_rows=4, header=HEADER):
  os.makedirs(d, exist_ok=True)
  rng = np.random.default_rng(0)
  np.save(os.path.join(d, "train_cover_image_feature.npy"),
          rng.normal(size=[train_rows, DIM]).astype(np.float32))
  np.save(os.path.join(d, "test_cover_image_feature.npy"),
          rng.normal(size=[test_rows, DIM]).astype(np.float32))
  for name, rows in (("train_data.csv", train), ("test_data.csv", test)):
    lines = ([header] if header else []) + [",".join(map(str, r)) for r in rows]
    with open(os.path.join(d, name), "w") as f:
      f.write("\n".join(lines) + "\n")
  return str(d)


@pytest.fixture
def raw_dir(tmp_path):
  return write_layout(tmp_path / "raw")


def _expected_history(user, t, max_len):
  clicks = sorted((r[4], i) for i, r in enumerate(TRAIN) if r[0] == user and r[3] == 1
                  and r[4] < t)
  return [TRAIN[i][1] + 1 for _, i in clicks][-max_len:], [c[0] for c in clicks][-max_len:]


def test_converted_dataset_validates_and_matches_the_layout(raw_dir, tmp_path):
  out = str(tmp_path / "out")
  info = microvideo.convert(load_raw(raw_dir), out, num_shards=2, verbose=False)
  report = validate(out)
  assert report.ok, report.render()
  assert info.max_seq_len == 160 and info.num_users == 3 and info.visual_dim == DIM
  store = ItemStore.load(out)
  # Train rows 0..5 -> ids 1..6 (row 6 unused, dropped); test rows 0..3 -> ids 7..10.
  assert store.num_items == 10 and store.cold.tolist() == [0] * 7 + [1] * 4
  assert store.category[1:7].tolist() == [4, 4, 6, 6, 8, 8]
  assert store.category[7:].tolist() == [10, 10, 3, 3]
  feats = np.load(os.path.join(raw_dir, "test_cover_image_feature.npy"))
  np.testing.assert_array_equal(store.visual[7:], feats)
  raw_ids = np.load(os.path.join(out, "raw_ids.npz"))
  assert raw_ids["source_file"].tolist() == [-1] + [0] * 6 + [1] * 4
  assert raw_ids["raw_row"].tolist() == [-1, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
  p = prepare(load_raw(raw_dir))
  for split in microvideo.SPLITS:
    assert Manifest.load(out, "ranking", split).num_records == microvideo.num_records(p, split)
  assert DatasetInfo.load(out).extra["cold_split"] == "test_cold"
  assert "0.6883" in open(os.path.join(out, "stats.md")).read()


@pytest.mark.parametrize("max_len", [160, 2])
def test_histories_hold_only_earlier_clicks_of_warm_items(raw_dir, max_len):
  p = prepare(load_raw(raw_dir), ConvertConfig(max_seq_len=max_len))
  cold = p.store.cold
  seen = 0
  for split in microvideo.SPLITS:
    for rec in records(p, split):
      ids, ts = list(rec["target_item_ids"]), list(rec["target_timestamps"])
      assert (ids, ts) == _expected_history(int(rec["user_id"]), rec["timestamp"], max_len)
      assert all(t < rec["timestamp"] for t in ts) and not np.any(cold[ids])
      assert len(rec["source_item_ids"]) == 0 and len(ids) >= 1
      assert cold[rec["item_id"]] == int(split == "test_cold")
      seen += 1
  # Rows without an earlier click are skipped and counted: user 0 at t=10, user 1 at t=15,
  # user 2 at t=5 and t=7 (train), the test rows of user 0 at t=5 and user 2 at t=6.
  skipped = sum(p.skipped.values())
  assert seen + skipped == len(TRAIN) + len(TEST) and skipped == 6


def test_valid_is_the_latest_share_of_each_users_train_rows(raw_dir):
  raw = load_raw(raw_dir)
  p = prepare(raw, ConvertConfig(valid_share=0.3))
  r, v = p.rows["train"], p.rows["valid"]
  # User 0: 11 rows, 0.3 -> 3 latest (t 80, 90, 100). User 1: 6 rows -> 2 latest are t 45 and
  # 45; user 2: 2 rows -> round(0.6 + 0.5) = 1 (t 7), but t=7 has no earlier click: skipped.
  assert sorted(zip(v["user"].tolist(), v["t"].tolist())) == [(0, 80), (0, 90), (0, 100),
                                                                (1, 45), (1, 45)]
  for u in (0, 1):
    assert r["t"][r["user"] == u].max() < v["t"][v["user"] == u].min()
  assert not np.any(p.store.cold[v["item"]]) and not np.any(p.store.cold[r["item"]])
  # Equal timestamps never straddle the cut: share 0.2 of user 1 gives 1 row, t = 45, and
  # the other row at t = 45 joins it.
  v2 = prepare(raw, ConvertConfig(valid_share=0.2)).rows["valid"]
  assert (v2["t"][v2["user"] == 1] == 45).sum() == 2


def _bad(tmp_path, **kw):
  return write_layout(tmp_path / "bad", **kw)


@pytest.mark.parametrize("row, line, field, reason", [
    ("0,1,3,1", 4, None, "expected 5"),                  # wrong column count
    ("0,x1,3,1,30", 4, "item", "not an integer"),
    ("0,1,3,1,nan", 4, "timestamp", "NaN"),
    ("0,1.5,3,1,30", 4, "item", "not an integer"),
    ("0,1,3,2,30", 4, "label", "outside {0,1}"),
    ("0,9,3,1,30", 4, "item", "beyond the feature matrix"),
    ("-1,1,3,1,30", 4, "user", "negative"),
    ("0,1,512,1,30", 4, "cate", "outside 0..511"),
    ("0,1,4,1,30", 4, "cate", "another"),                # item 1 has category 3 on line 3
])
def test_a_malformed_train_row_is_refused_naming_file_line_and_field(tmp_path, row, line,
                                                                      field, reason):
  rows = [",".join(map(str, r)) for r in TRAIN]
  rows.insert(2, row)  # Lines: 1 header, 2-3 data, 4 the bad row.
  d = tmp_path / "bad"
  write_layout(d)
  with open(d / "train_data.csv", "w") as f:
    f.write("\n".join([HEADER] + rows) + "\n")
  with pytest.raises(DataError, match=reason) as e:
    load_raw(str(d))
  msg = str(e.value)
  assert msg.startswith(f"file {d / 'train_data.csv'}, line {line}")
  assert (f"field {field!r}" in msg) if field else "field" not in msg.split(":")[0]


def test_a_test_item_beyond_the_test_features_is_refused(tmp_path):
  d = _bad(tmp_path, test_rows=3)  # Test item row 3 is in test_data.csv line 5.
  with pytest.raises(DataError, match=r"test_data.csv, line 5, field 'item': value 3 beyond"):
    load_raw(d)


def test_a_nan_feature_is_refused_naming_the_row(tmp_path):
  d = _bad(tmp_path)
  path = os.path.join(d, "test_cover_image_feature.npy")
  x = np.load(path)
  x[2, 7] = np.nan
  np.save(path, x)
  with pytest.raises(DataError, match=r"test_cover_image_feature.npy, record 2, field 'visual'"):
    load_raw(d)
  x = np.zeros([4, 16], np.float32)
  np.save(path, x)
  with pytest.raises(DataError, match=r"expected a float matrix \[rows, 512\]"):
    load_raw(d)


def test_header_names_give_the_column_order_and_a_headerless_file_is_data(tmp_path):
  order = (4, 0, 3, 1, 2)  # timestamp,user,label,item,cate
  train = [tuple(r[i] for i in order) for r in TRAIN]
  test = [tuple(r[i] for i in order) for r in TEST]
  d = write_layout(tmp_path / "named", train, test, header="time,user_id,is_click,video_id,"
                   "category")
  a = load_raw(d)
  b = load_raw(write_layout(tmp_path / "plain", header=None))
  for name in ("user", "item", "cate", "label", "timestamp"):
    np.testing.assert_array_equal(getattr(a.train, name), getattr(b.train, name))
  assert b.train.line[0] == 1 and a.train.line[0] == 2


def test_command_line_in_process(raw_dir, tmp_path):
  from absl import flags
  from tfrec.datasets.microvideo import __main__ as cli_main
  fv = flags.FlagValues()
  cli_main._define_flags(fv)
  out = tmp_path / "cli"
  fv(["microvideo", f"--raw={raw_dir}", f"--out={out}", "--num_shards=1", "--max_seq_len=4"])
  cli_main.main(["microvideo"], fv)
  assert DatasetInfo.load(str(out)).max_seq_len == 4
  assert "test_cold" in (out / "stats.md").read_text()

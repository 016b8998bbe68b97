"""Data contract: schema round trip, padding/masking, and every bad-input case naming file,
record and field."""

import dataclasses
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import NUM_ITEMS, ranking_record, tiny_info, tiny_store
from tfrec.data import schema
from tfrec.data.errors import DataError
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.pipeline import Reader, ReadOptions
from tfrec.data.tfrecord_io import (Manifest, ShardedWriter, check_record, decode, encode,
                                    manifest_path, write_records)


def _all(ds):
  """Concatenates every batch of a dataset into numpy arrays."""
  parts = {}
  for b in ds:
    for k, v in b.items():
      parts.setdefault(k, []).append(v.numpy())
  return {k: np.concatenate(v) for k, v in parts.items()}


def _raw(fields):
  """A tf.train.Example with no checks at all (to plant bad records)."""
  feats = {}
  for k, v in fields.items():
    v = np.asarray(v).reshape(-1)
    if v.size == 0:
      v = v.astype(np.float32 if schema.RANKING.field(k).dtype == "float32" else np.int64)
    if v.dtype.kind == "f":
      feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=v.tolist()))
    else:
      feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=v.tolist()))
  return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def _write_with_bad(d, bad_fields, bad_at=3, n=8):
  """Writes n good ranking records into one shard, with a raw bad record at index bad_at."""
  info = tiny_info()
  info.save(d)
  tiny_store().save(d)
  with ShardedWriter(d, "ranking", "train", 1, info) as w:
    for i in range(n):
      if i == bad_at:
        rec = ranking_record(i)
        rec.update(bad_fields)
        w.write_serialized(_raw(rec), 0)
      else:
        w.write(ranking_record(i))
  return os.path.join(d, "ranking", "train-00000-of-00001.tfrecord")


# ----------------------------------------------------------------------------- round trips


def test_schema_round_trip_every_field():
  kind = schema.RANKING
  arrays = check_record(kind, ranking_record(7), tiny_info())
  back = decode(kind, encode(kind, arrays))
  assert set(back) == set(arrays)
  for k in arrays:
    np.testing.assert_array_equal(back[k], arrays[k])


def test_reader_returns_written_values_padded_and_masked(tiny_dir):
  reader = Reader(tiny_dir, "ranking", "train", ReadOptions(with_provenance=True))
  got = _all(reader.dataset(batch_size=6))
  assert len(got["label"]) == 20 == reader.num_records
  # Shard k holds records k, k+2, ... (round robin); recover i from provenance.
  i = got["_record"] * 2 + got["_file"]
  for row, idx in enumerate(i):
    rec = ranking_record(int(idx))
    n = len(rec["source_item_ids"])
    np.testing.assert_array_equal(got["source_item_ids"][row, :n], rec["source_item_ids"])
    assert not got["source_item_ids"][row, n:].any()
    np.testing.assert_array_equal(got["source_mask"][row], np.arange(50) < n)
    assert got["label"][row] == rec["label"]
    np.testing.assert_allclose(got["oracle_prob"][row], rec["oracle_prob"])
  assert got["target_item_ids"].shape == (20, schema.MAX_SEQ_LEN)


def test_truncation_keeps_newest_and_lookup(tiny_dir):
  reader = Reader(tiny_dir, "ranking", "train",
                  ReadOptions(max_lens={"source_item_ids": 2}, lookup=("visual", "category"),
                              with_provenance=True))
  got = _all(reader.dataset(batch_size=4))
  assert got["source_timestamps"].shape == (20, 2)  # aligned field follows its group
  store = tiny_store()
  for row in range(20):
    idx = int(got["_record"][row] * 2 + got["_file"][row])
    ids = ranking_record(idx)["source_item_ids"][-2:]
    np.testing.assert_array_equal(got["source_item_ids"][row, :len(ids)], ids)
    np.testing.assert_allclose(got["source_item_visual"][row, :len(ids)], store.visual[ids])
    np.testing.assert_array_equal(got["item_category"][row],
                                  store.category[got["item_id"][row]])
  # Padded positions look up the all-zero padding row.
  pad = ~got["source_mask"]
  assert not got["source_item_visual"][pad].any()


def test_masked_positions_are_zero_for_every_sequence(tiny_dir):
  got = _all(Reader(tiny_dir, "ranking", "train").dataset(batch_size=20))
  for name in ("source_item_ids", "source_timestamps", "target_item_ids", "target_timestamps"):
    mask = got[schema.mask_name(name.replace("timestamps", "item_ids"))]
    assert not got[name][~mask].any(), name


def test_input_context_splits_files_between_pipelines(tiny_dir):
  seen = []
  for pid in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                     num_replicas_in_sync=2)
    got = _all(Reader(tiny_dir, "ranking", "train", ReadOptions(with_provenance=True))
               .dataset(batch_size=8, input_context=ctx))
    assert set(got["_file"]) == {pid}
    seen += list(zip(got["_file"], got["_record"]))
  assert len(seen) == len(set(seen)) == 20


def test_shuffle_is_seeded(tiny_dir):
  def order(seed):
    r = Reader(tiny_dir, "ranking", "train",
               ReadOptions(shuffle_buffer=20, seed=seed, with_provenance=True))
    got = _all(r.dataset(batch_size=20))
    return list(got["_record"] * 2 + got["_file"])
  assert order(1) == order(1)
  assert sorted(order(1)) == list(range(20))
  assert order(1) != order(2)


# ----------------------------------------------------------------------------- writer checks


@pytest.mark.parametrize("override, field, reason", [
    (dict(label=2), "label", "outside {0,1}"),
    (dict(item_id=NUM_ITEMS + 1), "item_id", "above"),
    (dict(source_item_ids=[NUM_ITEMS + 5], source_timestamps=[1]), "source_item_ids", "above"),
    (dict(oracle_prob=float("nan")), "oracle_prob", "NaN"),
    (dict(source_item_ids=list(range(1, 11)) * 6, source_timestamps=list(range(60))),
     "source_item_ids", "exceeds max length"),
    (dict(source_item_ids=[], source_timestamps=[], target_item_ids=[], target_timestamps=[]),
     "source_item_ids", "empty"),
    (dict(source_item_ids=[1, 2], source_timestamps=[5]), "source_timestamps", "differs"),
    (dict(source_item_ids=[1, 2], source_timestamps=[5, 4]), "source_timestamps", "decrease"),
    (dict(source_item_ids=[1], source_timestamps=[99_999]), "source_timestamps", "later than"),
    (dict(label=0.5), "label", "expected integers"),
    (dict(user_features=[1, 2, 3]), "user_features", "expected 4"),
    (dict(colour=3), "colour", "not in the ranking schema"),
])
def test_writer_rejects_bad_record_naming_file_record_field(tmp_path, override, field, reason):
  d = str(tmp_path)
  with pytest.raises(DataError) as e:
    with ShardedWriter(d, "ranking", "train", 2, tiny_info()) as w:
      for i in range(5):
        w.write(ranking_record(i, **(override if i == 3 else {})))
  err = e.value
  assert err.field == field and reason in err.reason
  assert err.record == 1 and err.path.endswith("train-00001-of-00002.tfrecord")  # 3 -> shard 1
  assert re.search(r"file .*train-00001-of-00002.tfrecord, record 1, field", str(err))
  # All-or-nothing: nothing was left behind.
  assert not os.listdir(os.path.join(d, "ranking"))


# ----------------------------------------------------------------------------- reader checks


@pytest.mark.parametrize("bad, field, reason", [
    (dict(label=2), "label", "outside {0,1}"),
    (dict(item_id=NUM_ITEMS + 1), "item_id", "unknown id"),
    (dict(target_item_ids=[3, 99], target_timestamps=[1, 2]), "target_item_ids", "unknown id"),
    (dict(oracle_prob=float("inf")), "oracle_prob", "NaN or inf"),
    (dict(source_item_ids=[1] * 51, source_timestamps=list(range(51))), "source_item_ids",
     "over-long"),
    (dict(source_item_ids=[], source_timestamps=[], target_item_ids=[], target_timestamps=[]),
     "source_item_ids", "are empty"),
    (dict(source_timestamps=[7]), "source_timestamps", "length differs"),
    (dict(source_item_ids=[1, 2], source_timestamps=[9, 3]), "source_timestamps", "decrease"),
    (dict(source_item_ids=[1], source_timestamps=[10 ** 9]), "source_timestamps", "later than"),
    (dict(user_id=-1), "user_id", "below 0"),
])
def test_reader_raises_naming_file_record_field(tmp_path, bad, field, reason):
  path = _write_with_bad(str(tmp_path), bad)
  ds = Reader(str(tmp_path), "ranking", "train").dataset(batch_size=4)
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    _all(ds)
  msg = str(e.value)
  assert f"{path}, record 3" in msg, msg
  assert f"field {field}:" in msg and reason in msg, msg


@pytest.mark.parametrize("skip_first", [False, True])
def test_rows_any_is_the_per_row_or_of_each_rule(skip_first):
  """The contract's per-row OR from row splits, against a Python loop over rows: empty rows,
  a batch with no values at all, and each row's first value left out when asked."""
  from tfrec.data.pipeline import _rows_any
  rng = np.random.default_rng(0)
  for lengths in ([0, 3, 0, 1, 5, 2], [0, 0], [4]):
    n = sum(lengths)
    bad = rng.random((n, 3)) < 0.3
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    got = _rows_any(tf.constant(bad.reshape(n, 3)), tf.constant(splits), skip_first).numpy()
    want = [[bool(bad[s + skip_first:e, k].any()) for k in range(3)]
            for s, e in zip(splits[:-1], splits[1:])]
    np.testing.assert_array_equal(got, np.array(want, bool).reshape(len(lengths), 3))


def test_the_first_failing_rule_and_its_first_bad_row_are_named(tmp_path):
  """Two bad records in one batch, of different rules: the message names the rule checked
  first (`label` precedes `item_id` in the contract) at its own first bad record."""
  d = str(tmp_path)
  info = tiny_info()
  info.save(d)
  tiny_store().save(d)
  with ShardedWriter(d, "ranking", "train", 1, info) as w:
    for i in range(6):
      rec = ranking_record(i)
      if i in (2, 4):
        rec.update({2: dict(item_id=NUM_ITEMS + 5), 4: dict(label=3)}[i])
        w.write_serialized(_raw(rec), 0)
      else:
        w.write(rec)
  order = [f.name for f in schema.RANKING.fields]
  first = "label" if order.index("label") < order.index("item_id") else "item_id"
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    _all(Reader(d, "ranking", "train").dataset(batch_size=6))
  msg = str(e.value)
  record = 4 if first == "label" else 2
  assert f"record {record}" in msg and f"field {first}:" in msg, msg
  value = "3" if first == "label" else str(NUM_ITEMS + 5)
  assert re.search(rf"value:\W+{value}\b", msg), msg


def test_reader_wrong_dtype_names_file_record_field(tmp_path):
  path = _write_with_bad(str(tmp_path), dict(label=np.float32(1.0)))
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    _all(Reader(str(tmp_path), "ranking", "train").dataset(batch_size=4))
  msg = str(e.value)
  assert f"{path}, record 3" in msg and "label" in msg, msg


def test_skip_mode_drops_bad_records_and_reports(tmp_path):
  d = str(tmp_path)
  info = tiny_info()
  info.save(d)
  tiny_store().save(d)
  bad_at = {2: dict(label=3), 5: dict(item_id=500), 6: dict(label=np.float32(1.0))}
  with ShardedWriter(d, "ranking", "train", 1, info) as w:
    for i in range(10):
      rec = ranking_record(i)
      if i in bad_at:
        rec.update(bad_at[i])
        w.write_serialized(_raw(rec), 0)
      else:
        w.write(rec)
  reader = Reader(d, "ranking", "train",
                  ReadOptions(on_bad_record="skip", with_provenance=True))
  got = _all(reader.dataset(batch_size=4))
  assert sorted(got["_record"].tolist()) == [i for i in range(10) if i not in bad_at]
  assert reader.report() == {"expected": 10, "delivered": 7, "skipped": 3}


# ----------------------------------------------------------------------------- shard damage


def _shard(tiny_dir, i=0):
  return os.path.join(tiny_dir, "ranking", f"train-0000{i}-of-00002.tfrecord")


def test_truncated_shard_at_record_boundary_is_named(tiny_dir):
  path = _shard(tiny_dir)
  data = open(path, "rb").read()
  offsets, pos = [], 0
  while pos < len(data):  # TFRecord framing: 8-byte length, 4 crc, data, 4 crc
    n = int.from_bytes(data[pos:pos + 8], "little")
    pos += 16 + n
    offsets.append(pos)
  open(path, "wb").write(data[:offsets[6]])  # cut at the boundary after record 6
  with pytest.raises(DataError, match=re.escape(path) + ".*truncated"):
    Reader(tiny_dir, "ranking", "train")
  # Even without the size check, counting the records finds the loss and names the file.
  m = Manifest.load(tiny_dir, "ranking", "train")
  m.shards[0].bytes = offsets[6]
  open(manifest_path(tiny_dir, "ranking", "train"), "w").write(m.to_json())
  ds = Reader(tiny_dir, "ranking", "train", ReadOptions(verify_checksums=False)).dataset(4)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=re.escape(path) + r".*record\W+7\W.*lists\W+10\W+records"):
    _all(ds)


def test_damaged_bytes_fail_checksum_or_count(tiny_dir):
  path = _shard(tiny_dir, 1)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(path, "wb").write(bytes(data))
  with pytest.raises(DataError, match=re.escape(path) + ".*sha256"):
    Reader(tiny_dir, "ranking", "train")
  ds = Reader(tiny_dir, "ranking", "train", ReadOptions(verify_checksums=False)).dataset(4)
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(path) + ".*unreadable"):
    _all(ds)


def test_missing_manifest_and_shard_are_named(tiny_dir):
  with pytest.raises(DataError, match="test.manifest.json.*splits present.*train"):
    Reader(tiny_dir, "ranking", "test")
  os.remove(_shard(tiny_dir, 1))
  with pytest.raises(DataError, match=re.escape(_shard(tiny_dir, 1)) + ".*missing"):
    Reader(tiny_dir, "ranking", "train")


# ----------------------------------------------------------------------------- item store


def test_item_store_round_trip_and_checks(tmp_path, info):
  store = tiny_store()
  store.validate(info=info)
  store.save(str(tmp_path))
  back = ItemStore.load(str(tmp_path))
  for k, v in store.columns().items():
    np.testing.assert_array_equal(back.columns()[k], v)
  assert back.item_ids(domain=schema.TARGET, cold=False).tolist() == [6, 7, 8, 9]
  bad = tiny_store()
  bad.visual[4, 1] = np.nan
  with pytest.raises(DataError, match=r"record 4, field 'visual'.*NaN"):
    bad.validate()
  bad = tiny_store()
  bad.category[7] = 99
  with pytest.raises(DataError, match=r"record 7, field 'category'"):
    bad.validate(info=info)
  with open(os.path.join(tmp_path, "items.npz"), "ab") as f:
    f.write(b"x")
  with pytest.raises(DataError, match="items.npz.*checksum"):
    ItemStore.load(str(tmp_path))


def test_write_records_manifest_counts(tmp_path, info):
  m = write_records(str(tmp_path), "ranking", "train", [ranking_record(i) for i in range(7)],
                    num_shards=3, info=info)
  assert [s.records for s in m.shards] == [3, 2, 2] and m.num_records == 7


# ----------------------------------------------------------------------------- issue 11 additions


def _long_record(n):
  """A valid ranking record with an n-long source history (timestamps 0..n-1)."""
  return ranking_record(0, source_item_ids=[1 + k % 5 for k in range(n)],
                        source_timestamps=list(range(n)))


def test_max_len_rule():
  ranking_src = schema.RANKING.field("source_item_ids")
  ccl_tgt = schema.CCL_PAIR.field("target_timestamps")
  seq = schema.MATCHING.field("seq_subsidiary")
  assert schema.max_len_for(ranking_src) == 50 and schema.max_len_for(seq) == 100
  assert schema.max_len_for(ranking_src, 160) == 160 and schema.max_len_for(ccl_tgt, 160) == 160
  assert schema.max_len_for(ranking_src, 20) == 20
  assert schema.max_len_for(seq, 160) == 160 and schema.max_len_for(seq, 20) == 100
  assert schema.max_len_for(schema.RANKING.field("label"), 160) == 0
  with pytest.raises(ValueError, match="max_seq_len"):
    dataclasses.replace(tiny_info(), max_seq_len=0)


def test_dataset_max_seq_len_160_accepts_160_refuses_161(tmp_path):
  d = str(tmp_path)
  info = dataclasses.replace(tiny_info(), max_seq_len=160)
  info.save(d)
  tiny_store().save(d)
  # Writer: 160 passes (the schema constant, 50, would refuse it), 161 is refused.
  check_record(schema.RANKING, _long_record(160), info)
  with pytest.raises(ValueError, match="field source_item_ids: sequence of 161 exceeds max "
                     "length 160"):
    check_record(schema.RANKING, _long_record(161), info)
  with pytest.raises(ValueError, match="exceeds max length 50"):
    check_record(schema.RANKING, _long_record(51))          # No info: the schema's 50.
  with ShardedWriter(d, "ranking", "train", 1, info) as w:
    w.write(_long_record(160))
    w.write(ranking_record(1))
    w.write_serialized(_raw(_long_record(161)), 0)
  # Reader: pads to the dataset's 160; the 161-long record 2 is an error naming it.
  r = Reader(d, "ranking", "train")
  assert r.max_lens["source_item_ids"] == 160
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    _all(r.dataset(batch_size=1))
  msg = str(e.value)
  assert "train-00000-of-00001.tfrecord, record 2" in msg
  assert "field source_item_ids: over-long sequence (dataset max 160)" in msg
  got = _all(Reader(d, "ranking", "train").dataset(batch_size=1).take(2))
  assert got["source_item_ids"].shape == (2, 160) and got["source_mask"][0].all()
  # Validator: only record 2.
  from tfrec.data.validate import validate
  report = validate(d)
  assert [(e.record, e.field) for e in report.errors] == [(2, "source_item_ids")]
  assert "161 exceeds max length 160" in report.render()


def test_default_dataset_refuses_51(tmp_path):
  d = str(tmp_path)
  assert tiny_info().max_seq_len == 50
  with pytest.raises(DataError, match=r"record 0, field 'source_item_ids'.*51 exceeds max "
                     r"length 50"):
    with ShardedWriter(d, "ranking", "train", 1, tiny_info()) as w:
      w.write(_long_record(51))


def test_dataset_json_without_new_keys_loads_with_defaults(tmp_path):
  tiny_info().save(str(tmp_path))
  path = os.path.join(tmp_path, "dataset.json")
  with open(path) as f:
    raw = json.load(f)
  assert raw["max_seq_len"] == 50 and raw["num_item_kinds"] == 0
  del raw["max_seq_len"], raw["num_item_kinds"]
  with open(path, "w") as f:
    json.dump(raw, f)
  back = DatasetInfo.load(str(tmp_path))
  assert back.max_seq_len == 50 and back.num_item_kinds == 0 and back == tiny_info()


def test_item_kind_column(tmp_path):
  store = tiny_store()
  assert store.kind.tolist() == [0] * 11                   # No kind given: all 0.
  store = ItemStore(**{**tiny_store().columns(), "kind": [0, 1, 1, 2, 2, 0, 3, 3, 1, 1, 2]})
  info = dataclasses.replace(tiny_info(), num_item_kinds=3)
  store.validate(info=info)
  d = str(tmp_path)
  store.save(d)
  back = ItemStore.load(d)
  assert back.kind.tolist() == [0, 1, 1, 2, 2, 0, 3, 3, 1, 1, 2]
  with np.load(os.path.join(d, "items.npz")) as z:
    assert "kind" in z.files                              # Saved, so checksummed.
  with pytest.raises(DataError, match=r"record 6, field 'kind'.*above allowed 2"):
    store.validate(info=dataclasses.replace(info, num_item_kinds=2))
  with pytest.raises(DataError, match=r"record 1, field 'kind'.*above allowed 0"):
    store.validate(info=tiny_info())                      # num_item_kinds defaults to 0.
  bad = ItemStore(**{**store.columns(), "kind": [0, -1] + [0] * 9})
  with pytest.raises(DataError, match=r"record 1, field 'kind'.*below"):
    bad.validate(info=info)
  bad = ItemStore(**{**store.columns(), "kind": [1] + [0] * 10})
  with pytest.raises(DataError, match="row 0"):
    bad.validate(info=info)
  # Lookup attaches it like any other column.
  info.save(d)
  write_records(d, "ranking", "train", [ranking_record(i) for i in range(3)], info=info)
  got = _all(Reader(d, "ranking", "train", ReadOptions(lookup=("kind",))).dataset(3))
  assert got["item_kind"].tolist() == [3, 3, 1]            # items 6, 7, 8


def test_item_store_written_without_kind_still_loads(tmp_path):
  """An items.npz written before the kind column (its manifest checksums that file)."""
  d = str(tmp_path)
  store = tiny_store()
  cols = {k: v for k, v in store.columns().items() if k != "kind"}
  path = os.path.join(d, "items.npz")
  np.savez(path, **cols)
  from tfrec.data.item_store import file_sha256
  with open(os.path.join(d, "items.manifest.json"), "w") as f:
    json.dump({"file": "items.npz", "bytes": os.path.getsize(path),
               "sha256": file_sha256(path), "num_items": 10, "visual_dim": 3}, f)
  back = ItemStore.load(d)
  assert back.kind.tolist() == [0] * 11
  np.testing.assert_array_equal(back.category, store.category)
  back.validate(info=tiny_info())


def test_a_length_above_the_datasets_maximum_pads(tmp_path):
  d = str(tmp_path)
  tiny_info().save(d)   # max_seq_len 50
  tiny_store().save(d)
  with ShardedWriter(d, "ranking", "train", 1, tiny_info()) as w:
    w.write(_long_record(50))
  got = _all(Reader(d, "ranking", "train", ReadOptions(
      max_lens={"source_item_ids": 160})).dataset(batch_size=1))
  assert got["source_item_ids"].shape == (1, 160)
  assert got["source_mask"][0].sum() == 50 and not got["source_mask"][0, 50:].any()
  with pytest.raises(ValueError, match="must be >= 1"):
    Reader(d, "ranking", "train", ReadOptions(max_lens={"source_item_ids": 0}))


# ------------------------------------------------------------------ less source-domain data


def _matching_record(i):
  rng = np.random.default_rng(i)
  n = int(rng.integers(3, 9))
  items = rng.integers(1, NUM_ITEMS + 1, n)
  return dict(user_id=i % 5, user_features=[i % 2, 1, 3, i % 10], scenario_id=0,
              timestamp=10_000 + i, seq_item_ids=items.tolist(),
              seq_domain_ids=(items > 5).astype(int).tolist(),  # items 1-5: source
              seq_timestamps=(100 * i + np.arange(n)).tolist(),
              seq_subsidiary=np.arange(2 * n, dtype=np.float32).tolist(),
              positive_item_id=6 + i % 5)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_a_source_share_drops_the_same_source_behaviours_everywhere(tmp_path, share):
  from tfrec.data.pipeline import source_keep_hash
  d = str(tmp_path)
  tiny_info().save(d)
  tiny_store().save(d)
  records = [_matching_record(i) for i in range(12)]
  write_records(d, "matching", "train", records, info=tiny_info())
  write_records(d, "ranking", "train", [ranking_record(i) for i in range(12)], info=tiny_info())
  length = 4

  def opts(*names):
    return ReadOptions(max_lens={f: length for f in names}, with_provenance=True,
                       source_keep=share)
  got = _all(Reader(d, "matching", "train", opts(
      "seq_item_ids", "seq_domain_ids", "seq_timestamps", "seq_subsidiary")).dataset(5))
  for row, r in enumerate(got["_record"]):
    rec = records[r]
    items, dom = np.array(rec["seq_item_ids"]), np.array(rec["seq_domain_ids"])
    ts = np.array(rec["seq_timestamps"])
    keep = (dom == 1) | (source_keep_hash(np.full(len(items), rec["user_id"]), items, ts) < share)
    want = np.nonzero(keep)[0][-length:]  # the newest kept behaviours fill the history
    n = len(want)
    assert got["seq_item_ids"][row, :n].tolist() == items[want].tolist()
    assert got["seq_timestamps"][row, :n].tolist() == ts[want].tolist()
    assert got["seq_domain_ids"][row, :n].tolist() == dom[want].tolist()
    sub = np.array(rec["seq_subsidiary"]).reshape(-1, 2)
    np.testing.assert_array_equal(got["seq_subsidiary"][row, :n], sub[want])
    assert got["seq_mask"][row].tolist() == [True] * n + [False] * (length - n)
    if share == 0.0:
      assert (got["seq_domain_ids"][row][got["seq_mask"][row]] == 1).all()
  ranking = _all(Reader(d, "ranking", "train", opts(
      "source_item_ids", "source_timestamps", "target_item_ids", "target_timestamps")
      ).dataset(5))
  for row, r in enumerate(ranking["_record"]):
    rec = ranking_record(int(r))
    items, ts = np.array(rec["source_item_ids"]), np.array(rec["source_timestamps"])
    keep = source_keep_hash(np.full(len(items), rec["user_id"]), items, ts) < share
    want = np.nonzero(keep)[0][-length:]
    assert ranking["source_item_ids"][row, :len(want)].tolist() == items[want].tolist()
    assert ranking["source_mask"][row].sum() == len(want)
    assert ranking["target_mask"][row].sum() == min(length, len(rec["target_item_ids"]))


def test_the_source_keep_hash_is_the_same_in_numpy_and_tensorflow_and_uniform():
  from tfrec.data.pipeline import source_keep_hash
  rng = np.random.default_rng(0)
  u, i, t = (rng.integers(0, 10**9, 20000) for _ in range(3))
  a = source_keep_hash(u, i, t)
  b = source_keep_hash(tf.constant(u), tf.constant(i), tf.constant(t)).numpy()
  np.testing.assert_array_equal(a, b)
  assert 0.0 <= a.min() and a.max() < 1.0
  assert abs(float(np.mean(a < 0.3)) - 0.3) < 0.01  # about the share asked for


def test_only_training_reads_drop_source_behaviours(tmp_path):
  from tfrec import runs
  from tfrec import config as config_lib
  cfg = config_lib.RunConfig(data=config_lib.DataConfig(data_dir=str(tmp_path),
                                                        source_share=0.3),
                             model=config_lib.ModelConfig("youtube_dnn"),
                             train=config_lib.TrainConfig(run_dir=str(tmp_path / "r")))
  tiny_info().save(str(tmp_path))
  tiny_store().save(str(tmp_path))
  write_records(str(tmp_path), "matching", "train", [_matching_record(0)], info=tiny_info())
  assert runs.reader(cfg, "train", training=True, kind="matching").options.source_keep == 0.3
  assert runs.reader(cfg, "train", training=False, kind="matching").options.source_keep == 1.0
  with pytest.raises(ValueError, match="source_share must be in"):
    config_lib.DataConfig(data_dir="x", source_share=1.5)

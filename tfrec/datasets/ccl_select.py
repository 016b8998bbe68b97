r"""SEMI's CCL pre-training set: one cross-domain sequence pair per user (SEMI §4.1, Table 5).

    python -m tfrec.datasets.ccl_select --data_dir=DIR --mlen=10 [--min_source_len=5]
        [--from_kind=ranking] [--from_split=train] [--out_split=pretrain_mlen10]
        [--num_shards=N] [--overwrite]

SEMI §4.1: "we keep records in the training set where the micro-video sequence length is larger
than 10. Then, we do deduplication for these records according to the user ID dimension and keep
one record with the longest average length of two domains' sequences for each user." Table 5
(A.3) writes the filter as "Min. Len. = (MLEN, 5)": minimum micro-video and product lengths.
In tfrec the micro-video domain is `target` and the product domain is `source`.

Interpretation (the paper's "larger than 10" and "Min. Len." disagree by one; we follow
"Min. Len."):
  * a record is kept when len(target_item_ids) >= mlen and len(source_item_ids) >=
    min_source_len (default 5, Table 5);
  * the `ccl_pair` contract needs both sequences non-empty, so a minimum below 1 acts as 1
    (mlen=0 selects the same records as mlen=1);
  * per user the kept record with the largest (len(source) + len(target)) / 2 wins; a tie goes
    to the larger `timestamp` (ranking records), then to the later record in input order
    (shard order, then record order within a shard; a `ccl_pair` record has a timestamp
    only when it was itself selected from a ranking record);
  * the pairs are written as kind `ccl_pair` (user_id and both domains' item ids and
    timestamps, as stored: at most the contract's 50 per domain), ordered by user id, with the
    ranking record's request time as `timestamp`: CCL counts its time blocks back from it,
    as SEMI counts them back from the same request (§3.2.3), so block 0 means the same hour
    before the request in pre-training and fine-tuning.

The statistics (`stats`) give the counts and, per domain, the average length of the selected
sequences, comparable with Table 5's "Avg. Length" and "#Instances".
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.data import schema
from tfrec.data import tfrecord_io
from tfrec.data.errors import DataError

SELECTION_SUFFIX = ".selection.json"
FROM_KINDS = ("ranking", "ccl_pair")
_PAIR_FIELDS = tuple(f.name for f in schema.CCL_PAIR.fields if not f.optional)
# Kept when the input record has it: a ranking record's request time is the pair's time
# reference (CCL counts time blocks back from it, as SEMI does from the same record's).
_OPTIONAL_PAIR_FIELDS = tuple(f.name for f in schema.CCL_PAIR.fields if f.optional)


def default_out_split(mlen: int) -> str:
  return f"pretrain_mlen{mlen}"


def selection_path(data_dir: str, out_split: str) -> str:
  """`<data_dir>/ccl_pair/<out_split>.selection.json`: the statistics and parameters."""
  return os.path.join(data_dir, schema.CCL_PAIR.name, out_split + SELECTION_SUFFIX)


def _check_params(mlen: int, min_source_len: int) -> Tuple[int, int]:
  """Returns the effective (target, source) minimum lengths (at least 1)."""
  for name, value in (("mlen", mlen), ("min_source_len", min_source_len)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
  return max(int(mlen), 1), max(int(min_source_len), 1)


def _field(record: Mapping[str, Any], name: str, index: int) -> Any:
  if name not in record or record[name] is None:
    raise ValueError(f"record {index}: field {name}: missing (select_pairs needs "
                     f"{list(_PAIR_FIELDS)})")
  return record[name]


def select_pairs(records: Iterable[Mapping[str, Any]], mlen: int, min_source_len: int = 5
                 ) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
  """Selects SEMI's CCL pre-training pairs: length filter, then one record per user.

  Streams over `records` holding one candidate per user (see the module docstring for the
  rules).

  Args:
    records: dicts of numpy arrays / scalars of kind `ranking` or `ccl_pair`; used fields:
      user_id, source_item_ids, source_timestamps, target_item_ids, target_timestamps and,
      when present, timestamp (tie-break). Sequences are stored oldest first.
    mlen: minimum target-domain (micro-video) length, MLEN; values below 1 act as 1.
    min_source_len: minimum source-domain (product) length; values below 1 act as 1.

  Returns:
    (pairs, stats): `pairs` are `ccl_pair` records ordered by user id, each
    {user_id: <int64>[], source_item_ids, source_timestamps, target_item_ids,
    target_timestamps: <int64>[n]} plus, when the record had it, `timestamp` <int64>[1] (a
    ranking record's request time: CCL's time reference), checked against
    `schema.CCL_PAIR`; `stats` has
    records_in, users_in, records_kept_by_length, users, pairs_out, avg_target_len,
    avg_source_len (over the pairs; 0.0 when none), mlen, min_source_len and the effective
    minima min_target_len_applied, min_source_len_applied.

  Raises:
    ValueError: a negative or non-integer length; a record missing a field or whose selected
      pair breaks the `ccl_pair` contract (the message names the record index and user).
  """
  min_t, min_s = _check_params(mlen, min_source_len)
  best: Dict[int, Tuple[Tuple[int, int, int], Dict[str, Any]]] = {}
  records_in = kept = 0
  users_in = set()
  for index, rec in enumerate(records):
    records_in += 1
    user = int(np.asarray(_field(rec, "user_id", index)).reshape(-1)[0])
    users_in.add(user)
    n_s = int(np.size(_field(rec, "source_item_ids", index)))
    n_t = int(np.size(_field(rec, "target_item_ids", index)))
    if n_t < min_t or n_s < min_s:
      continue
    kept += 1
    ts = rec.get("timestamp")
    # Sum of lengths orders like their average; timestamps are >= 0, so -1 means "none".
    key = (n_s + n_t, -1 if ts is None else int(np.asarray(ts).reshape(-1)[0]), index)
    if user not in best or key > best[user][0]:
      # Copies: a caller that reuses its buffers cannot change a kept record.
      kept_fields = {name: np.array(_field(rec, name, index)) for name in _PAIR_FIELDS}
      kept_fields.update({name: np.array(rec[name]) for name in _OPTIONAL_PAIR_FIELDS
                          if rec.get(name) is not None})
      best[user] = (key, kept_fields)
  pairs = []
  for user in sorted(best):
    key, rec = best[user]
    try:
      arrays = tfrecord_io.check_record(schema.CCL_PAIR, rec)
    except ValueError as e:
      raise ValueError(f"record {key[2]} (user {user}): {e}") from None
    arrays["user_id"] = arrays["user_id"][0]
    pairs.append(arrays)
  n = len(pairs)
  stats = {
      "records_in": records_in,
      "users_in": len(users_in),
      "records_kept_by_length": kept,
      "users": n,
      "pairs_out": n,
      "avg_target_len": sum(p["target_item_ids"].size for p in pairs) / n if n else 0.0,
      "avg_source_len": sum(p["source_item_ids"].size for p in pairs) / n if n else 0.0,
      "mlen": int(mlen),
      "min_source_len": int(min_source_len),
      "min_target_len_applied": min_t,
      "min_source_len_applied": min_s,
  }
  return pairs, stats


def read_records(data_dir: str, kind: str, split: str, info=None, checksums: bool = True,
                 chunk: int = 256) -> Iterator[Dict[str, np.ndarray]]:
  """Yields the records of `<data_dir>/<kind>/<split>` as checked numpy arrays, in order.

  The same checks as `tfrec.data.validate` (`check_shard_set`), stopping at the first problem:
  the manifest is loaded and every shard's size (and sha256) verified before anything is read,
  each record is decoded (`tfrecord_io.decode`) and checked against the contract
  (`tfrecord_io.check_record`, ids against `info` when given), and each shard's record count
  is compared with the manifest. The order is shard order, then record order.

  Raises:
    DataError: naming the manifest, shard, record and field of the first problem.
  """
  import tensorflow as tf  # Deferred: selecting from in-memory records needs no TensorFlow.
  record_kind = schema.get_kind(kind)
  manifest = tfrecord_io.Manifest.load(data_dir, kind, split)
  manifest.verify(data_dir, checksums=checksums)
  for shard, path in zip(manifest.shards, manifest.paths(data_dir)):
    n = 0
    # Batches of serialised records: one eager iterator step per record cost more than the
    # decoding itself.
    batches = tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(chunk)
    try:
      for chunk_records in batches.as_numpy_iterator():
        for serialized in chunk_records:
          arrays = tfrecord_io.decode(record_kind, serialized, path, n)
          try:
            arrays = tfrecord_io.check_record(record_kind, arrays, info)
          except ValueError as e:
            msg = str(e)
            field = msg.split(":")[0][len("field "):] if msg.startswith("field ") else None
            raise DataError(path, msg.split(": ", 1)[-1], record=n, field=field) from None
          yield arrays
          n += 1
    except tf.errors.DataLossError as e:
      raise DataError(path, "unreadable at or after this record (damaged record framing: "
                      f"{e.message.splitlines()[0]})", record=n) from None
    if n != shard.records:
      raise DataError(path, f"{n} readable records, the manifest lists {shard.records}")


def _write_json(path: str, payload: Mapping[str, Any]) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  with open(path + ".tmp", "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(path + ".tmp", path)


def select_split(data_dir: str, out_split: str, mlen: int, min_source_len: int = 5,
                 from_kind: str = "ranking", from_split: str = "train",
                 num_shards: Optional[int] = None, overwrite: bool = False) -> Dict[str, Any]:
  """Selects the CCL pre-training pairs of a split and writes them as `ccl_pair/<out_split>`.

  Reads `<data_dir>/<from_kind>/<from_split>` (manifest-verified and checked against the
  contract, `read_records`), selects (`select_pairs`) and writes the pairs atomically with
  `tfrecord_io.write_records` (checked against the contract and `dataset.json`), so
  `Reader(data_dir, "ccl_pair", out_split)` reads them. Then writes
  `ccl_pair/<out_split>.selection.json` (atomic): the statistics plus the parameters. On
  overwrite, shards of the previous shard set that the new manifest does not list are removed.
  The default from_split, train, is the training data: selecting from valid or test would
  pre-train on the records that select checkpoints or measure results.

  Args:
    data_dir: dataset directory (dataset.json, <kind>/<split>.manifest.json).
    out_split: split name of the output `ccl_pair` shard set.
    mlen, min_source_len: minimum target / source lengths (`select_pairs`).
    from_kind: "ranking" or "ccl_pair".
    from_split: split to select from.
    num_shards: output shards (default `tfrecord_io.num_shards_for(pairs)`).
    overwrite: replace an existing `ccl_pair/<out_split>`.

  Returns:
    the statistics of `select_pairs` plus data_dir, from_kind, from_split, out_split,
    num_shards.

  Raises:
    ValueError: unknown from_kind; out_split == from_split for from_kind "ccl_pair"; nothing
      selected (names the directory, split, mlen and the record counts).
    FileExistsError: `ccl_pair/<out_split>` exists and `overwrite` is False.
    DataError: missing or damaged input shard set or record (from `read_records`).
  """
  if from_kind not in FROM_KINDS:
    raise ValueError(f"from_kind must be one of {FROM_KINDS}, not {from_kind!r}")
  if not out_split or os.sep in out_split:
    raise ValueError(f"out_split must be a plain split name, not {out_split!r}")
  if from_kind == schema.CCL_PAIR.name and out_split == from_split:
    raise ValueError(f"out_split {out_split!r} is the input split ccl_pair/{from_split}: "
                     "choose another out_split (the input would be overwritten)")
  if num_shards is not None and num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  _check_params(mlen, min_source_len)
  out_manifest = tfrecord_io.manifest_path(data_dir, schema.CCL_PAIR.name, out_split)
  if os.path.exists(out_manifest) and not overwrite:
    raise FileExistsError(f"{out_manifest} exists: ccl_pair/{out_split} is already written; "
                          "pass overwrite=True (--overwrite) to replace it")
  from tfrec.data.info import DatasetInfo
  info = DatasetInfo.load(data_dir)
  pairs, stats = select_pairs(read_records(data_dir, from_kind, from_split, info), mlen,
                              min_source_len)
  if not pairs:
    raise ValueError(
        f"no CCL pairs selected from {data_dir}/{from_kind}/{from_split} with mlen={mlen} "
        f"(target length >= {stats['min_target_len_applied']}) and min_source_len="
        f"{min_source_len} (source length >= {stats['min_source_len_applied']}): "
        f"{stats['records_in']} records read, {stats['records_kept_by_length']} passed the "
        "length filter")
  old = None
  if os.path.exists(out_manifest):
    try:
      old = tfrecord_io.Manifest.load(data_dir, schema.CCL_PAIR.name, out_split)
    except DataError:
      old = None  # An unreadable old manifest is replaced; its shards cannot be listed.
  shards = num_shards or tfrecord_io.num_shards_for(len(pairs))
  manifest = tfrecord_io.write_records(data_dir, schema.CCL_PAIR.name, out_split, pairs,
                                       num_shards=shards, info=info)
  if old is not None:
    keep = {s.file for s in manifest.shards}
    for shard in old.shards:
      path = os.path.join(data_dir, schema.CCL_PAIR.name, shard.file)
      if shard.file not in keep and os.path.exists(path):
        os.remove(path)
  stats = dict(stats, data_dir=data_dir, from_kind=from_kind, from_split=from_split,
               out_split=out_split, num_shards=shards)
  _write_json(selection_path(data_dir, out_split),
              dict(stats, paper="SEMI (KDD 2021) §4.1, Table 5: Min. Len. = (mlen, "
                   "min_source_len); per user the longest average length of both domains"))
  return stats


def format_stats(stats: Mapping[str, Any]) -> str:
  """A short table of the selection (Table 5's #Instances and Avg. Length)."""
  lines = [
      f"CCL selection {stats.get('from_kind', '?')}/{stats.get('from_split', '?')} -> "
      f"ccl_pair/{stats.get('out_split', '?')}: Min. Len. = (target {stats['mlen']}, "
      f"source {stats['min_source_len']})",
      f"  records read              {stats['records_in']:>12,}",
      f"  users read                {stats['users_in']:>12,}",
      f"  records kept by length    {stats['records_kept_by_length']:>12,}",
      f"  pairs out (one per user)  {stats['pairs_out']:>12,}",
      f"  avg length target         {stats['avg_target_len']:>12.2f}",
      f"  avg length source         {stats['avg_source_len']:>12.2f}",
  ]
  return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _define_flags(flag_values=None) -> None:
  """Defines the CLI flags (only when run as a program: importing defines no flags)."""
  from absl import flags
  fv = flags.FLAGS if flag_values is None else flag_values
  flags.DEFINE_string("data_dir", None, "dataset directory", flag_values=fv)
  flags.DEFINE_integer("mlen", None, "minimum target (micro-video) length, MLEN (SEMI: 10)",
                       flag_values=fv)
  flags.mark_flags_as_required(["data_dir", "mlen"], flag_values=fv)
  flags.DEFINE_integer("min_source_len", 5, "minimum source (product) length (Table 5: 5)",
                       flag_values=fv)
  flags.DEFINE_enum("from_kind", "ranking", list(FROM_KINDS), "record kind to select from",
                    flag_values=fv)
  flags.DEFINE_string("from_split", "train", "split to select from", flag_values=fv)
  flags.DEFINE_string("out_split", None, "output ccl_pair split (default pretrain_mlen<mlen>)",
                      flag_values=fv)
  flags.DEFINE_integer("num_shards", None, "output shards (default: by the number of pairs)",
                       flag_values=fv)
  flags.DEFINE_bool("overwrite", False, "replace an existing ccl_pair/<out_split>",
                    flag_values=fv)


def run(fv) -> Dict[str, Any]:
  """Runs the selection from parsed flag values and prints the statistics."""
  out_split = fv.out_split or default_out_split(fv.mlen)
  stats = select_split(fv.data_dir, out_split, fv.mlen, fv.min_source_len,
                       from_kind=fv.from_kind, from_split=fv.from_split,
                       num_shards=fv.num_shards, overwrite=fv.overwrite)
  print(format_stats(stats))
  print(f"wrote {tfrecord_io.manifest_path(fv.data_dir, schema.CCL_PAIR.name, out_split)} and "
        f"{selection_path(fv.data_dir, out_split)}", flush=True)
  return stats


def main(argv: Sequence[str]) -> None:
  from absl import app, flags
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  run(flags.FLAGS)


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.datasets.ccl_select", _define_flags)

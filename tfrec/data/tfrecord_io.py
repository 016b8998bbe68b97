"""Writing record kinds to sharded TFRecord files with a manifest, and checking them in Python.

Layout of a dataset directory::

    DIR/dataset.json                      vocabulary sizes (info.DatasetInfo)
    DIR/items.npz, items.manifest.json    item feature store (item_store.ItemStore)
    DIR/<kind>/<split>-00000-of-00004.tfrecord ...
    DIR/<kind>/<split>.manifest.json      per shard: records, bytes, sha256

Why a manifest (measured on TF 2.21): `tf.data.TFRecordDataset` reads a shard cut at a record
boundary, or with fewer than 12 trailing bytes, as a normal end of file, its `DataLossError`
names no file, and `ignore_errors()` silently drops the rest of a damaged file. The reader
(`pipeline.py`) therefore verifies every shard's size and checksum against the manifest and
counts the records of each file.

Writing is all-or-nothing: shards go to temporary names and are renamed, and the manifest is
written last, only when every shard closed cleanly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional

import numpy as np

from tfrec.data import schema
from tfrec.data.errors import DataError
from tfrec.data.item_store import file_sha256

MANIFEST_SUFFIX = ".manifest.json"


def shard_name(split: str, index: int, num_shards: int) -> str:
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def manifest_path(directory: str, kind: str, split: str) -> str:
  return os.path.join(directory, kind, split + MANIFEST_SUFFIX)


# ----------------------------------------------------------------------------- checks


def check_record(kind: schema.RecordKind, record: Mapping[str, Any],
                 info=None) -> Dict[str, np.ndarray]:
  """Checks one record against the contract and returns it as flat numpy arrays.

  Args:
    kind: the record kind.
    record: field name -> scalar, list or array (a "seq2d" field may be [n, width] or flat).
    info: optional `DatasetInfo`; when given, ids are also checked against its vocabularies
      and sequence lengths against its `max_seq_len` (`DatasetInfo.max_len`); without it,
      against the schema's constants.

  Returns:
    field name -> 1-D numpy array (int64 or float32) ready for encoding.

  Raises:
    ValueError: "field <name>: <reason>" for the first field that breaks the contract; the
      caller adds the file and record index (see `ShardedWriter.write`).
  """
  out: Dict[str, np.ndarray] = {}
  unknown = set(record) - set(kind.by_name)
  if unknown:
    raise ValueError(f"field {sorted(unknown)[0]}: not in the {kind.name} schema")
  for f in kind.fields:
    if f.name not in record or record[f.name] is None:
      if f.optional:
        continue
      raise ValueError(f"field {f.name}: missing")
    np_dtype = np.int64 if f.dtype == "int64" else np.float32
    raw = np.asarray(record[f.name])
    if f.dtype == "int64" and raw.size and raw.dtype.kind not in "iub":
      raise ValueError(f"field {f.name}: expected integers, got {raw.dtype}")
    value = raw.astype(np_dtype).reshape(-1)
    n = value.size
    if f.kind == "scalar" and n != 1:
      raise ValueError(f"field {f.name}: expected one value, got {n}")
    if f.kind == "fixed" and f.width and n != f.width:
      raise ValueError(f"field {f.name}: expected {f.width} values, got {n}")
    if f.is_seq:
      steps = n // f.width if f.kind == "seq2d" else n
      if f.kind == "seq2d" and n % f.width:
        raise ValueError(f"field {f.name}: {n} values is not a multiple of width {f.width}")
      max_len = f.max_len if info is None else info.max_len(f)
      if steps > max_len:
        raise ValueError(f"field {f.name}: sequence of {steps} exceeds max length {max_len}"
                         + ("" if info is None else " (the dataset's max_seq_len rule)"))
      if steps < f.min_len:
        raise ValueError(f"field {f.name}: sequence of {steps} is shorter than {f.min_len}"
                         + (" (empty)" if steps == 0 else ""))
    if np_dtype == np.float32 and not np.all(np.isfinite(value)):
      raise ValueError(f"field {f.name}: NaN or inf")
    low, high = f.low, f.high
    if info is not None and f.id_space:
      bounds = info.id_bounds(f.id_space)
      if bounds is not None:
        high = bounds[1] if high is None else min(high, bounds[1])
    is_default = f.optional and n == 1 and value[0] == f.default
    if not is_default:
      if low is not None and n and value.min() < low:
        raise ValueError(f"field {f.name}: value {value.min()} below {low}")
      if high is not None and n and value.max() > high:
        what = "outside {0,1}" if (f.low, f.high) == (0, 1) and f.dtype == "int64" else \
            f"above {high}"
        raise ValueError(f"field {f.name}: value {value.max()} {what}")
    out[f.name] = value
  _check_cross_fields(kind, out)
  return out


def _seq_steps(f: schema.Field, value: np.ndarray) -> int:
  return value.size // f.width if f.kind == "seq2d" else value.size


def _check_cross_fields(kind: schema.RecordKind, out: Dict[str, np.ndarray]) -> None:
  for f in kind.fields:
    if f.aligned_with and f.name in out:
      a = _seq_steps(f, out[f.name])
      b = out[f.aligned_with].size
      if a != b:
        raise ValueError(f"field {f.name}: length {a} differs from {f.aligned_with} ({b})")
    if f.is_seq and f.name.endswith("timestamps") and f.name in out:
      if np.any(np.diff(out[f.name]) < 0):
        raise ValueError(f"field {f.name}: timestamps decrease (sequences are oldest first)")
  for group in kind.nonempty_any:
    if all(out[name].size == 0 for name in group):
      raise ValueError(f"field {group[0]}: all of {list(group)} are empty")
  for seq_name, ts_name in kind.before:
    ts = kind.field(ts_name)
    if ts_name not in out or (ts.optional and out[ts_name][0] == ts.default):
      continue  # an absent optional time: nothing to leak past
    if out[seq_name].size and out[seq_name].max() > out[ts_name][0]:
      raise ValueError(f"field {seq_name}: history later than the event's {ts_name} "
                       "(future leaks into the features)")


def encode(kind: schema.RecordKind, arrays: Mapping[str, np.ndarray]) -> bytes:
  """Serialises checked arrays (from `check_record`) as a `tf.train.Example`."""
  import tensorflow as tf  # Deferred: the generator's workers need no TensorFlow import cost.
  feats = {}
  for f in kind.fields:
    if f.name not in arrays:
      continue
    v = arrays[f.name]
    if f.dtype == "int64":
      feats[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=v.tolist()))
    elif f.dtype == "float32":
      feats[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=v.tolist()))
    else:
      feats[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))
  # deterministic=True sorts the feature map: the same record gives the same bytes in every
  # process (the upb backend otherwise writes it in hash order, which PYTHONHASHSEED changes).
  return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(
      deterministic=True)


def decode(kind: schema.RecordKind, serialized: bytes, path: str = "<bytes>",
           index: Optional[int] = None) -> Dict[str, np.ndarray]:
  """Parses one serialised record back to numpy arrays, checking dtypes (slow path)."""
  import tensorflow as tf
  try:
    ex = tf.train.Example.FromString(serialized)
  except Exception as e:  # protobuf DecodeError
    raise DataError(path, f"not a tf.train.Example: {e}", record=index) from e
  out = {}
  for name, feat in ex.features.feature.items():
    if name not in kind.by_name:
      raise DataError(path, f"not in the {kind.name} schema", record=index, field=name)
    f = kind.by_name[name]
    which = feat.WhichOneof("kind")
    want = {"int64": "int64_list", "float32": "float_list", "bytes": "bytes_list"}[f.dtype]
    if which is not None and which != want:
      raise DataError(path, f"stored as {which}, schema says {f.dtype}", record=index,
                      field=name)
    vals = getattr(feat, want).value
    out[name] = np.asarray(vals, np.int64 if f.dtype == "int64" else np.float32)
  return out


# ----------------------------------------------------------------------------- manifest


@dataclasses.dataclass
class Shard:
  file: str       # relative to the kind directory
  records: int
  bytes: int
  sha256: str


@dataclasses.dataclass
class Manifest:
  """The shard set of one (kind, split): what the reader must find, byte for byte."""

  kind: str
  split: str
  shards: List[Shard]
  schema_version: int = schema.SCHEMA_VERSION

  @property
  def num_records(self) -> int:
    return sum(s.records for s in self.shards)

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d["num_records"] = self.num_records
    return json.dumps(d, indent=2)

  @classmethod
  def load(cls, directory: str, kind: str, split: str) -> "Manifest":
    path = manifest_path(directory, kind, split)
    if not os.path.exists(path):
      have = []
      kdir = os.path.join(directory, kind)
      if os.path.isdir(kdir):
        have = sorted(p[:-len(MANIFEST_SUFFIX)] for p in os.listdir(kdir)
                      if p.endswith(MANIFEST_SUFFIX))
      raise DataError(path, f"missing manifest: no {kind}/{split} shard set "
                      f"(splits present for {kind}: {have})")
    try:
      with open(path) as f:
        raw = json.load(f)
      shards = [Shard(**s) for s in raw["shards"]]
      m = cls(kind=raw["kind"], split=raw["split"], shards=shards,
              schema_version=raw.get("schema_version", 0))
    except (ValueError, KeyError, TypeError) as e:
      raise DataError(path, f"unreadable manifest: {e}") from e
    if m.schema_version != schema.SCHEMA_VERSION:
      raise DataError(path, f"schema version {m.schema_version} != {schema.SCHEMA_VERSION}")
    return m

  def save(self, directory: str) -> str:
    """Writes `<kind>/<split>.manifest.json` atomically (temporary file, then rename)."""
    path = manifest_path(directory, self.kind, self.split)
    with open(path + ".tmp", "w") as f:
      f.write(self.to_json())
    os.replace(path + ".tmp", path)
    return path

  def paths(self, directory: str) -> List[str]:
    return [os.path.join(directory, self.kind, s.file) for s in self.shards]

  def verify(self, directory: str, checksums: bool = True) -> None:
    """Checks every shard exists with the manifest's size (and checksum).

    Raises:
      DataError naming the shard that is missing, truncated, extended or changed.
    """
    for shard, path in zip(self.shards, self.paths(directory)):
      self.verify_shard(shard, path, checksums)

  @staticmethod
  def verify_shard(shard: Shard, path: str, checksums: bool = True) -> None:
    """Checks one shard file against its manifest entry; raises DataError naming it."""
    if not os.path.exists(path):
      raise DataError(path, "shard listed in the manifest is missing")
    size = os.path.getsize(path)
    if size != shard.bytes:
      raise DataError(path, f"{size} bytes on disk, manifest says {shard.bytes}: the shard "
                      "was truncated or appended to")
    if checksums and file_sha256(path) != shard.sha256:
      raise DataError(path, "sha256 differs from the manifest: the shard is damaged")


# ----------------------------------------------------------------------------- writer


class ShardedWriter:
  """Writes records of one kind and split into `num_shards` TFRecord files plus a manifest.

  Use as a context manager. Each record is checked (`check_record`) before it is written;
  a bad record raises `DataError` naming the shard, the record's index in it and the field.
  If the block raises, every temporary file is removed and nothing is left behind.

  Example:
    with ShardedWriter("data/syn", "ranking", "train", num_shards=4, info=info) as w:
      for rec in records:
        w.write(rec)
  """

  def __init__(self, directory: str, kind: str, split: str, num_shards: int = 1,
               info=None, compression: Optional[str] = None):
    if num_shards < 1:
      raise ValueError("num_shards must be >= 1")
    if compression:
      raise ValueError("compressed shards are not supported: checksums cover raw files")
    self.directory = directory
    self.kind = schema.get_kind(kind)
    self.split = split
    self.num_shards = num_shards
    self.info = info
    self._writers = []
    self._tmp: List[str] = []
    self._final: List[str] = []
    self._counts = [0] * num_shards
    self._next = 0

  def __enter__(self) -> "ShardedWriter":
    import tensorflow as tf
    kdir = os.path.join(self.directory, self.kind.name)
    os.makedirs(kdir, exist_ok=True)
    for i in range(self.num_shards):
      final = os.path.join(kdir, shard_name(self.split, i, self.num_shards))
      tmp = final + ".incomplete"
      self._final.append(final)
      self._tmp.append(tmp)
      self._writers.append(tf.io.TFRecordWriter(tmp))
    return self

  def write(self, record: Mapping[str, Any], shard: Optional[int] = None) -> None:
    """Checks and appends one record; round-robin over shards unless `shard` is given."""
    i = self._next if shard is None else int(shard) % self.num_shards
    self._next = (i + 1) % self.num_shards
    try:
      arrays = check_record(self.kind, record, self.info)
    except ValueError as e:
      msg = str(e)
      field = msg.split(":")[0].replace("field ", "") if msg.startswith("field ") else None
      raise DataError(self._final[i], msg.split(": ", 1)[-1], record=self._counts[i],
                      field=field) from None
    self._writers[i].write(encode(self.kind, arrays))
    self._counts[i] += 1

  def write_serialized(self, serialized: bytes, shard: int) -> None:
    """Appends already-encoded bytes without checks (tests use it to plant bad records)."""
    self._writers[shard].write(serialized)
    self._counts[shard] += 1

  def __exit__(self, exc_type, exc, tb) -> None:
    for w in self._writers:
      w.close()
    if exc_type is not None:
      for p in self._tmp:
        if os.path.exists(p):
          os.remove(p)
      return
    shards = []
    for tmp, final, n in zip(self._tmp, self._final, self._counts):
      os.replace(tmp, final)
      shards.append(Shard(os.path.basename(final), n, os.path.getsize(final),
                          file_sha256(final)))
    Manifest(self.kind.name, self.split, shards).save(self.directory)

  @property
  def counts(self) -> List[int]:
    return list(self._counts)


def write_records(directory: str, kind: str, split: str, records: Iterable[Mapping[str, Any]],
                  num_shards: int = 1, info=None) -> Manifest:
  """Writes an iterable of records; returns the manifest."""
  with ShardedWriter(directory, kind, split, num_shards, info) as w:
    for rec in records:
      w.write(rec)
  return Manifest.load(directory, kind, split)


def num_shards_for(num_records: int, target_per_shard: int = 100_000) -> int:
  return max(1, math.ceil(num_records / target_per_shard))

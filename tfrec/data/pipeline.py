"""Reading a shard set through `tf.data`: verify, interleave, parse, check, pad, look up, batch.

    files (manifest-verified) -> interleave(per-file reader that counts records)
      -> [shuffle] -> batch -> vectorised parse (names "file:record N" in every error)
      -> contract checks -> truncate/pad to max length + masks -> item-feature lookup -> prefetch

Output of `Reader.dataset()`: a dict of dense tensors per batch:
  scalar field        <dtype>[batch]
  fixed field         <dtype>[batch, width]
  seq field           <dtype>[batch, max_len], right-padded with 0 (oldest first, newest last)
  seq2d field         <float32>[batch, max_len, width]
  `<prefix>_mask`     <bool>[batch, max_len] for each sequence group (`schema.mask_name`)
  `<base>_<column>`   looked-up item features for each item-id field when `lookup` names
                      columns, e.g. `source_item_visual` <float32>[batch, max_len, visual_dim]

Bad input never passes silently. With `on_bad_record="raise"` (default) the first bad record
stops iteration with `tf.errors.InvalidArgumentError` whose message names the file, the record
index in it and the field. With `on_bad_record="skip"` each bad record is dropped, the error is
logged, and `Reader.report()` says how many records were expected, delivered and skipped.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

from tfrec.data import schema
from tfrec.data.errors import DataError
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.tfrecord_io import Manifest

ERROR_TAG = "tfrec data error:"


@dataclasses.dataclass(frozen=True)
class ReadOptions:
  """How to read a shard set (all optional).

  Attributes:
    max_lens: sequence field -> length to truncate/pad to (records are checked against the
      dataset's maximum, `DatasetInfo.max_len`: its max_seq_len for histories, see
      `schema.max_len_for`; a longer length pads further); truncation keeps the newest
      events. Unnamed sequences use the dataset's maximum.
    lookup: item-store columns to attach for every item-id field ("category", "tags",
      "title", "visual", "domain", "cold", "kind").
    shuffle_buffer: records in the shuffle buffer (0 = no shuffle).
    seed: shuffle seed; with `deterministic` the order is reproducible.
    deterministic: keep the interleave order deterministic (slower, reproducible).
    cycle_length: files read in parallel.
    drop_remainder: drop the last partial batch (needed for fixed shapes under XLA/TPU).
    on_bad_record: "raise" or "skip".
    verify_checksums: hash every shard against the manifest before reading.
    with_provenance: also return `_file` <int32>[batch] and `_record` <int64>[batch].
    source_keep: share of source-domain behaviours kept in the histories (matching: the
      positions of `seq_*` whose domain is 0; ranking: `source_*`), each kept when
      `source_keep_hash(user, item, time) < source_keep` (the same behaviour is kept or
      dropped in every record); applied after the contract checks, before truncation (the
      newest kept ones fill the history). 1.0: everything.
  """

  max_lens: Mapping[str, int] = dataclasses.field(default_factory=dict)
  lookup: Tuple[str, ...] = ()
  shuffle_buffer: int = 0
  seed: Optional[int] = None
  deterministic: bool = True
  cycle_length: int = 4
  drop_remainder: bool = False
  on_bad_record: str = "raise"
  verify_checksums: bool = True
  with_provenance: bool = False
  source_keep: float = 1.0


_HASH_MULTIPLIERS = (0x9E3779B1, 0x85EBCA6B, 0xC2B2AE35)


def source_keep_hash(user, item, time):
  """A uniform number in [0, 1) per (user, item, time) (int64 tensors or numpy arrays of one
  shape): a multiply-xorshift mix (wrapping int64 arithmetic), the low 24 bits / 2^24.

  The same function in numpy and TensorFlow, so a test can say which behaviours a share keeps.
  """
  if isinstance(user, tf.Tensor) or isinstance(item, tf.Tensor):
    user, item, time = (tf.cast(v, tf.int64) for v in (user, item, time))
    shift = tf.bitwise.right_shift
    x = (item * _HASH_MULTIPLIERS[0] + time * _HASH_MULTIPLIERS[1]
         + user * _HASH_MULTIPLIERS[2])
    x = tf.bitwise.bitwise_xor(x, shift(x, 16)) * 0x7FEB352D
    x = tf.bitwise.bitwise_xor(x, shift(x, 15))
    return tf.cast(tf.bitwise.bitwise_and(x, 0xFFFFFF), tf.float32) / float(1 << 24)
  import numpy as np
  with np.errstate(over="ignore"):
    user, item, time = (np.asarray(v, np.int64) for v in (user, item, time))
    x = (item * np.int64(_HASH_MULTIPLIERS[0]) + time * np.int64(_HASH_MULTIPLIERS[1])
         + user * np.int64(_HASH_MULTIPLIERS[2]))
    x = (x ^ (x >> 16)) * np.int64(0x7FEB352D)
    x = x ^ (x >> 15)
  return (x & 0xFFFFFF).astype(np.float32) / float(1 << 24)


def item_base(name: str) -> str:
  """`source_item_ids` -> `source_item`, `item_id` -> `item`: prefix of looked-up features."""
  for suffix in ("_ids", "_id"):
    if name.endswith(suffix):
      return name[: -len(suffix)]
  return name


class Reader:
  """Reads one (kind, split) shard set of a dataset directory.

  Args:
    directory: dataset directory (holds dataset.json, items.npz, <kind>/<split>.manifest.json).
    kind: record kind name (`schema.EXAMPLE_KINDS`).
    split: split name, e.g. "train", "test", "test_cold".
    options: `ReadOptions`.
    info: the dataset's `DatasetInfo` (loaded from the directory when None).
    item_store: the dataset's `ItemStore` (loaded when `options.lookup` needs it).

  Raises:
    DataError: missing or damaged manifest/shards (file named), unknown split.
  """

  def __init__(self, directory: str, kind: str, split: str,
               options: ReadOptions = ReadOptions(), info: Optional[DatasetInfo] = None,
               item_store: Optional[ItemStore] = None):
    if options.on_bad_record not in ("raise", "skip"):
      raise ValueError(f"on_bad_record must be 'raise' or 'skip', not {options.on_bad_record!r}")
    self.directory = directory
    self.kind = schema.get_kind(kind)
    self.split = split
    self.options = options
    self.info = info or DatasetInfo.load(directory)
    self.manifest = Manifest.load(directory, kind, split)
    self.manifest.verify(directory, checksums=options.verify_checksums)
    self.paths = self.manifest.paths(directory)
    self.max_lens = self._resolve_max_lens(options.max_lens)
    self.item_store = item_store
    if options.lookup:
      if self.item_store is None:
        self.item_store = ItemStore.load(directory)
      unknown = set(options.lookup) - set(self.item_store.columns())
      if unknown:
        raise ValueError(f"unknown item-store columns {sorted(unknown)}")
    self._delivered = None

  # --------------------------------------------------------------------------- public

  @property
  def num_records(self) -> int:
    return self.manifest.num_records

  def dataset(self, batch_size: int, input_context: Optional[tf.distribute.InputContext] = None,
              repeat: bool = False) -> tf.data.Dataset:
    """Builds the batched dataset.

    Args:
      batch_size: global batch size; divided by the replicas of `input_context`.
      input_context: from `strategy.distribute_datasets_from_function`; files are split
        between input pipelines (each pipeline gets whole files).
      repeat: repeat indefinitely (epochs are then delimited by `steps_per_epoch`).
    """
    opts = self.options
    paths = list(self.paths)
    counts = [s.records for s in self.manifest.shards]
    file_ids = list(range(len(paths)))
    if input_context is not None:
      batch_size = input_context.get_per_replica_batch_size(batch_size)
      n = input_context.num_input_pipelines
      if n > 1:
        if len(paths) < n:
          raise DataError(self.paths[0], f"{len(paths)} shards cannot feed {n} input pipelines:"
                          " write at least one shard per worker")
        file_ids = file_ids[input_context.input_pipeline_id::n]
    names = tf.constant(paths)
    files = tf.data.Dataset.from_tensor_slices(
        (tf.constant(file_ids, tf.int32), tf.constant([counts[i] for i in file_ids], tf.int64)))
    if opts.shuffle_buffer:
      files = files.shuffle(len(file_ids), seed=opts.seed, reshuffle_each_iteration=True)
    skip = opts.on_bad_record == "skip"

    def per_file(fid, expected):
      return _records_of_file(names, fid, expected, warn_only=skip)

    ds = files.interleave(per_file, cycle_length=max(1, min(opts.cycle_length, len(file_ids))),
                          num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=opts.deterministic)  # chunks of records
    if repeat:
      ds = ds.repeat()
    # Graph code without Python control flow on tensors: no autograph conversion (which cost
    # about a second per process).
    parse = tf.autograph.experimental.do_not_convert(
        lambda f, r, s: self._parse_batch(names, f, r, s))
    if skip:
      # One record at a time through the same checks; a failing record is dropped and logged.
      self._delivered = tf.Variable(0, dtype=tf.int64, trainable=False)
      delivered = self._delivered
      ds = ds.unbatch()
      if opts.shuffle_buffer:
        ds = ds.shuffle(opts.shuffle_buffer, seed=opts.seed, reshuffle_each_iteration=True)
      ds = ds.batch(1).map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=opts.deterministic)
      ds = ds.ignore_errors(log_warning=True).unbatch()

      def count(x):
        delivered.assign_add(1)
        return x

      return self._finish(ds.map(count).batch(batch_size, drop_remainder=opts.drop_remainder))
    if opts.shuffle_buffer:
      ds = ds.unbatch().shuffle(opts.shuffle_buffer, seed=opts.seed,
                                reshuffle_each_iteration=True)
      ds = ds.batch(batch_size, drop_remainder=opts.drop_remainder)
    else:
      ds = ds.rebatch(batch_size, drop_remainder=opts.drop_remainder)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=opts.deterministic)
    return self._finish(ds)

  def _finish(self, ds: tf.data.Dataset) -> tf.data.Dataset:
    opts = self.options
    if opts.lookup:
      ds = ds.map(self.lookup_features, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=opts.deterministic)
    return ds.prefetch(tf.data.AUTOTUNE)

  def report(self) -> Dict[str, int]:
    """After one full pass in skip mode: records expected (manifest), delivered, skipped."""
    expected = self.num_records
    delivered = int(self._delivered.numpy()) if self._delivered is not None else expected
    return {"expected": expected, "delivered": delivered, "skipped": expected - delivered}

  def lookup_features(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Adds `<base>_<column>` item features for every item-id field of the batch.

    Ids were range-checked by `_parse_batch`, so `tf.gather` never sees an unknown id (on
    GPU an out-of-range gather silently returns zeros).
    """
    out = dict(batch)
    tables = {c: tf.constant(v) for c, v in self.item_store.columns().items()
              if c in self.options.lookup}
    for f in self.kind.fields:
      if f.id_space != "item":
        continue
      for col, table in tables.items():
        out[f"{item_base(f.name)}_{col}"] = tf.gather(table, batch[f.name])
    return out

  # --------------------------------------------------------------------------- parsing

  def _resolve_max_lens(self, requested: Mapping[str, int]) -> Dict[str, int]:
    out = {}
    for f in self.kind.fields:
      if f.is_seq:
        out[f.name] = self.info.max_len(f)
    for name, n in requested.items():
      f = self.kind.field(name)
      if not f.is_seq:
        raise ValueError(f"max_lens: {name} is not a sequence field")
      if n < 1:
        raise ValueError(f"max_lens[{name}]={n} must be >= 1")
      # Above the dataset's maximum (its contract, still checked per record) rows just pad
      # further: a model with a fixed n (THACIL's 160) reads a dataset of 50.
      out[name] = n
    # Aligned fields share their group's length.
    for f in self.kind.fields:
      if f.aligned_with:
        out[f.name] = out[f.aligned_with]
    return out

  def _feature_spec(self) -> Dict[str, object]:
    spec = {}
    for f in self.kind.fields:
      dtype = {"int64": tf.int64, "float32": tf.float32, "bytes": tf.string}[f.dtype]
      if f.kind == "scalar":
        default = tf.constant(f.default, dtype) if f.optional else None
        spec[f.name] = tf.io.FixedLenFeature([], dtype, default_value=default)
      elif f.kind == "fixed":
        spec[f.name] = tf.io.FixedLenFeature([f.width], dtype)
      else:
        spec[f.name] = tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64)
    return spec

  def _parse_batch(self, names: tf.Tensor, file_idx: tf.Tensor, record_idx: tf.Tensor,
                   serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses, checks and pads one batch of serialised records.

    Args:
      names: <string>[num_files] shard paths.
      file_idx: <int32>[batch] index into `names`.
      record_idx: <int64>[batch] record index inside its file.
      serialized: <string>[batch].
    """
    where = tf.strings.join([tf.gather(names, file_idx), ", record ",
                             tf.strings.as_string(record_idx)])
    parsed = tf.io.parse_example(serialized, self._feature_spec(), example_names=where)
    checks = _contract_checks(self.kind, self.info, parsed)
    with tf.control_dependencies([_assert_contract(checks, where)]):
      out = {}
      values = dict(parsed)
      for f in self.kind.fields:
        if f.kind == "seq2d":
          v = values[f.name]
          values[f.name] = tf.RaggedTensor.from_row_lengths(
              tf.reshape(v.flat_values, [-1, f.width]), v.row_lengths() // f.width)
      if self.options.source_keep < 1.0:
        values = _drop_source(self.kind, values, self.options.source_keep)
      for f in self.kind.fields:
        v = values[f.name]
        if f.is_seq:
          length = self.max_lens[f.name]
          v = _keep_newest(v, length)
          shape = [None, length] + ([f.width] if f.kind == "seq2d" else [])
          out[f.name] = tf.identity(v.to_tensor(default_value=0, shape=shape))
          if not f.aligned_with:
            out[schema.mask_name(f.name)] = tf.sequence_mask(v.row_lengths(), length)
        else:
          out[f.name] = tf.identity(v)
      if self.options.with_provenance:
        out["_file"] = tf.identity(file_idx)
        out["_record"] = tf.identity(record_idx)
    return out


def _drop_source(kind: schema.RecordKind, values: Dict[str, tf.Tensor], share: float
                 ) -> Dict[str, tf.Tensor]:
  """`values` with the source-domain behaviours `source_keep_hash` leaves out removed from the
  histories (`ReadOptions.source_keep`): matching records' `seq_*` positions of domain 0,
  ranking records' `source_*` fields; every aligned field alike."""
  out = dict(values)
  if kind.name == "matching":
    seq, prefix = values["seq_item_ids"], "seq_"
    source = tf.equal(values["seq_domain_ids"], schema.SOURCE)
  elif kind.name == "ranking":
    seq, prefix = values["source_item_ids"], "source_"
    source = tf.ones_like(seq, tf.bool)
  else:
    return out
  user = tf.gather(tf.cast(values["user_id"], tf.int64), seq.value_rowids())
  times = values[prefix + "timestamps"].flat_values
  u = source_keep_hash(user, seq.flat_values, times)
  keep = seq.with_flat_values(tf.logical_or(tf.logical_not(source.flat_values), u < share))
  for f in kind.fields:
    if f.is_seq and f.name.startswith(prefix):
      out[f.name] = tf.ragged.boolean_mask(values[f.name], keep)
  return out


def _keep_newest(v: tf.RaggedTensor, length: int) -> tf.RaggedTensor:
  """Truncates each row to its last `length` elements (sequences are oldest first)."""
  return v[:, -length:]


def _records_of_file(names: tf.Tensor, fid: tf.Tensor, expected: tf.Tensor,
                     warn_only: bool, chunk: int = 256) -> tf.data.Dataset:
  """Records of one shard in chunks of (file index [n], record index [n], bytes [n]).

  A damaged record (bad CRC, cut length) ends `TFRecordDataset` with a DataLossError that
  names no file; `ignore_errors` turns that into an early end, and an empty sentinel chunk
  appended after the last one compares the count with the manifest, naming the file and
  the record where reading stopped. Work is per chunk, not per record (measured: a per-record
  count cost 12x the read itself).
  """
  path = names[fid]
  recs = tf.data.TFRecordDataset(path, buffer_size=1 << 20).ignore_errors().batch(chunk)
  end = tf.data.Dataset.from_tensors(tf.zeros([0], tf.string))

  def step(count, records):
    return count + tf.size(records, out_type=tf.int64), (count, records)

  def keep(start, records):
    is_end = tf.equal(tf.size(records), 0)
    ok = tf.logical_or(tf.logical_not(is_end), tf.equal(start, expected))
    msg = [ERROR_TAG, "file", path, ", record", start,
           ": unreadable from here on (damaged or truncated record framing); the manifest "
           "lists", expected, "records"]
    if warn_only:
      check = tf.cond(ok, tf.no_op, lambda: tf.print("WARNING", *msg, "; skipping the rest"))
    else:
      check = tf.debugging.Assert(ok, msg)
    with tf.control_dependencies([check]):
      return tf.logical_not(is_end)

  def label(start, records):
    n = tf.size(records, out_type=tf.int64)
    return tf.fill([n], fid), start + tf.range(n), records

  ds = recs.concatenate(end).scan(tf.constant(0, tf.int64), step)
  return ds.filter(keep).map(label)


class _Check(NamedTuple):
  """One contract rule over a batch: `bad` <bool>[batch]; `shown(row)` the scalar printed for
  the first bad row (a length, min or max), built only in the failure branch."""
  field: str
  reason: str
  bad: tf.Tensor
  shown: Callable[[tf.Tensor], tf.Tensor]


def _assert_contract(checks: Sequence[_Check], where: tf.Tensor) -> tf.Operation:
  """One assertion for every rule of the batch: on failure it names the first failing rule (in
  `checks` order), its first bad row's file and record, and the value shown.

  One stacked test on the hot path instead of an assertion per rule: the parse function's
  graph is 5x smaller, so building and instantiating the input pipeline (every `train` and
  `evaluate` starts two or one) takes a fraction of the time; what is checked is unchanged.
  """
  if not checks:
    return tf.no_op()
  bad = tf.stack([c.bad for c in checks])  # [rules, batch]
  rule_bad = tf.reduce_any(bad, axis=1)
  ok = tf.logical_not(tf.reduce_any(rule_bad))

  def fail():
    rule = tf.argmax(tf.cast(rule_bad, tf.int32), output_type=tf.int32)
    row = tf.argmax(tf.cast(tf.gather(bad, rule), tf.int32), output_type=tf.int32)
    texts = tf.constant([f"field {c.field}: {c.reason}; value:" for c in checks])
    shown = tf.stack([_text(c.shown(row)) for c in checks])
    check = tf.debugging.Assert(
        ok, [ERROR_TAG, "file", where[row], tf.gather(texts, rule), tf.gather(shown, rule)])
    with tf.control_dependencies([check]):
      return tf.identity(ok)

  return tf.cond(ok, lambda: ok, fail).op


def _rows_any(bad: tf.Tensor, splits: tf.Tensor, skip_first: bool = False) -> tf.Tensor:
  """Per-row OR of per-value rules of a ragged tensor, from its row splits.

  Args:
    bad: <bool>[values, rules].
    splits: <int64>[batch + 1] row splits.
    skip_first: leave each row's first value out.
  Returns:
    <bool>[batch, rules]: a running count of bad values differenced at the row bounds (no
    per-value row ids); False for an empty row.
  """
  counts = tf.cumsum(tf.cast(bad, tf.int32), axis=0)
  counts = tf.pad(counts, [[1, 0], [0, 0]])  # [values + 1, rules], from 0
  start, end = splits[:-1], splits[1:]
  if skip_first:
    start = tf.minimum(start + 1, end)
  return tf.gather(counts, end) - tf.gather(counts, start) > 0


def _row_values(v: tf.RaggedTensor, row: tf.Tensor) -> tf.Tensor:
  """The flat values of one row of `v`."""
  return v.flat_values[v.row_splits[row]:v.row_splits[row + 1]]


def _text(value: tf.Tensor) -> tf.Tensor:
  return value if value.dtype == tf.string else tf.strings.as_string(value)


def _contract_checks(kind: schema.RecordKind, info: DatasetInfo,
                     parsed: Mapping[str, object]) -> List[_Check]:
  """Vectorised contract rules, each a `_Check`. A sequence's value rules are one running
  count over its flat values (`_rows_any`); row lengths come from its row splits."""
  out: List[_Check] = []

  def add(field, reason, bad, shown):
    out.append(_Check(field, reason, bad, shown))

  def at(values):
    return lambda row: values[row]

  for f in kind.fields:
    v = parsed[f.name]
    low, high = f.low, f.high
    if f.id_space:
      bounds = info.id_bounds(f.id_space)
      if bounds is not None:
        high = bounds[1] if high is None else min(high, bounds[1])
    if f.is_seq:
      splits = v.row_splits
      lengths = splits[1:] - splits[:-1]
      steps = lengths // f.width if f.kind == "seq2d" else lengths
      if f.kind == "seq2d":
        add(f.name, f"values not a multiple of width {f.width}", lengths % f.width != 0,
            at(lengths))
      max_len = info.max_len(f)
      add(f.name, f"over-long sequence (dataset max {max_len})", steps > max_len, at(steps))
      if f.min_len:
        add(f.name, f"sequence shorter than {f.min_len} (empty?)", steps < f.min_len,
            at(steps))
      if f.aligned_with:
        other = parsed[f.aligned_with].row_splits
        add(f.name, f"length differs from {f.aligned_with}", steps != other[1:] - other[:-1],
            at(steps))
      flat = v.flat_values
      row_min = lambda row, v=v: tf.reduce_min(_row_values(v, row))  # noqa: E731
      row_max = lambda row, v=v: tf.reduce_max(_row_values(v, row))  # noqa: E731
      rules = []  # (reason, bad value <bool>[values], shown(row))
      if f.dtype == "float32":
        rules.append(("NaN or inf", ~tf.math.is_finite(flat), at(lengths)))
      if low is not None:
        rules.append((f"value below {low}", flat < low, row_min))
      if high is not None:
        rules.append((f"value above {high} (unknown id?)", flat > high, row_max))
      if rules:  # one pass for every value rule of the field
        per_row = _rows_any(tf.stack([r[1] for r in rules], axis=1), splits)
        for i, (reason, _, shown) in enumerate(rules):
          add(f.name, reason, per_row[:, i], shown)
      if f.name.endswith("timestamps"):
        # A decrease at value i > 0 compares it with value i - 1; the rows' first values
        # compare across rows and are left out of each row's range.
        dec = tf.concat([tf.zeros([1], tf.bool), flat[1:] < flat[:-1]], 0)[:tf.size(flat)]
        add(f.name, "timestamps decrease (sequences are oldest first)",
            _rows_any(dec[:, None], splits, skip_first=True)[:, 0], at(lengths))
    else:
      flat = tf.reshape(v, [tf.shape(v)[0], -1])
      row_min = lambda row, flat=flat: tf.reduce_min(flat[row])  # noqa: E731
      row_max = lambda row, flat=flat: tf.reduce_max(flat[row])  # noqa: E731
      if f.dtype == "float32":
        add(f.name, "NaN or inf", tf.reduce_any(~tf.math.is_finite(flat), axis=1), row_min)
      is_default = None
      if f.optional:
        is_default = tf.equal(flat[:, 0], tf.cast(f.default, flat.dtype))
      if low is not None:
        below = tf.reduce_any(flat < low, axis=1)
        add(f.name, f"value below {low}",
            below if is_default is None else tf.logical_and(below, ~is_default), row_min)
      if high is not None:
        what = "label outside {0,1}" if f.name == "label" else f"value above {high} (unknown id?)"
        above = tf.reduce_any(flat > high, axis=1)
        add(f.name, what,
            above if is_default is None else tf.logical_and(above, ~is_default), row_max)
  for group in kind.nonempty_any:
    empty = tf.reduce_all(tf.stack([parsed[g].row_splits[1:] == parsed[g].row_splits[:-1]
                                    for g in group]), axis=0)
    add(group[0], f"all of {list(group)} are empty", empty, at(parsed[kind.fields[0].name]))
  for seq_name, ts_name in kind.before:
    seq = parsed[seq_name]
    splits = seq.row_splits
    rows = tf.searchsorted(splits[1:], tf.range(tf.size(seq.flat_values, out_type=splits.dtype)),
                           side="right")  # each value's row
    leak = _rows_any((seq.flat_values > tf.gather(parsed[ts_name], rows))[:, None], splits)[:, 0]
    if kind.field(ts_name).optional:  # absent: the default, nothing to leak past
      leak = tf.logical_and(leak, parsed[ts_name] != kind.field(ts_name).default)
    add(seq_name, f"history later than the event's {ts_name} (future leaks into features)",
        leak, lambda row, seq=seq: tf.reduce_max(_row_values(seq, row)))
  return out


def read_dataset(directory: str, kind: str, split: str, batch_size: int,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 repeat: bool = False, **options) -> tf.data.Dataset:
  """Shortcut: `Reader(directory, kind, split, ReadOptions(**options)).dataset(...)`."""
  return Reader(directory, kind, split, ReadOptions(**options)).dataset(
      batch_size, input_context=input_context, repeat=repeat)


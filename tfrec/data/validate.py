r"""Checks a whole dataset directory and prints a report; exits non-zero when anything is wrong.

    python -m tfrec.data.validate DIR [--max_errors=20] [--nochecksums]

What it checks:
  * dataset.json is readable and of this schema version;
  * the item store: manifest checksum, no NaN/inf, ids and vocabularies in range (the `kind`
    column in [0, num_item_kinds]; a store without it reads as all 0), padding row;
  * every shard set (<kind>/<split>.manifest.json): each shard exists with the manifest's size
    and sha256, holds exactly the manifest's number of readable records;
  * every record against the contract (`tfrecord_io.check_record`: dtypes, shapes, lengths
    up to the dataset's maximum (dataset.json `max_seq_len`, `schema.max_len_for`),
    id ranges, labels, NaN, timestamp order, no leakage), and its item ids against the store
    (the domain each field requires; cold items never in a "train" or "valid" split).

Unlike the training reader, which stops at the first bad record, it goes on and reports every
problem with file, record index and field (the first `--max_errors` in full) on stdout; when
there is any, the command ends with one line on stderr (how many, and the first) and exit
status 1. It reads the splits each dataset's manifests list (train, valid, test, ...).
"""

from __future__ import annotations

import collections
import os
from typing import Dict, List, Optional, Sequence

from absl import app, flags
import numpy as np

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)
from tfrec.data import schema
from tfrec.data.errors import DataError
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.tfrecord_io import MANIFEST_SUFFIX, Manifest, check_record, decode


class Report:
  """Collects problems and counts; prints them in the order found."""

  def __init__(self, max_errors: int = 20):
    self.max_errors = max_errors
    self.errors: List[DataError] = []
    self.by_reason = collections.Counter()
    self.records: Dict[str, int] = {}

  def add(self, err: DataError) -> None:
    self.errors.append(err)
    self.by_reason[(err.field, err.reason.split(":")[0][:60])] += 1

  @property
  def ok(self) -> bool:
    return not self.errors

  def render(self) -> str:
    lines = ["shard set                        records"]
    for name, n in sorted(self.records.items()):
      lines.append(f"  {name:<30} {n:>10,}")
    if self.ok:
      lines.append("OK: no problems found.")
      return "\n".join(lines)
    lines.append(f"FAILED: {len(self.errors)} problem(s).")
    for err in self.errors[: self.max_errors]:
      lines.append(f"  - {err}")
    if len(self.errors) > self.max_errors:
      lines.append(f"  ... and {len(self.errors) - self.max_errors} more; by field and reason:")
      for (field, reason), n in self.by_reason.most_common():
        lines.append(f"    {n:>8}  {field}: {reason}")
    return "\n".join(lines)


def shard_sets(directory: str):
  """Yields (kind, split) for every manifest under the dataset directory."""
  for kind in schema.EXAMPLE_KINDS:
    kdir = os.path.join(directory, kind)
    if not os.path.isdir(kdir):
      continue
    for name in sorted(os.listdir(kdir)):
      if name.endswith(MANIFEST_SUFFIX):
        yield kind, name[: -len(MANIFEST_SUFFIX)]


# Splits that training reads (train) or selects checkpoints on (valid): no cold-start item.
NO_COLD_SPLITS = ("train", "valid")


def _check_against_store(kind: schema.RecordKind, arrays, store: ItemStore, split: str):
  """Raises ValueError("field <name>: ...") when an item id breaks the store's facts."""
  for f in kind.fields:
    if f.id_space != "item" or f.name not in arrays:
      continue
    ids = arrays[f.name]
    if f.domain is not None and ids.size and np.any(store.domain[ids] != f.domain):
      bad = ids[store.domain[ids] != f.domain][0]
      raise ValueError(f"field {f.name}: item {bad} is in domain "
                       f"{schema.DOMAIN_NAMES[store.domain[bad]]}, the field needs "
                       f"{schema.DOMAIN_NAMES[f.domain]}")
    if split in NO_COLD_SPLITS and ids.size and np.any(store.cold[ids] == 1):
      bad = ids[store.cold[ids] == 1][0]
      raise ValueError(f"field {f.name}: cold-start item {bad} appears in a {split} split")


def check_shard_set(directory: str, kind_name: str, split: str, info: DatasetInfo,
                    store: Optional[ItemStore], report: Report, checksums: bool = True) -> None:
  """Checks one shard set record by record, adding every problem to the report."""
  import tensorflow as tf
  kind = schema.get_kind(kind_name)
  try:
    manifest = Manifest.load(directory, kind_name, split)
  except DataError as e:
    report.add(e)
    return
  total = 0
  for shard, path in zip(manifest.shards, manifest.paths(directory)):
    try:
      manifest.verify_shard(shard, path, checksums=checksums)
    except DataError as e:
      report.add(e)
      if not os.path.exists(path):
        continue
    n = 0
    try:
      for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
        try:
          arrays = check_record(kind, decode(kind, serialized, path, n), info)
          if store is not None:
            _check_against_store(kind, arrays, store, split)
        except DataError as e:
          report.add(e)
        except ValueError as e:
          msg = str(e)
          field = msg.split(":")[0][len("field "):] if msg.startswith("field ") else None
          report.add(DataError(path, msg.split(": ", 1)[-1], record=n, field=field))
        n += 1
    except tf.errors.DataLossError as e:
      report.add(DataError(path, f"unreadable from here on (damaged record framing: "
                           f"{e.message.splitlines()[0]})", record=n))
    if n != shard.records:
      report.add(DataError(path, f"{n} readable records, the manifest lists {shard.records}"))
    total += n
  report.records[f"{kind_name}/{split}"] = total


def validate(directory: str, max_errors: int = 20, checksums: bool = True) -> Report:
  """Checks a dataset directory; returns the report (see module docstring)."""
  report = Report(max_errors)
  try:
    info = DatasetInfo.load(directory)
  except DataError as e:
    report.add(e)
    return report
  store = None
  try:
    store = ItemStore.load(directory, verify=checksums)
    store.validate(os.path.join(directory, "items.npz"), info=info)
    if store.num_items != info.num_items:
      report.add(DataError(os.path.join(directory, "items.npz"),
                           f"{store.num_items} items, dataset.json says {info.num_items}"))
    report.records["item store"] = store.num_items
  except DataError as e:
    report.add(e)
  sets = list(shard_sets(directory))
  if not sets:
    report.add(DataError(directory, "no shard sets (<kind>/<split>.manifest.json) found"))
  for kind_name, split in sets:
    check_shard_set(directory, kind_name, split, info, store, report, checksums)
  return report


def _define_flags() -> None:
  """Defines the CLI flags (only when run as a program: importing defines no flags)."""
  flags.DEFINE_integer("max_errors", 20, "Problems printed in full.")
  flags.DEFINE_bool("checksums", True, "Verify sha256 of every shard against its manifest.")


def main(argv: Sequence[str]) -> None:
  """Prints the report; a dataset with problems ends with one line on stderr naming how many
  and the first one (file, record, field), exit status 1."""
  if len(argv) != 2:
    raise app.UsageError(f"usage: python -m tfrec.data.validate DIR [--max_errors=N] "
                         f"[--nochecksums]; got arguments {list(argv[1:])}")
  fl = flags.FLAGS
  report = validate(argv[1], fl.max_errors, fl.checksums)
  print(f"dataset {argv[1]}")
  print(report.render(), flush=True)
  if not report.ok:
    raise ValueError(f"{argv[1]}: {len(report.errors)} problem(s), listed above; the first: "
                     f"{report.errors[0]}")


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.data.validate", _define_flags)

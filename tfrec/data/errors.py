"""Errors for bad input: every message names the file, the record index and the field."""

from __future__ import annotations

from typing import Optional


class DataError(ValueError):
  """A record, shard or manifest does not satisfy the data contract.

  Attributes:
    path: the file (shard, manifest or store) where the problem is.
    record: 0-based index of the record inside that file, or None for file-level problems.
    field: the feature name, or None.
    reason: what is wrong.
  """

  def __init__(self, path: str, reason: str, record: Optional[int] = None,
               field: Optional[str] = None):
    self.path = str(path)
    self.record = record
    self.field = field
    self.reason = reason
    where = f"file {self.path}"
    if record is not None:
      where += f", record {record}"
    if field is not None:
      where += f", field {field!r}"
    super().__init__(f"{where}: {reason}")

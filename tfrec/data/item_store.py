"""Item feature store: per item id its domain, category, tags, title, visual vector, cold, kind.

Examples carry only item ids; the multi-modal features are looked up here at input time
(or inside a model, as a non-trainable table), the way a production system fetches them
from a feature database. Stored column-wise in `items.npz` (no pickle) next to
`dataset.json`; row 0 is the padding item and is all zeros.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from tfrec.data import schema
from tfrec.data.errors import DataError

STORE_FILE = "items.npz"
STORE_MANIFEST = "items.manifest.json"

_COLUMNS = ("domain", "category", "tags", "title", "visual", "cold", "kind", "pre_extracted")
# Columns a store may lack (written before they existed) -> all zeros (0 wide) on load.
_OPTIONAL_COLUMNS = ("kind", "pre_extracted")


@dataclasses.dataclass
class ItemStore:
  """Column-wise item features; index = item id, row 0 = padding.

  Attributes:
    domain: <int64>[num_items + 1], 0 source / 1 target.
    category: <int64>[num_items + 1], 1-based leaf category.
    tags: <int64>[num_items + 1, MAX_TAGS], 0-padded.
    title: <int64>[num_items + 1, MAX_TITLE_LEN], 0-padded.
    visual: <float32>[num_items + 1, visual_dim]; visual_dim may be 0.
    cold: <int64>[num_items + 1], 1 = held out of training interactions.
    kind: <int64>[num_items + 1], item kind in [0, DatasetInfo.num_item_kinds], 0 = no kind;
      None (the default) = all zeros, which is also how an items.npz without it loads.
    pre_extracted: <float32>[num_items + 1, P]: each item's frozen representation from its
      domain's extractor (`tfrec.datasets.pre_extract`; SEMI §3.2.1); None = 0 wide (none).
  """

  domain: np.ndarray
  category: np.ndarray
  tags: np.ndarray
  title: np.ndarray
  visual: np.ndarray
  cold: np.ndarray
  kind: Optional[np.ndarray] = None
  pre_extracted: Optional[np.ndarray] = None

  def __post_init__(self):
    self.domain = np.asarray(self.domain, np.int64)
    self.category = np.asarray(self.category, np.int64)
    self.tags = np.asarray(self.tags, np.int64).reshape(len(self.domain), -1)
    self.title = np.asarray(self.title, np.int64).reshape(len(self.domain), -1)
    self.visual = np.asarray(self.visual, np.float32).reshape(len(self.domain), -1)
    self.cold = np.asarray(self.cold, np.int64)
    n = len(self.domain)
    self.kind = (np.zeros(n, np.int64) if self.kind is None
                 else np.asarray(self.kind, np.int64))
    self.pre_extracted = (np.zeros((n, 0), np.float32) if self.pre_extracted is None
                          else np.asarray(self.pre_extracted, np.float32).reshape(n, -1))
    for name in _COLUMNS:
      if len(getattr(self, name)) != n:
        raise ValueError(f"item store column {name} has {len(getattr(self, name))} rows, "
                         f"domain has {n}")

  @property
  def num_items(self) -> int:
    """Number of real items (ids 1..num_items)."""
    return len(self.domain) - 1

  @property
  def visual_dim(self) -> int:
    return self.visual.shape[1]

  @property
  def pre_extracted_dim(self) -> int:
    return self.pre_extracted.shape[1]

  def columns(self) -> Dict[str, np.ndarray]:
    return {name: getattr(self, name) for name in _COLUMNS}

  def item_ids(self, domain: Optional[int] = None, cold: Optional[bool] = None) -> np.ndarray:
    """Ids (>= 1) of the items of one domain and/or cold flag."""
    keep = np.ones(len(self.domain), bool)
    keep[0] = False
    if domain is not None:
      keep &= self.domain == domain
    if cold is not None:
      keep &= self.cold == int(cold)
    return np.nonzero(keep)[0].astype(np.int64)

  def validate(self, path: str = STORE_FILE, info=None) -> None:
    """Raises DataError naming the item (record) and field of the first bad value."""
    kind = schema.ITEM
    cols = self.columns()
    if self.tags.shape[1] != schema.MAX_TAGS:
      raise DataError(path, f"tags width {self.tags.shape[1]} != {schema.MAX_TAGS}", field="tags")
    if self.title.shape[1] != schema.MAX_TITLE_LEN:
      raise DataError(path, f"title width {self.title.shape[1]} != {schema.MAX_TITLE_LEN}",
                      field="title")
    for name, col in cols.items():
      body = col[1:]
      f = kind.field(name)
      if col.dtype.kind == "f":
        bad = ~np.isfinite(body).reshape(len(body), -1).all(axis=1)
        if bad.any():
          i = int(np.argmax(bad)) + 1
          raise DataError(path, "NaN or inf in item features", record=i, field=name)
      flat = body.reshape(len(body), -1)
      low = f.low
      high = f.high
      if info is not None and f.id_space:
        bounds = info.id_bounds(f.id_space)
        if bounds is not None:
          high = bounds[1] if high is None else min(high, bounds[1])
      for bound, op, word in ((low, np.less, "below"), (high, np.greater, "above")):
        if bound is None:
          continue
        bad = op(flat, bound).any(axis=1)
        if bad.any():
          i = int(np.argmax(bad))
          raise DataError(path, f"value {flat[i].tolist()} {word} allowed {bound}",
                          record=i + 1, field=name)
    if (np.any(self.domain[0] != 0) or np.any(self.category[0] != 0) or np.any(self.tags[0])
        or self.kind[0] != 0 or np.any(self.pre_extracted[0] != 0)):
      raise DataError(path, "row 0 must be the all-zero padding item", record=0)

  def save(self, directory: str) -> str:
    """Writes items.npz and a manifest with its checksum; atomic (tmp file + rename)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, STORE_FILE)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **self.columns())
    os.replace(tmp, path)
    manifest = {"file": STORE_FILE, "bytes": os.path.getsize(path), "sha256": _sha256(path),
                "num_items": self.num_items, "visual_dim": self.visual_dim}
    with open(os.path.join(directory, STORE_MANIFEST), "w") as f:
      json.dump(manifest, f, indent=2)
    return path

  @classmethod
  def load(cls, directory: str, verify: bool = True) -> "ItemStore":
    path = os.path.join(directory, STORE_FILE)
    if not os.path.exists(path):
      raise DataError(path, "missing item feature store")
    if verify:
      mpath = os.path.join(directory, STORE_MANIFEST)
      if not os.path.exists(mpath):
        raise DataError(mpath, "missing manifest of the item store")
      with open(mpath) as f:
        manifest = json.load(f)
      if os.path.getsize(path) != manifest["bytes"] or _sha256(path) != manifest["sha256"]:
        raise DataError(path, "checksum or size differs from items.manifest.json: the file "
                        "is damaged or was changed after writing")
    try:
      with np.load(path, allow_pickle=False) as z:
        missing = [c for c in _COLUMNS if c not in z.files and c not in _OPTIONAL_COLUMNS]
        if missing:
          raise DataError(path, f"missing columns {missing}")
        return cls(**{c: z[c] for c in _COLUMNS if c in z.files})
    except (OSError, ValueError) as e:
      if isinstance(e, DataError):
        raise
      raise DataError(path, f"unreadable item store: {e}") from e


def _sha256(path: str, chunk: int = 1 << 22) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while True:
      b = f.read(chunk)
      if not b:
        return h.hexdigest()
      h.update(b)


def file_sha256(path: str) -> str:
  """Hex SHA-256 of a file, read in 4 MiB chunks."""
  return _sha256(path)


def verified_artefact(path: str, manifest_path: str, what: str, hint: str,
                      keys: Tuple[str, ...] = (), manifest_what: str = "") -> Dict[str, Any]:
  """The JSON manifest of a derived file beside a dataset (M5's metagraph, its CG table),
  after checking both exist and the file's size and sha256 match the manifest's "bytes" and
  "sha256"; `keys` are fields the manifest must hold; `manifest_what` names the manifest in
  errors (default "<what> manifest").

  Raises:
    DataError: a missing file, an unreadable manifest, or a damaged or changed file, naming it
      (`hint`: how to rebuild it).
  """
  manifest_what = manifest_what or f"{what} manifest"
  if not os.path.exists(manifest_path):
    raise DataError(manifest_path, f"missing {manifest_what}: {hint}")
  if not os.path.exists(path):
    raise DataError(path, f"missing {what}: {hint}")
  try:
    with open(manifest_path) as f:
      manifest = json.load(f)
    size, digest = manifest["bytes"], manifest["sha256"]
    for key in keys:
      manifest[key]  # pylint: disable=pointless-statement (a KeyError names the field)
  except (ValueError, KeyError, TypeError) as e:
    raise DataError(manifest_path, f"unreadable {manifest_what}: {e}") from e
  if os.path.getsize(path) != size or file_sha256(path) != digest:
    raise DataError(path, f"size or sha256 differs from {os.path.basename(manifest_path)}: the "
                    f"file is damaged or was changed after writing; {hint}")
  return manifest
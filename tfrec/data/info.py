"""`dataset.json`: the vocabulary sizes and provenance of one dataset directory."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

from tfrec.data import schema
from tfrec.data.errors import DataError

INFO_FILE = "dataset.json"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Sizes of every id space of a dataset (ids must be < size; 0 is padding where noted).

  Attributes:
    name: dataset name, e.g. "synthetic/default" or "movielens/ml-1m".
    num_users: user ids are in [0, num_users).
    num_items: item ids are in [1, num_items]; row 0 of the item store is padding.
    num_scenarios: scenario ids are in [0, num_scenarios).
    num_categories: category ids in [1, num_categories] (0 padding).
    num_tags: tag ids in [1, num_tags] (0 padding).
    num_tokens: title token ids in [1, num_tokens] (0 padding).
    user_feature_sizes: vocabulary size of each of `schema.USER_FEATURE_NAMES`.
    visual_dim: width of the item store's visual vector (0: no visual modality).
    max_seq_len: the longest ranking / ccl_pair history of this dataset (per domain);
      matching sequences accept max(100, max_seq_len) (`schema.max_len_for`). Default
      `schema.MAX_SEQ_LEN` = 50, which is what a dataset.json written without it means.
    num_item_kinds: item-store `kind` ids are in [0, num_item_kinds]; 0 = no kind. Default 0
      (no kinds: every item 0, as in a store written without the column); an embedding over
      kinds needs num_item_kinds + 1 rows.
    extra: provenance (generator parameters, converter options, seed).
  """

  name: str
  num_users: int
  num_items: int
  num_scenarios: int
  num_categories: int
  num_tags: int
  num_tokens: int
  user_feature_sizes: Tuple[int, ...]
  visual_dim: int
  extra: Dict[str, Any] = dataclasses.field(default_factory=dict)
  schema_version: int = schema.SCHEMA_VERSION
  max_seq_len: int = schema.MAX_SEQ_LEN
  num_item_kinds: int = 0

  def __post_init__(self):
    if len(self.user_feature_sizes) != schema.NUM_USER_FEATURES:
      raise ValueError(f"user_feature_sizes needs {schema.NUM_USER_FEATURES} entries")
    if int(self.max_seq_len) < 1:
      raise ValueError(f"max_seq_len must be >= 1, not {self.max_seq_len}")
    if int(self.num_item_kinds) < 0:
      raise ValueError(f"num_item_kinds must be >= 0, not {self.num_item_kinds}")

  def max_len(self, f: schema.Field) -> int:
    """The longest sequence this dataset accepts in field `f` (`schema.max_len_for`)."""
    return schema.max_len_for(f, self.max_seq_len)

  def id_bounds(self, id_space: str) -> Optional[Tuple[int, int]]:
    """Inclusive (low, high) bounds of an id space, or None when it is unbounded."""
    bounds = {
        "user": (0, self.num_users - 1),
        "item": (0, self.num_items),
        "scenario": (0, self.num_scenarios - 1),
        "category": (0, self.num_categories),
        "tag": (0, self.num_tags),
        "token": (0, self.num_tokens),
        "domain": (0, 1),
        "item_kind": (0, self.num_item_kinds),
    }
    return bounds.get(id_space)

  def save(self, directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, INFO_FILE)
    with open(path + ".tmp", "w") as f:
      json.dump(dataclasses.asdict(self), f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
    return path

  @classmethod
  def load(cls, directory: str) -> "DatasetInfo":
    path = os.path.join(directory, INFO_FILE)
    if not os.path.exists(path):
      raise DataError(path, "missing: not a tfrec dataset directory (no dataset.json)")
    try:
      with open(path) as f:
        raw = json.load(f)
      raw["user_feature_sizes"] = tuple(raw["user_feature_sizes"])
      info = cls(**raw)
    except (ValueError, TypeError, KeyError) as e:
      raise DataError(path, f"unreadable dataset info: {e}") from e
    if info.schema_version != schema.SCHEMA_VERSION:
      raise DataError(path, f"schema version {info.schema_version}, this tfrec reads "
                      f"{schema.SCHEMA_VERSION}: regenerate or convert the dataset")
    return info

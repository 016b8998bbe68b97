"""Adding new items to an exported retrieval index from their features, without retraining
(issue 12 item 6):

    python -m tfrec.export --add_items=ITEMS.npz --from_export=serving/1 --export_dir=serving/2

ITEMS.npz holds one row per new item:

  item_id   <int>[n]               new ids: not in the index and no item the model knows
  category  <int>[n]               with the "category" item feature: in the dataset's
                                   [0, num_categories]
  visual    <float>[n, visual_dim] with the "visual" item feature: finite
  title     <int>[n, MAX_TITLE_LEN] with the "title" item feature: token ids in the dataset's
                                   vocabulary, 0 = padding
  tags      <int>[n, MAX_TAGS]     with the "tags" item feature (COUPLE, DeepCoNN, ICAN): tag
                                   ids in the dataset's vocabulary, 0 = padding
  domain, kind, tags, title        optional otherwise; checked against the dataset (domain must
                                   be the target domain, which the index holds; kind in
                                   [0, num_item_kinds]; tags / title in the tag / token
                                   vocabularies) though the item tower does not read them

The run's item tower encodes each new item from its features alone, so the model must have no
id embedding (`item_features` without "id": the same path that scores a cold item). The new
SavedModel is built from the old one's variables (its `model_variables`, copied into the run's
model rebuilt from config.json), its `item_table` grown by the new rows and its index by the
new ids; the old export is never edited, and the new one is written atomically
(`export.write_saved_model`). The old items' vectors and every old request's scores are
unchanged (tested).
"""

from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np
import tensorflow as tf

from tfrec import config as config_lib
from tfrec import runs
from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.models.retrieval import RetrievalModel
from tfrec.serving.export import read_export_info, write_saved_model
from tfrec.serving.retrieval import RetrievalServingModule

COLUMNS = ("item_id", "category", "visual", "domain", "kind", "tags", "title")


class NewItemError(ValueError):
  """A new item that cannot be added (its id or a feature); the message names both."""


def read_items(path: str) -> Dict[str, np.ndarray]:
  """The columns of ITEMS.npz (module docstring); unknown columns are refused."""
  with np.load(path, allow_pickle=False) as data:
    items = {k: data[k] for k in data.files}
  unknown = sorted(set(items) - set(COLUMNS))
  if unknown:
    raise NewItemError(f"{path}: unknown columns {unknown}; expected some of {list(COLUMNS)}")
  if "item_id" not in items:
    raise NewItemError(f"{path}: no item_id column")
  return items


def check_new_items(items: Dict[str, np.ndarray], model: RetrievalModel, info: DatasetInfo,
                    item_known: np.ndarray, index_ids: np.ndarray, source: str = "") -> None:
  """Raises NewItemError naming the first problem: a model with an id embedding, a duplicate or
  already known id, a missing column, a feature outside the dataset's vocabularies."""
  where = f"{source}: " if source else ""
  features = model.item_encoder.features
  if "id" in features:
    raise NewItemError(f"{where}the run's item tower has an id embedding (item_features "
                       f"{list(features)}): a new item has none; train the model without 'id' "
                       "to add items from their features")
  ids = np.asarray(items["item_id"])
  n = len(ids)
  if ids.ndim != 1 or n == 0 or not np.issubdtype(ids.dtype, np.integer):
    raise NewItemError(f"{where}item_id must be a non-empty integer vector; got {ids.dtype} "
                       f"{ids.shape}")
  if ids.min() < 1:
    raise NewItemError(f"{where}item_id {int(ids.min())} < 1 (0 is padding)")
  unique, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    raise NewItemError(f"{where}item_id repeats ids {unique[counts > 1][:10].tolist()}")
  in_index = np.isin(ids, index_ids)
  if in_index.any():
    raise NewItemError(f"{where}item_id {ids[in_index][:10].tolist()} already in the index")
  rows = len(item_known)
  known = np.zeros(n, bool)
  known[ids < rows] = item_known[ids[ids < rows]]
  if known.any():
    raise NewItemError(f"{where}item_id {ids[known][:10].tolist()} are items the model already "
                       "has (from its item store): give new items new ids")
  for name in COLUMNS[1:]:
    if name in items and len(items[name]) != n:
      raise NewItemError(f"{where}{name} has {len(items[name])} rows, item_id {n}")
  needed = {"category": "category", "visual": "visual", "title": "title", "tags": "tags"}
  for feature, column in needed.items():
    if feature in features and column not in items:
      raise NewItemError(f"{where}the item tower reads '{feature}': ITEMS needs a {column} "
                         "column")
  bounds = {"category": "category", "kind": "item_kind", "tags": "tag", "title": "token"}
  for column, space in bounds.items():
    if column not in items:
      continue
    values = np.asarray(items[column])
    low, high = info.id_bounds(space)
    bad = (values < low) | (values > high)
    if bad.any():
      row = int(np.argwhere(bad)[0][0])
      raise NewItemError(f"{where}item {int(ids[row])}: {column} {values[row].tolist()} outside "
                         f"the dataset's {space} ids [{low}, {high}]")
  if "domain" in items and (np.asarray(items["domain"]) != schema.TARGET).any():
    row = int(np.argwhere(np.asarray(items["domain"]) != schema.TARGET)[0][0])
    raise NewItemError(f"{where}item {int(ids[row])}: domain {int(items['domain'][row])}; the "
                       f"index holds target-domain items (domain {schema.TARGET})")
  if "visual" in items:
    visual = np.asarray(items["visual"])
    if visual.shape != (n, info.visual_dim):
      raise NewItemError(f"{where}visual has shape {visual.shape}; the dataset's is "
                         f"({n}, {info.visual_dim})")
    bad = ~np.isfinite(visual).all(axis=1)
    if bad.any():
      raise NewItemError(f"{where}item {int(ids[np.argmax(bad)])}: visual is not finite")


def encode_features(model: RetrievalModel, items: Dict[str, np.ndarray]) -> np.ndarray:
  """<float32>[n, d] the item encoder's output for items given by their features
  (`ItemEncoder.encode_features`, or a subclass's: DeepCoNN's tag CNN; what it computes from
  its store columns for a known id; `check_new_items` refuses an encoder with an id
  embedding)."""
  enc = model.item_encoder
  columns = {f: np.asarray(items[f]) for f in ("category", "visual", "title", "tags")
             if f in enc.features}
  return tf.cast(enc.encode_features(columns), tf.float32).numpy()


def model_of_export(export_dir: str) -> Any:
  """(model, loaded SavedModel, export info, DatasetInfo): the run's model rebuilt from its
  config.json and dataset, holding the export's own weights (copied from its
  `model_variables`)."""
  meta = read_export_info(export_dir)
  cfg = config_lib.RunConfig.load(meta["run_dir"])
  info = DatasetInfo.load(meta["data_dir"])
  model = runs.build_model(cfg, info, ItemStore.load(meta["data_dir"]))
  if not isinstance(model, RetrievalModel):
    raise ValueError(f"{export_dir} serves a {meta.get('model')} ranking model; items are added "
                     "to retrieval exports only")
  loaded = tf.saved_model.load(export_dir)
  saved = list(loaded.model_variables)
  ours = list(model.variables)
  if len(saved) != len(ours) or any(a.shape != b.shape for a, b in zip(saved, ours)):
    raise ValueError(f"{export_dir}: its variables do not match the model that "
                     f"{meta['run_dir']}/config.json builds (the run or dataset changed since)")
  for mine, theirs in zip(ours, saved):
    mine.assign(theirs)
  return model, loaded, meta, info


def add_items(from_export: str, items_path: str, export_dir: str,
              overwrite: bool = False) -> str:
  """Writes `export_dir`: the retrieval export `from_export` with the items of `items_path`
  added to its index (module docstring). Returns export_dir.

  Raises:
    NewItemError: a new item that cannot be added (named).
    ValueError: `export_dir` is `from_export` (exports are never edited in place).
    FileNotFoundError: `from_export` lacks `assets.extra/tfrec_export.json`.
  """
  if os.path.realpath(from_export.rstrip("/")) == os.path.realpath(export_dir.rstrip("/")):
    raise ValueError(f"--export_dir {export_dir} is --from_export: write a new version "
                     "directory (an export is never edited in place)")
  items = read_items(items_path)
  model, loaded, meta, info = model_of_export(from_export)
  table = loaded.item_table.numpy()
  known = loaded.item_known.numpy()
  index_ids = loaded.index_ids.numpy()
  check_new_items(items, model, info, known, index_ids, source=items_path)
  ids = np.asarray(items["item_id"], np.int64)
  rows = max(len(table), int(ids.max()) + 1)
  table = np.concatenate([table, np.zeros([rows - len(table), table.shape[1]], np.float32)])
  known = np.concatenate([known, np.zeros(rows - len(known), bool)])
  table[ids] = encode_features(model, items)
  known[ids] = True
  tags = None
  if "tags" in model.item_encoder.features:  # the tags a history item is read by, grown alike
    held = getattr(loaded, "item_tags", None)
    tags = held.numpy() if held is not None else model.item_encoder.item_tags.numpy()
    tags = np.concatenate([tags, np.zeros([rows - len(tags), tags.shape[1]], tags.dtype)])
    new_tags = np.asarray(items["tags"], tags.dtype)
    tags[ids] = 0
    tags[ids, :new_tags.shape[1]] = new_tags[:, :tags.shape[1]]
  module = RetrievalServingModule(model, np.concatenate([index_ids, ids]),
                                  max_len=int(loaded.max_request_len.numpy()),
                                  item_table=table, item_known=known, item_tags=tags)
  info_out = dict(meta, from_export=os.path.abspath(from_export),
                  added_items=int(meta.get("added_items", 0)) + len(ids),
                  index_items=len(index_ids) + len(ids))
  return write_saved_model(module, export_dir, overwrite=overwrite, info=info_out)


__all__ = ["COLUMNS", "NewItemError", "add_items", "check_new_items", "encode_features",
           "model_of_export", "read_items"]

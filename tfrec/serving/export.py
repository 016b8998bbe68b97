"""Writing a model's serving SavedModel atomically, from a model or from a run directory: a
ranking model's `ServingModule` (rank, score) or a retrieval model's `RetrievalServingModule`
(retrieve, encode_query, with the item index inside).

`export_run` passes the dataset's longest request history (`schema.max_len_for`: ranking
histories = max_seq_len, matching sequences = max(100, max_seq_len)) and records where the export
came from in `assets.extra/tfrec_export.json` (run, checkpoint, data, max_len; TensorFlow
Serving ignores `assets.extra`), which `tfrec.serving.add_items` reads.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from tfrec import runs
from tfrec.data import schema
from tfrec.models.base import RankingModel
from tfrec.models.retrieval import RetrievalModel
from tfrec.serving.module import ServingModule
from tfrec.serving.retrieval import RetrievalServingModule


def check_exportable(model_cls: type, name: str = "") -> None:
  """Raises ValueError unless models of `model_cls` can be exported (`EXPORTABLE`: ranking and
  retrieval models; a pre-training model such as CCL scores nothing)."""
  if not getattr(model_cls, "EXPORTABLE", False):
    raise ValueError(f"--export_dir: {name or model_cls.__name__} "
                     f"({getattr(model_cls, 'RECORD_KIND', '?')} records) is not an exportable "
                     "ranking or retrieval model (a pre-training model serves nothing: export "
                     "the model that initialises from it)")


def check_export_dir(export_dir: str, overwrite: bool = False) -> None:
  """Raises FileExistsError if `export` would refuse `export_dir` (call it before training)."""
  if (not overwrite and tf.io.gfile.exists(export_dir)
      and tf.io.gfile.listdir(export_dir)):
    raise FileExistsError(f"{export_dir} exists and is not empty; remove it, choose another "
                          "version directory, or pass --overwrite (overwrite=True)")


EXPORT_INFO = os.path.join("assets.extra", "tfrec_export.json")


def read_export_info(export_dir: str) -> Dict[str, Any]:
  """The `assets.extra/tfrec_export.json` of an export (written by `export_run`).

  Raises:
    FileNotFoundError: naming the file (an export written by `export` alone, or before it).
  """
  path = os.path.join(export_dir, EXPORT_INFO)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} is missing: {export_dir} was not written by "
                            "tfrec.export --run_dir (or predates it); export the run again")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def export(model: RankingModel, export_dir: str, overwrite: bool = False,
           index_ids: Optional[np.ndarray] = None, max_len: Optional[int] = None,
           info: Optional[Dict[str, Any]] = None) -> str:
  """Writes `model`'s serving SavedModel (ranking: rank, score, serving_default; retrieval:
  retrieve, encode_query, serving_default).

  Args:
    model: a built `RankingModel` or `RetrievalModel` (trained or restored).
    export_dir: the version directory to create, e.g. serving/semi/1.
    overwrite: replace an existing non-empty `export_dir`.
    index_ids: a retrieval model's index (default: every item).
    max_len: the longest request history (default: the contract's, 50 / 100).
    info: written as `assets.extra/tfrec_export.json`.

  Returns:
    export_dir (`write_saved_model`).
  """
  check_exportable(type(model))
  check_export_dir(export_dir.rstrip("/") or export_dir, overwrite)  # before the module's work
  kwargs = {} if max_len is None else {"max_len": int(max_len)}
  module = (RetrievalServingModule(model, index_ids, **kwargs)
            if isinstance(model, RetrievalModel) else ServingModule(model, **kwargs))
  return write_saved_model(module, export_dir, overwrite, info)


def write_saved_model(module: tf.Module, export_dir: str, overwrite: bool = False,
                      info: Optional[Dict[str, Any]] = None) -> str:
  """Saves `module` (with its `signatures()`) as the SavedModel `export_dir`, atomically.

  The SavedModel is written to `<export_dir>.incomplete` and renamed when complete, so a failed
  export leaves nothing at `export_dir` (TensorFlow Serving polls a base path and would load a
  half-written version directory).

  Raises:
    FileExistsError: `export_dir` exists, is not empty, and `overwrite` is False.
  """
  export_dir = export_dir.rstrip("/") or export_dir
  check_export_dir(export_dir, overwrite)
  existing = tf.io.gfile.exists(export_dir)
  tmp = export_dir + ".incomplete"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)  # left by an export that crashed
  try:
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    if info is not None:
      tf.io.gfile.makedirs(os.path.join(tmp, os.path.dirname(EXPORT_INFO)))
      with tf.io.gfile.GFile(os.path.join(tmp, EXPORT_INFO), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    if existing:
      old = export_dir + ".replaced"
      if tf.io.gfile.exists(old):
        tf.io.gfile.rmtree(old)
      tf.io.gfile.rename(export_dir, old)
      tf.io.gfile.rename(tmp, export_dir)
      tf.io.gfile.rmtree(old)
    else:
      tf.io.gfile.rename(tmp, export_dir)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
  logging.info("exported %s: signatures %s", export_dir, ", ".join(module.signatures()))
  return export_dir


def export_run(run_dir: str, export_dir: str, checkpoint: str = "best",
               data_dir: Optional[str] = None, overwrite: bool = False) -> str:
  """Rebuilds a run's model (its config.json), loads a checkpoint and exports it.

  Args:
    run_dir: a run directory written by `python -m tfrec.train`.
    export_dir: see `export`.
    checkpoint: "best" or "final" of the run directory (exactly that one), or a checkpoint
      prefix (`runs.checkpoint_path`).
    data_dir: the dataset (item store) to fill the model with; None: the run's.
    overwrite: see `export`.
  """
  model, cfg, info, store = runs.restore_model(run_dir, checkpoint, data_dir=data_dir)
  check_exportable(type(model))
  retrieval = isinstance(model, RetrievalModel)
  # A retrieval model's index: every target-domain item (cold ones included: their vectors
  # come from the item store's features).
  index = store.item_ids(domain=schema.TARGET) if retrieval else None
  field = (schema.MATCHING.field("seq_item_ids") if retrieval
           else schema.RANKING.field("target_item_ids"))
  max_len = info.max_len(field)
  meta = {"run_dir": os.path.abspath(run_dir), "checkpoint": checkpoint,
          "data_dir": os.path.abspath(data_dir or cfg.data.data_dir), "model": cfg.model.name,
          "max_len": max_len, "index_items": None if index is None else len(index)}
  return export(model, export_dir, overwrite=overwrite, index_ids=index, max_len=max_len,
                info=meta)

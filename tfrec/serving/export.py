"""Writing a model's serving SavedModel atomically, from a model or from a run directory: a
ranking model's `ServingModule` (rank, score) or a retrieval model's `RetrievalServingModule`
(retrieve, with the item index inside)."""

from __future__ import annotations

from typing import Optional

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


def export(model: RankingModel, export_dir: str, overwrite: bool = False,
           index_ids: Optional[np.ndarray] = None) -> str:
  """Writes `model`'s serving SavedModel (signatures rank, score, serving_default).

  The SavedModel is written to `<export_dir>.incomplete` and renamed when complete, so a failed
  export leaves nothing at `export_dir` (TensorFlow Serving polls a base path and would load a
  half-written version directory).

  Args:
    model: a built `RankingModel` (trained or restored).
    export_dir: the version directory to create, e.g. serving/semi/1.
    overwrite: replace an existing non-empty `export_dir`.

  Returns:
    export_dir.

  Raises:
    FileExistsError: `export_dir` exists, is not empty, and `overwrite` is False.
  """
  export_dir = export_dir.rstrip("/") or export_dir
  check_exportable(type(model))
  check_export_dir(export_dir, overwrite)
  existing = tf.io.gfile.exists(export_dir)
  tmp = export_dir + ".incomplete"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)  # left by an export that crashed
  try:
    module = (RetrievalServingModule(model, index_ids) if isinstance(model, RetrievalModel)
              else ServingModule(model))
    tf.saved_model.save(module, tmp, signatures=module.signatures())
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
  model, _, _, store = runs.restore_model(run_dir, checkpoint, data_dir=data_dir)
  check_exportable(type(model))
  # A retrieval model's index: every target-domain item (cold ones included: their vectors
  # come from the item store's features).
  index = store.item_ids(domain=schema.TARGET) if isinstance(model, RetrievalModel) else None
  return export(model, export_dir, overwrite=overwrite, index_ids=index)

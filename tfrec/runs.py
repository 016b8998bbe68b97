"""What train, evaluate and export share: building a model for a dataset, restoring it from a run
directory, and the readers of a run's splits."""

from __future__ import annotations

import os
from typing import Optional, Tuple

import tensorflow as tf

from tfrec import config as config_lib
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.pipeline import Reader, ReadOptions
from tfrec.models import registry
from tfrec.models.base import RankingModel


def build_model(cfg: config_lib.RunConfig, info: DatasetInfo, store: ItemStore) -> RankingModel:
  """Builds `cfg.model` for the dataset (sizes from `info`), with weights and the item store.

  Item features default to what the dataset has: "visual" only when the store has vectors.
  """
  kwargs = dict(cfg.model.kwargs)
  if "item_features" not in kwargs:
    kwargs["item_features"] = ["id", "category"] + (["visual"] if info.visual_dim else [])
  model = registry.build(cfg.model.name, num_items=info.num_items,
                         num_categories=info.num_categories, visual_dim=info.visual_dim,
                         max_seq_len=cfg.data.max_seq_len, **kwargs)
  return model.build_and_fill(store)


CHECKPOINTS = ("best", "final")


def checkpoint_path(run_dir: str, which: str = "best") -> str:
  """The checkpoint prefix `which` of a run: "best" or "final" (exactly that one, never the
  other: results record which weights they come from), or a checkpoint prefix itself.

  Raises:
    FileNotFoundError: naming the missing checkpoint and what the run holds (never a silent
      fresh start or a silent substitute).
  """
  if which in CHECKPOINTS:
    paths = config_lib.run_paths(run_dir)
    path = paths[which]
    if not tf.io.gfile.exists(path + ".index"):
      have = [w for w in CHECKPOINTS if tf.io.gfile.exists(paths[w] + ".index")]
      raise FileNotFoundError(
          f"{path}: no '{which}' checkpoint in {run_dir} (it has: {', '.join(have) or 'none'}"
          f"{'' if have else '; has the run finished an epoch?'})")
    return path
  if not tf.io.gfile.exists(which + ".index"):
    raise FileNotFoundError(f"{which}: not a checkpoint prefix (no {which}.index); a "
                            f"checkpoint is one of {' | '.join(CHECKPOINTS)} | a path prefix")
  return which


def restore_model(run_dir: str, which: str = "best", data_dir: Optional[str] = None
                  ) -> Tuple[RankingModel, config_lib.RunConfig, DatasetInfo, ItemStore]:
  """Rebuilds a run's model from its `config.json` and loads its `which` checkpoint
  (best | final | a checkpoint prefix, see `checkpoint_path`)."""
  cfg = config_lib.RunConfig.load(run_dir)
  data_dir = data_dir or cfg.data.data_dir
  info, store = DatasetInfo.load(data_dir), ItemStore.load(data_dir)
  model = build_model(cfg, info, store)
  path = checkpoint_path(run_dir, which)
  # Training checkpoints also hold optimizer slots, which an inference model does not need.
  model.load_weights(path).assert_existing_objects_matched().expect_partial()
  return model, cfg, info, store


def reader(cfg: config_lib.RunConfig, split: str, training: bool,
           info: Optional[DatasetInfo] = None, with_provenance: bool = False) -> Reader:
  """The ranking reader of `split` with the run's options (shuffled when `training`)."""
  d = cfg.data
  max_lens = {f"{dom}_{f}": d.max_seq_len for dom in ("source", "target")
              for f in ("item_ids", "timestamps")}
  opts = ReadOptions(max_lens=max_lens, shuffle_buffer=d.shuffle_buffer if training else 0,
                     seed=cfg.train.seed, deterministic=True, on_bad_record=d.on_bad_record,
                     verify_checksums=d.verify_checksums, with_provenance=with_provenance)
  return Reader(d.data_dir, "ranking", split, opts, info=info)


def split_label(batch):
  """Reader batch -> (features, <float32>[batch] label) for Keras `fit`."""
  features = dict(batch)
  label = tf.cast(features.pop("label"), tf.float32)
  return features, label


def exists(path: str) -> bool:
  return bool(path) and os.path.exists(path)

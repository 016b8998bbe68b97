"""What train, evaluate and export share: building a model for a dataset, restoring it from a run
directory, and the readers of a run's splits."""

from __future__ import annotations

import collections
import os
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec import config as config_lib
from tfrec.data import schema
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.pipeline import Reader, ReadOptions
from tfrec.models import registry
from tfrec.models.base import RankingModel


# A model argument naming a file beside the dataset (M5's `cg_init`) may be this word: the run's
# own --data_dir, so one flagfile serves every dataset (the reproduction's worlds and sweeps).
DATASET_DIR = "dataset"


def build_model(cfg: config_lib.RunConfig, info: DatasetInfo, store: ItemStore) -> RankingModel:
  """Builds `cfg.model` for the dataset (sizes from `info`), with weights and the item store.

  Item features default to what the dataset has ("visual" only when the store has vectors),
  unless the model's registration fixes them (THACIL: visual + category, no id).
  `cg_init=dataset` (`DATASET_DIR`) reads the CG embeddings beside `cfg.data.data_dir`.
  """
  kwargs = dict(cfg.model.kwargs)
  if "item_features" not in kwargs and "item_features" not in registry.get(cfg.model.name).preset:
    kwargs["item_features"] = ["id", "category"] + (["visual"] if info.visual_dim else [])
  if "user_feature_sizes" in registry.accepted_args(registry.get(cfg.model.name).cls):
    kwargs["user_feature_sizes"] = list(info.user_feature_sizes)  # the dataset's vocabularies
  if "num_users" in registry.accepted_args(registry.get(cfg.model.name).cls):
    kwargs["num_users"] = info.num_users  # trained user embeddings (MF, BPR, NCF)
  if "num_tokens" in registry.accepted_args(registry.get(cfg.model.name).cls):
    kwargs["num_tokens"] = info.num_tokens  # the title vocabulary ("title" item feature)
  if "num_tags" in registry.accepted_args(registry.get(cfg.model.name).cls):
    kwargs["num_tags"] = info.num_tags  # the tag vocabulary ("tags" item feature, COUPLE)
  if "pre_extracted_dim" in registry.accepted_args(registry.get(cfg.model.name).cls):
    kwargs["pre_extracted_dim"] = store.pre_extracted_dim  # ("pre_extracted" item feature)
  if "num_scenarios" in registry.accepted_args(registry.get(cfg.model.name).cls):
    kwargs["num_scenarios"] = info.num_scenarios  # scenario-aware towers (M5)
  if "num_item_kinds" in registry.accepted_args(registry.get(cfg.model.name).cls):
    kwargs["num_item_kinds"] = info.num_item_kinds  # behaviour buckets by item kind (M5)
  if kwargs.get("cg_init") == DATASET_DIR:  # M5's CG table pre-trained beside the run's data
    kwargs["cg_init"] = cfg.data.data_dir
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


def restore_model(run_dir: str, which: str = "best", data_dir: Optional[str] = None,
                  ranking_only: bool = False
                  ) -> Tuple[RankingModel, config_lib.RunConfig, DatasetInfo, ItemStore]:
  """Rebuilds a run's model from its `config.json` and loads its `which` checkpoint
  (best | final | a checkpoint prefix, see `checkpoint_path`).

  Raises:
    ValueError: `ranking_only` and the run is a pre-training run (CCL), which scores nothing.
  """
  cfg = config_lib.RunConfig.load(run_dir)
  if ranking_only and not issubclass(registry.get(cfg.model.name).cls, RankingModel):
    raise ValueError(f"{run_dir} holds a {cfg.model.name} run ({record_kind(cfg)} records), "
                     "not a ranking model: tfrec.evaluate and tfrec.export handle ranking "
                     "models (a pre-training run is evaluated through the ranking run that "
                     "initialises from it, --init_from)")
  data_dir = data_dir or cfg.data.data_dir
  info, store = DatasetInfo.load(data_dir), ItemStore.load(data_dir)
  model = build_model(cfg, info, store)
  path = checkpoint_path(run_dir, which)
  # Training checkpoints also hold optimizer slots, which an inference model does not need.
  model.load_weights(path).assert_existing_objects_matched().expect_partial()
  return model, cfg, info, store


def record_kind(cfg: config_lib.RunConfig) -> str:
  """The record kind the run's model trains on: "ranking", or "ccl_pair" for CCL."""
  return registry.record_kind(cfg.model.name)


def reader(cfg: config_lib.RunConfig, split: str, training: bool,
           info: Optional[DatasetInfo] = None, with_provenance: bool = False,
           kind: str = "ranking") -> Reader:
  """The `kind` reader of `split` with the run's options (shuffled when `training`)."""
  d = cfg.data
  max_lens = {f"{dom}_{f}": d.max_seq_len for dom in ("source", "target")
              for f in ("item_ids", "timestamps")}
  if kind == "matching":  # the mixed-domain behaviour sequence, newest kept
    max_lens = {f: d.max_seq_len for f in ("seq_item_ids", "seq_domain_ids", "seq_timestamps",
                                           "seq_subsidiary")}
  fields = {f.name for f in schema.KINDS[kind].fields}  # dual_pair: no sequence at all
  max_lens = {name: n for name, n in max_lens.items() if name in fields}
  opts = ReadOptions(max_lens=max_lens, shuffle_buffer=d.shuffle_buffer if training else 0,
                     seed=cfg.train.seed, deterministic=True, on_bad_record=d.on_bad_record,
                     verify_checksums=d.verify_checksums, with_provenance=with_provenance,
                     source_keep=d.source_share if training else 1.0)
  return Reader(d.data_dir, kind, split, opts, info=info)


def split_label(batch):
  """Reader batch -> (features, <float32>[batch] label) for Keras `fit`."""
  features = dict(batch)
  label = tf.cast(features.pop("label"), tf.float32)
  return features, label


def init_from(model: keras.Model, source: str, layers: Optional[Sequence[str]] = None
              ) -> Tuple[List[str], List[str]]:
  """Initialises `model`'s layers from another run (its best checkpoint) or a checkpoint prefix.

  Each direct layer of `model` (by attribute name, as checkpoints key them) that the checkpoint
  holds is restored completely; the rest keep their initial values, and nothing else is read:
  not the other run's optimizer (its step count and slots would otherwise be restored into
  this run's optimizer by deferred restoration) and not layers this model lacks (CCL's key
  encoders and queues). `model.required_init_parts()`, when defined, names layers that must
  be restored (SEMI: the sequence encoders CCL pre-trains).

  Returns:
    (restored layer names, layer names left at their initial values).

  Raises:
    ValueError: a required layer is missing from the checkpoint, or a layer's variables do not
      all match (different sizes: the runs must share dim, heads, features...).
  """
  path = checkpoint_path(source, "best" if os.path.isdir(source) else source)
  values = [k for k in tf.train.load_checkpoint(path).get_variable_to_shape_map()
            if k.endswith("/.ATTRIBUTES/VARIABLE_VALUE") and ".OPTIMIZER_SLOT" not in k]
  saved = collections.Counter(k.split("/", 1)[0] for k in values)  # layer -> variables
  parts = {name: obj for name, obj in model._trackable_children(save_type="checkpoint").items()
           if isinstance(obj, keras.layers.Layer) and obj.weights}
  required = tuple(getattr(model, "required_init_parts", lambda: ())())
  if layers is not None:
    unknown = sorted(set(layers) - set(parts))
    if unknown:
      raise ValueError(f"--init_layers: {model.name} has no layers {unknown}; it has "
                       f"{sorted(parts)}")
    parts = {n: parts[n] for n in layers}
    required = tuple(layers)
  missing = [n for n in required if n not in saved or n not in parts]
  if missing:
    raise ValueError(f"--init_from={source}: {path} lacks {missing} (it holds "
                     f"{sorted(saved)}); {model.name} needs them, e.g. a CCL run for SEMI")
  restored = sorted(n for n in parts if n in saved)
  if not restored:
    raise ValueError(f"--init_from={source}: {path} holds none of {model.name}'s layers "
                     f"{sorted(parts)}")
  unlike = {n: (saved[n], len(parts[n].weights)) for n in restored
            if saved[n] != len(parts[n].weights)}
  if unlike:
    raise ValueError(f"--init_from={source}: layers differ in their variables (checkpoint, "
                     f"model): {unlike}; the runs must share item features and block options")
  root = tf.Module()  # the chosen layers under their checkpoint names, nothing else
  for n in restored:
    setattr(root, n, parts[n])
  try:  # a shape mismatch raises here
    tf.train.Checkpoint(root=root).restore(path).expect_partial()
  except (ValueError, tf.errors.InvalidArgumentError) as e:
    raise ValueError(f"--init_from={source}: {path} does not fit {model.name}'s layers "
                     f"{restored} (different sizes?): {e}") from None
  return restored, sorted(set(parts) - set(restored))


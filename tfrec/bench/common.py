"""What the benchmarks share: flag definition across bench modules, a random item store, and a
registered model at benchmark sizes."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from absl import flags
import numpy as np

from tfrec.data import schema
from tfrec.data.item_store import ItemStore
from tfrec.models import registry
from tfrec.models.base import RankingModel

FLAGS = flags.FLAGS


def check_no_arguments(argv: Sequence[str]) -> None:
  """Raises ValueError on positional arguments (a bench takes --name=value flags only)."""
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {list(argv[1:])} (flags are --name=value)")


def define(kind: str, name: str, default: Any, help_text: str, **kwargs: Any) -> None:
  """Defines a flag unless another bench module loaded in this process already did (the bench
  modules share `model`, `seq`, `dim`, `heads`, `ff_dim`, `items`, `categories`, `seed` with
  the same meaning and default)."""
  if name not in FLAGS:
    getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text, **kwargs)


# Title vocabulary of the random store: titles of 4..MAX_TITLE_LEN words (ADAPT's T features).
NUM_TOKENS = 5000


def random_titles(num_items: int, seed: int) -> np.ndarray:
  """<int64>[num_items + 1, MAX_TITLE_LEN] titles of 4..MAX_TITLE_LEN random words in
  [1, NUM_TOKENS], 0-padded; row 0 (padding) empty."""
  rng = np.random.default_rng([seed, 1])
  words = rng.integers(1, NUM_TOKENS + 1, [num_items, schema.MAX_TITLE_LEN])
  length = rng.integers(4, schema.MAX_TITLE_LEN + 1, [num_items, 1])
  words[np.arange(schema.MAX_TITLE_LEN)[None, :] >= length] = 0
  return np.r_[np.zeros([1, schema.MAX_TITLE_LEN], np.int64), words]


def random_item_store(num_items: int, num_categories: int, visual_dim: int,
                      seed: int) -> ItemStore:
  """Random in-memory store: ids 1..num_items//2 source, the rest target; row 0 padding. The
  pre-extracted vectors (SEMI's paper inputs, `item_features=[pre_extracted]`) are the visual
  vectors' width; titles from `random_titles` (their own stream: the other columns do not
  depend on them)."""
  rng = np.random.default_rng(seed)
  n, half = num_items + 1, num_items // 2
  return ItemStore(
      pre_extracted=np.r_[np.zeros([1, visual_dim]),
                          rng.normal(size=[num_items, visual_dim])].astype(np.float32),
      domain=np.r_[0, np.zeros(half), np.ones(num_items - half)],
      category=np.r_[0, rng.integers(1, num_categories + 1, num_items)],
      tags=np.zeros([n, schema.MAX_TAGS]), title=random_titles(num_items, seed),
      visual=np.r_[np.zeros([1, visual_dim]),
                   rng.normal(size=[num_items, visual_dim])].astype(np.float32),
      cold=np.zeros(n))


def build_model(name: str, store: ItemStore, num_categories: int, seq: int, dim: int,
                heads: int, ff_dim: int, dropout: Optional[float] = None,
                item_features: Optional[Sequence[str]] = None,
                model_args: Sequence[str] = ()) -> RankingModel:
  """Registered model `name` at the given sizes with `store` filled in. Arguments a model does
  not take (DIN, YouTubeNet: no heads) are left out; None: the model's default. `model_args`:
  `--model_args` texts as `tfrec.train` takes them (e.g. SEMI's paper inputs,
  "item_features=[pre_extracted],attention_dropout=0"), applied last; names only other models
  take are skipped."""
  from tfrec.models import model_args as model_args_lib
  args = dict(num_items=store.num_items, dim=dim, num_categories=num_categories,
              visual_dim=store.visual_dim, max_seq_len=seq, num_heads=heads, ff_dim=ff_dim,
              dropout=dropout, item_features=item_features,
              pre_extracted_dim=store.pre_extracted_dim, num_tokens=NUM_TOKENS)
  accepted = registry.accepted_args(registry.get(name).cls)
  args = {k: v for k, v in args.items() if k in accepted}
  if model_args:
    args.update(model_args_lib.resolve(name, model_args_lib.parse(model_args))[0])
  model = registry.build(name, **args)
  return model.build_and_fill(store)

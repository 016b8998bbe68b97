"""The synthetic world's items: topics, categories, popularity, tags, titles, visual vectors,
kinds, and the storytelling -> product mounting of dual pairs (ADAPT §III-D).

Id layouts (0 is padding everywhere):
  items      1..Ns are source items, Ns+1..Ns+Nt target items.
  categories topic k owns categories k*C+1 .. k*C+C (C = categories_per_topic).
  tags       topic k owns a block of P_sh + 2*P_ex ids: P_sh tags shared by both domains,
             then P_ex source-only and P_ex target-only tags, with P = P_sh + P_ex tags per
             topic and domain and P_sh = round(tag_overlap * P); after the topic blocks,
             `category_tags` ids per category (COUPLE's category-specific tags).
  tokens     1..F function words (target titles only), then per topic a block of
             S shared, Ks source keyword and Kt target tokens.
  kinds      0 = none; 1..K for target items when `item_kind_transfer` has K entries.

Every knob added after the first version draws from its own stream (`_stream`), so its
default leaves every earlier draw, and so the world, as it was.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from tfrec.data import schema
from tfrec.data.item_store import ItemStore
from tfrec.datasets.synthetic.config import SyntheticConfig

SOURCE_TITLE_LEN = (3, 6)    # inclusive range of keyword-list title lengths.
TARGET_TITLE_LEN = (8, 16)   # inclusive range of natural-language title lengths.
MIN_TAGS = 2
# Third word of the world's own streams ([seed, 0xFFFFFFFF, key]) for the later knobs.
_TOPIC_DIVERGENCE_KEY = 0xD1E5
_CATEGORY_TAG_KEY = 0xCA7A
_KIND_KEY = 0x0C1D
_TITLE_COPY_KEY = 0x7C09
_DUAL_SPLIT_KEY = 0xD5A1
_COPY_CONCENTRATION = 1.0  # k of the stories' copy rates ~ Beta(c k, (1 - c) k).


def stream(cfg: SyntheticConfig, key: int) -> np.random.Generator:
  """A world-level random stream of its own (never one of the first version's streams)."""
  return np.random.default_rng([cfg.seed, 0xFFFFFFFF, key])


def item_topics(cfg: SyntheticConfig, rng: np.random.Generator, n: int,
                topic_probs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Topic (0-based) and category (1-based, inside the topic) of `n` items: [n], [n]."""
  topic = rng.choice(cfg.num_topics, size=n, p=topic_probs)
  category = topic * cfg.categories_per_topic + rng.integers(0, cfg.categories_per_topic, n) + 1
  return topic.astype(np.int64), category.astype(np.int64)


def target_topic_probs(cfg: SyntheticConfig, topic_probs: np.ndarray) -> np.ndarray:
  """The target items' topic distribution: (1 - delta) pi + delta pi', pi' ~ Dir(5) from its
  own stream (`topic_popularity_divergence` = delta; pi itself when delta = 0)."""
  delta = cfg.topic_popularity_divergence
  if delta <= 0:
    return topic_probs
  other = stream(cfg, _TOPIC_DIVERGENCE_KEY).dirichlet(np.full(cfg.num_topics, 5.0))
  mixed = (1.0 - delta) * topic_probs + delta * other
  return mixed / mixed.sum()


def popularity(cfg: SyntheticConfig, rng: np.random.Generator, n: int) -> np.ndarray:
  """<float64>[n] power-law popularity over a random ranking, summing to 1."""
  pop = (1.0 + rng.permutation(n)) ** -cfg.popularity_exponent
  return pop / pop.sum()


def tag_table(cfg: SyntheticConfig) -> np.ndarray:
  """<int64>[num_topics, 2, P] tag ids of each topic in each domain (shared ones first)."""
  shared = cfg.shared_tags_per_topic
  excl = cfg.tags_per_topic - shared
  block = shared + 2 * excl
  table = np.zeros((cfg.num_topics, 2, cfg.tags_per_topic), np.int64)
  for k in range(cfg.num_topics):
    base = 1 + k * block
    common = np.arange(base, base + shared)
    table[k, 0] = np.concatenate([common, np.arange(base + shared, base + shared + excl)])
    table[k, 1] = np.concatenate([common, np.arange(base + shared + excl, base + block)])
  return table


def category_tag_base(cfg: SyntheticConfig) -> int:
  """The first category-specific tag id is `base + (c - 1) * category_tags + 1` for c >= 1."""
  return cfg.num_tags - cfg.num_categories * cfg.category_tags


def item_tags(cfg: SyntheticConfig, rng: np.random.Generator, topic: np.ndarray,
              domain: int) -> np.ndarray:
  """<int64>[n, MAX_TAGS]: 2..8 distinct tags from each item's topic tag set, 0-padded."""
  n, width = len(topic), schema.MAX_TAGS
  per_topic = tag_table(cfg)[topic, domain]                       # [n, P]
  order = np.argsort(rng.random((n, cfg.tags_per_topic)), axis=1)[:, :width]
  chosen = np.take_along_axis(per_topic, order, axis=1)
  most = min(width, cfg.tags_per_topic)
  length = rng.integers(min(MIN_TAGS, most), most + 1, n)
  out = np.zeros((n, width), np.int64)
  out[:, :chosen.shape[1]] = chosen
  out[np.arange(width)[None, :] >= length[:, None]] = 0
  return out


def with_category_tags(cfg: SyntheticConfig, tags: np.ndarray,
                       category: np.ndarray) -> np.ndarray:
  """`tags` <int64>[n, MAX_TAGS] with each real tag replaced, w.p. `category_tag_share`, by a
  tag of the item's own category (distinct within an item: the replaced slots take a random
  permutation of the category's tags in order; beyond `category_tags` replacements the
  topic tag stays). Own stream; the input unchanged when the share is 0."""
  share, per = cfg.category_tag_share, cfg.category_tags
  if share <= 0 or per < 1:
    return tags
  rng = stream(cfg, _CATEGORY_TAG_KEY)
  n, width = tags.shape
  replace = (rng.random((n, width)) < share) & (tags > 0)
  order = np.argsort(rng.random((n, per)), axis=1)              # a permutation per item.
  rank = np.cumsum(replace, axis=1) - 1                          # k-th replaced slot -> k.
  replace &= rank < per
  pick = np.take_along_axis(order, np.clip(rank, 0, per - 1), axis=1)
  ids = category_tag_base(cfg) + (category[:, None] - 1) * per + pick + 1
  return np.where(replace, ids, tags)


def title_tokens(cfg: SyntheticConfig, rng: np.random.Generator, topic: np.ndarray,
                 domain: int) -> np.ndarray:
  """<int64>[n, MAX_TITLE_LEN] title tokens, 0-padded (see the module docstring's layout).

  Source: the topic's shared word w.p. title_source_shared_prob, else a source keyword.
  Target: a function word w.p. title_target_function_prob, a shared word w.p.
  title_target_shared_prob, else a target word of the topic.
  """
  n, width = len(topic), schema.MAX_TITLE_LEN
  base = (cfg.title_function_words + 1 + topic * cfg.tokens_per_topic)[:, None]
  shared = base + rng.integers(0, cfg.title_shared_tokens, (n, width))
  u = rng.random((n, width))
  if domain == schema.SOURCE:
    own = base + cfg.title_shared_tokens + rng.integers(0, cfg.title_source_tokens, (n, width))
    tokens = np.where(u < cfg.title_source_shared_prob, shared, own)
    low, high = SOURCE_TITLE_LEN
  else:
    off = cfg.title_shared_tokens + cfg.title_source_tokens
    own = base + off + rng.integers(0, cfg.title_target_tokens, (n, width))
    zipf = 1.0 / np.arange(1, cfg.title_function_words + 1)
    func = 1 + np.searchsorted(np.cumsum(zipf) / zipf.sum(), rng.random((n, width)))
    func = np.minimum(func, cfg.title_function_words)
    own_cut = 1.0 - cfg.title_target_shared_prob
    tokens = np.where(u < cfg.title_target_function_prob, func,
                      np.where(u < own_cut, own, shared))
    low, high = TARGET_TITLE_LEN
  length = rng.integers(low, high + 1, n)
  tokens[np.arange(width)[None, :] >= length[:, None]] = 0
  return tokens.astype(np.int64)


def visual(cfg: SyntheticConfig, rng: np.random.Generator, latent: np.ndarray,
           domain: np.ndarray, chunk: int = 8192) -> np.ndarray:
  """<float32>[n, visual_dim]: W_domain @ z + shift_domain + noise.

  W_target = r W_source + sqrt(1 - r^2) W' (r = `visual_relatedness`; W', W_source
  independent draws), so r = 0 leaves the domains' projections unrelated. Built in row chunks
  so that the peak memory stays near the float32 output.
  """
  v, d = cfg.visual_dim, cfg.latent_dim
  proj = rng.normal(0.0, 1.0 / np.sqrt(d), (2, v, d))
  r = cfg.visual_relatedness
  if r > 0:
    proj[1] = r * proj[0] + np.sqrt(1.0 - r * r) * proj[1]
  shift = rng.normal(0.0, cfg.visual_domain_shift, (2, v))
  out = np.empty((len(latent), v), np.float32)
  for lo in range(0, len(latent), chunk):
    z, dom = latent[lo:lo + chunk], domain[lo:lo + chunk]
    noise = rng.standard_normal((len(z), v), dtype=np.float32) * np.float32(cfg.visual_noise_std)
    signal = np.where(dom[:, None] == schema.SOURCE, z @ proj[0].T, z @ proj[1].T)
    out[lo:lo + chunk] = signal + shift[dom] + noise
  return out


def item_kinds(cfg: SyntheticConfig, domain: np.ndarray) -> np.ndarray:
  """<int64>[n] kind ~ U{1..K} for target items (own stream), 0 elsewhere; zeros if K = 0."""
  kinds = np.zeros(len(domain), np.int64)
  if cfg.num_item_kinds:
    drawn = stream(cfg, _KIND_KEY).integers(1, cfg.num_item_kinds + 1, len(domain))
    kinds = np.where(domain == schema.TARGET, drawn, 0)
    kinds[0] = 0
  return kinds


def make_store(cfg: SyntheticConfig, r_text: np.random.Generator, r_vis: np.random.Generator,
               domain: np.ndarray, category: np.ndarray, topic: np.ndarray,
               latent: np.ndarray, cold: np.ndarray, with_visual: bool = True) -> ItemStore:
  """The item store; row 0 (padding) is all zeros. `with_visual=False` leaves the visual
  column 0-wide (its stream is separate: every other column is the same)."""
  n = len(domain)
  tags = np.zeros((n, schema.MAX_TAGS), np.int64)
  title = np.zeros((n, schema.MAX_TITLE_LEN), np.int64)
  for d in (schema.SOURCE, schema.TARGET):
    rows = np.nonzero((domain == d) & (np.arange(n) > 0))[0]
    tags[rows] = item_tags(cfg, r_text, topic[rows], d)
    title[rows] = title_tokens(cfg, r_text, topic[rows], d)
  tags = with_category_tags(cfg, tags, category)
  tags[0] = 0
  if with_visual:
    vis = visual(cfg, r_vis, latent, domain)
  else:
    vis = np.zeros((n, 0), np.float32)
  vis[0] = 0.0
  return ItemStore(domain=domain, category=category, tags=tags, title=title, visual=vis,
                   cold=cold, kind=item_kinds(cfg, domain) if cfg.num_item_kinds else None)


def copy_product_words(cfg: SyntheticConfig, title: np.ndarray,
                       pairs: Sequence[Dict[str, int]]) -> None:
  """Replaces each token of a storytelling title by a random word of its first mounted
  product's title w.p. r_story, the story's own copy rate ~ Beta(c k, (1 - c) k) (mean c =
  `story_title_copy`, k = 1: some stories copy much, most little, as ADAPT Table II's
  two-humped histogram); in place, own stream, nothing when c = 0."""
  p = cfg.story_title_copy
  if p <= 0:
    return
  rng = stream(cfg, _TITLE_COPY_KEY)
  first: Dict[int, int] = {}
  for rec in pairs:
    first.setdefault(rec["target_item_id"], rec["source_item_id"])
  for story, product in sorted(first.items()):
    words = title[product][title[product] > 0]
    real = np.nonzero(title[story] > 0)[0]
    rate = rng.beta(p * _COPY_CONCENTRATION, (1.0 - p) * _COPY_CONCENTRATION) if p < 1 else 1.0
    if not len(words) or not len(real):
      continue
    copy = real[rng.random(len(real)) < rate]
    title[story, copy] = words[rng.integers(0, len(words), len(copy))]


def title_similarity(a: np.ndarray, b: np.ndarray) -> float:
  """ADAPT eq. 1: |W^s ∩ W^p| / min(|W^s|, |W^p|) over the two titles' word sets (0 ids
  ignored; 0 when a title is empty)."""
  sa, sb = set(a[a > 0].tolist()), set(b[b > 0].tolist())
  if not sa or not sb:
    return 0.0
  return len(sa & sb) / min(len(sa), len(sb))


def dual_split_of(cfg: SyntheticConfig, num_items: int) -> np.ndarray:
  """<object>[num_items + 1] the dual_pair split of each target item's pairs: "valid" w.p.
  `dual_valid_share`, "test" w.p. `dual_test_share`, else "train" (one uniform per item id,
  own stream: a story's pairs all land in one split)."""
  u = stream(cfg, _DUAL_SPLIT_KEY).random(num_items + 1)
  out = np.full(num_items + 1, "train", dtype=object)
  out[u < cfg.dual_valid_share + cfg.dual_test_share] = "test"
  out[u < cfg.dual_valid_share] = "valid"
  return out


def split_dual_pairs(cfg: SyntheticConfig, pairs: Sequence[Dict[str, int]],
                     num_items: int) -> Dict[str, List[Dict[str, int]]]:
  """split -> the dual pairs of that split (`dual_split_of`), in the input order."""
  split = dual_split_of(cfg, num_items)
  out: Dict[str, List[Dict[str, int]]] = {"train": [], "valid": [], "test": []}
  for rec in pairs:
    out[split[rec["target_item_id"]]].append(rec)
  return out

"""The data contract: every record kind tfrec reads or writes, with dtypes, shapes and meaning.

One module describes all records so that the writer, the `tf.data` reader, the validator,
the synthetic generator, the MovieLens converter and the models agree on one contract.

Conventions (see WORKSPACE.md):
  * Ids are int64. Id 0 is reserved for padding in every id space (items, tags, title tokens,
    categories); real ids start at 1. User and scenario ids start at 0 (never padded).
  * A sequence is stored with its natural length (newest event last) and at most
    `max_len_for(field, dataset max_seq_len)` elements (the per-domain histories: the
    dataset.json's `max_seq_len`, default MAX_SEQ_LEN = 50; matching: max(100, max_seq_len)); the reader truncates to a configured length (keeping the newest events) and
    pads on the right with 0, returning a boolean mask `<name>_mask`.
  * Timestamps are int64 seconds since the dataset's epoch; sequences are non-decreasing
    in time and never later than the example's own `timestamp` (no leakage).
  * A record kind with fields that `item_space` marks holds ids that must exist in the item
    feature store of the same dataset.

Record kinds (`KINDS`):
  ranking    one impression of a target-domain item to a user (SEMI §3.1/§4.1, ADAPT §II,
             THACIL §3.1): label in {0,1}, both domains' recent histories.
  ccl_pair   a user's source- and target-domain sequences from the same session (SEMI §3.3).
  dual_pair  a target item and the source item mounted on it (ADAPT §III-D, DUAL).
  matching   a mixed-domain behaviour sequence with subsidiary features and the next
             positive item (M5 §3.2/§4.3, COUPLE §3.1).
  item       one row of the item feature store (domain, category, tags, title, visual).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Tuple

SCHEMA_VERSION = 1

# Domains. `source` is the dense domain (products, movies of dense genres); `target` the
# sparse one (micro-videos, storytelling, the genres held out as a sparse domain).
SOURCE = 0
TARGET = 1
DOMAIN_NAMES = ("source", "target")

# Defaults that the synthetic generator and the converters use; a dataset may override the
# vocabulary sizes in its `dataset.json`, and the history length by its `max_seq_len` (the
# rule is `max_len_for`); the other maximum lengths are part of the contract.
MAX_SEQ_LEN = 50          # SEMI §4.1: sequences truncated to 50 per domain (the default of
                          # a dataset's `max_seq_len`, see `max_len_for`).
MAX_MATCH_SEQ_LEN = 100   # M5 mixed-domain behaviour sequence.
MAX_TAGS = 8              # COUPLE: tags per item.
MAX_TITLE_LEN = 16        # title tokens per item.
NUM_USER_FEATURES = 4     # gender, age bucket, occupation, region.
NUM_SUBSIDIARY = 2        # M5 §4.3.1: e.g. episodic watch count, playback duration.
USER_FEATURE_NAMES = ("gender", "age", "occupation", "region")


@dataclasses.dataclass(frozen=True)
class Field:
  """One feature of a record kind.

  Attributes:
    name: feature key in the `tf.train.Example`.
    dtype: "int64", "float32" or "bytes".
    kind: "scalar" (one value), "fixed" (exactly `width` values), or "seq" (0..max_len
      values, newest last) or "seq2d" (0..max_len steps of `width` values each, stored flat).
    doc: meaning, with the paper section it comes from.
    max_len: maximum stored length for "seq"/"seq2d".
    min_len: minimum stored length for "seq"/"seq2d".
    width: values per step for "fixed"/"seq2d".
    id_space: for int64 ids, the vocabulary whose size bounds them ("item", "user",
      "scenario", "category", "tag", "token", "domain", or a user-feature name).
    low, high: inclusive value range that is checked (None: unchecked).
    optional: may be absent; the reader then fills `default`.
    default: value filled for an absent optional scalar.
    aligned_with: name of a "seq" field this one must have the same length as.
    domain: for item ids, the domain (SOURCE/TARGET) every id must belong to in the item
      store (checked by `tfrec.data.validate`), or None for mixed.
  """

  name: str
  dtype: str
  kind: str
  doc: str
  max_len: int = 0
  min_len: int = 0
  width: int = 1
  id_space: Optional[str] = None
  low: Optional[float] = None
  high: Optional[float] = None
  optional: bool = False
  default: float = 0
  aligned_with: Optional[str] = None
  domain: Optional[int] = None

  def __post_init__(self):
    if self.dtype not in ("int64", "float32", "bytes"):
      raise ValueError(f"field {self.name}: unknown dtype {self.dtype!r}")
    if self.kind not in ("scalar", "fixed", "seq", "seq2d"):
      raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")
    if self.kind in ("seq", "seq2d") and self.max_len <= 0:
      raise ValueError(f"field {self.name}: a sequence needs max_len > 0")

  @property
  def is_seq(self) -> bool:
    return self.kind in ("seq", "seq2d")


@dataclasses.dataclass(frozen=True)
class RecordKind:
  """A named record layout: an ordered mapping of fields plus cross-field rules.

  Attributes:
    name: kind name, also the sub-directory of a dataset that holds its shards.
    fields: the fields, in a stable order.
    doc: what one record means.
    nonempty_any: groups of sequence fields of which at least one must be non-empty
      (e.g. a ranking example needs some history in at least one domain, SEMI §4.1).
    before: pairs (sequence timestamp field, scalar timestamp field): every sequence
      timestamp must be <= the scalar (histories may not leak the future); not checked where
      an optional scalar is absent.
  """

  name: str
  fields: Tuple[Field, ...]
  doc: str
  nonempty_any: Tuple[Tuple[str, ...], ...] = ()
  before: Tuple[Tuple[str, str], ...] = ()

  def __post_init__(self):
    names = [f.name for f in self.fields]
    if len(set(names)) != len(names):
      raise ValueError(f"kind {self.name}: duplicate field names")
    for f in self.fields:
      if f.aligned_with and f.aligned_with not in names:
        raise ValueError(f"kind {self.name}: {f.name} aligned with unknown {f.aligned_with}")

  @property
  def by_name(self) -> Dict[str, Field]:
    return {f.name: f for f in self.fields}

  def field(self, name: str) -> Field:
    try:
      return self.by_name[name]
    except KeyError:
      raise KeyError(f"record kind {self.name!r} has no field {name!r}; "
                     f"fields: {[f.name for f in self.fields]}") from None


def _seq_pair(prefix: str, domain_doc: str, max_len: int = MAX_SEQ_LEN):
  """Item-id sequence plus its aligned timestamps for one domain."""
  return (
      Field(f"{prefix}_item_ids", "int64", "seq", max_len=max_len, id_space="item", low=1,
            domain=SOURCE if prefix == "source" else TARGET,
            doc=f"user's recent {domain_doc} item ids before the event, newest last "
                "(SEMI §3.1, truncated to 50 as in §4.1; up to the dataset's max_seq_len)"),
      Field(f"{prefix}_timestamps", "int64", "seq", max_len=max_len, low=0,
            aligned_with=f"{prefix}_item_ids",
            doc=f"timestamps (s) of {prefix}_item_ids, non-decreasing; the 1-hour time "
                "block of each event is derived from it (SEMI §3.2.3)"),
  )


_USER = (
    Field("user_id", "int64", "scalar", id_space="user", low=0, doc="user id, 0-based"),
    Field("user_features", "int64", "fixed", width=NUM_USER_FEATURES, id_space="user_features",
          low=0, doc="categorical user profile: " + ", ".join(USER_FEATURE_NAMES)),
    Field("scenario_id", "int64", "scalar", id_space="scenario", low=0,
          doc="scenario (page/channel) of the request (M5 §4.4, COUPLE §3.1)"),
    Field("cold_user", "int64", "scalar", low=0, high=1, optional=True, default=0,
          doc="1 = the user had no target-domain activity before the test period (a cold "
              "user, SEMI Fig. 5 / COUPLE's cold users); absent: 0"),
)

RANKING = RecordKind(
    "ranking",
    _USER + (
        Field("item_id", "int64", "scalar", id_space="item", low=1, domain=TARGET,
              doc="target-domain candidate item shown to the user (SEMI: micro-video)"),
        Field("timestamp", "int64", "scalar", low=0, doc="event time (s)"),
        Field("label", "int64", "scalar", low=0, high=1,
              doc="1 = positive (watched completely / clicked / rated >= 4), 0 = negative"),
    ) + _seq_pair("source", "source-domain (dense: products)")
    + _seq_pair("target", "target-domain (sparse: micro-videos)") + (
        Field("oracle_prob", "float32", "scalar", low=0, high=1, optional=True, default=-1.0,
              doc="synthetic data only: the planted P(label=1); -1 when absent"),
    ),
    doc="one impression: (user, history in both domains, target item) -> label",
    nonempty_any=(("source_item_ids", "target_item_ids"),),
    before=(("source_timestamps", "timestamp"), ("target_timestamps", "timestamp")),
)

CCL_PAIR = RecordKind(
    "ccl_pair",
    (Field("user_id", "int64", "scalar", id_space="user", low=0, doc="user id"),)
    + tuple(dataclasses.replace(f, min_len=1) for f in _seq_pair("source", "source-domain"))
    + tuple(dataclasses.replace(f, min_len=1) for f in _seq_pair("target", "target-domain"))
    + (Field("timestamp", "int64", "scalar", low=0, optional=True, default=-1,
             doc="request time (s) of the ranking record the pair was selected from "
                 "(`tfrec.datasets.ccl_select`): CCL's time blocks count back from it as "
                 "SEMI's do (§3.2.3); absent (-1): from the pair's latest event"),),
    doc="a user's source- and target-domain sequences from one session (SEMI §3.3, eq. 5-6)",
    before=(("source_timestamps", "timestamp"), ("target_timestamps", "timestamp")),
)

DUAL_PAIR = RecordKind(
    "dual_pair",
    (
        Field("target_item_id", "int64", "scalar", id_space="item", low=1, domain=TARGET,
              doc="target-domain item (storytelling / micro-video)"),
        Field("source_item_id", "int64", "scalar", id_space="item", low=1, domain=SOURCE,
              doc="source-domain item mounted on it (ADAPT §III-D: the product in the story)"),
    ),
    doc="a positive cross-domain item pair for DUAL pre-training (ADAPT §III-D)",
)

MATCHING = RecordKind(
    "matching",
    _USER + (
        Field("timestamp", "int64", "scalar", low=0, doc="request time (s)"),
        Field("seq_item_ids", "int64", "seq", max_len=MAX_MATCH_SEQ_LEN, min_len=1,
              id_space="item", low=1, doc="mixed-domain behaviour sequence, newest last (M5 §4.3)"),
        Field("seq_domain_ids", "int64", "seq", max_len=MAX_MATCH_SEQ_LEN, min_len=1,
              id_space="domain", low=0, aligned_with="seq_item_ids",
              doc="domain of each behaviour (0 source, 1 target)"),
        Field("seq_timestamps", "int64", "seq", max_len=MAX_MATCH_SEQ_LEN, min_len=1, low=0,
              aligned_with="seq_item_ids", doc="timestamps (s) of the behaviours"),
        Field("seq_subsidiary", "float32", "seq2d", max_len=MAX_MATCH_SEQ_LEN, min_len=1,
              width=NUM_SUBSIDIARY, low=0, aligned_with="seq_item_ids",
              doc="per behaviour: [episodic watch count, playback duration in hours] "
                  "(M5 §4.3.1 subsidiary decoration), stored flat, row-major"),
        Field("positive_item_id", "int64", "scalar", id_space="item", low=1,
              doc="the item the user engaged with next (matching target)"),
    ),
    doc="(behaviour sequence, user, scenario) -> next positive item, for two-tower matching",
    before=(("seq_timestamps", "timestamp"),),
)

ITEM = RecordKind(
    "item",
    (
        Field("item_id", "int64", "scalar", id_space="item", low=1, doc="item id (row of the store)"),
        Field("domain", "int64", "scalar", id_space="domain", low=0, high=1,
              doc="0 source, 1 target"),
        Field("category", "int64", "scalar", id_space="category", low=1,
              doc="leaf category (THACIL category-level attention; one topic per category)"),
        Field("tags", "int64", "fixed", width=MAX_TAGS, id_space="tag", low=0,
              doc="semantic tags, 0-padded (COUPLE §3.1)"),
        Field("title", "int64", "fixed", width=MAX_TITLE_LEN, id_space="token", low=0,
              doc="title token ids, 0-padded (ADAPT textual modality)"),
        Field("visual", "float32", "fixed", width=0,
              doc="dense visual vector (512-d on synthetic data, absent (0-d) on MovieLens)"),
        Field("cold", "int64", "scalar", low=0, high=1,
              doc="1 = held out of all training interactions (item cold-start test)"),
        Field("kind", "int64", "scalar", id_space="item_kind", low=0,
              doc="item kind / bucket, 1..num_item_kinds of dataset.json, 0 = no kind (M5's "
                  "item buckets, THACIL's item kinds); a store written without it reads as "
                  "all 0"),
        Field("pre_extracted", "float32", "fixed", width=0,
              doc="frozen item representation from the item's domain's extractor "
                  "(`tfrec.datasets.pre_extract`, SEMI §3.2.1's v^m / p^m); 0 wide: none (a "
                  "store written without it)"),
    ),
    doc="one row of the item feature store; stored column-wise in items.npz",
)

KINDS: Mapping[str, RecordKind] = {
    k.name: k for k in (RANKING, CCL_PAIR, DUAL_PAIR, MATCHING, ITEM)}

EXAMPLE_KINDS = ("ranking", "ccl_pair", "dual_pair", "matching")


def max_len_for(f: Field, max_seq_len: int = MAX_SEQ_LEN) -> int:
  """The longest sequence a dataset whose `dataset.json` says `max_seq_len` accepts in `f`.

  The per-domain histories of `ranking` and `ccl_pair` (contract `max_len` = MAX_SEQ_LEN = 50)
  take the dataset's `max_seq_len` exactly (larger or smaller: THACIL's 160). The mixed
  `matching` sequences keep their own MAX_MATCH_SEQ_LEN = 100 unless the dataset's
  `max_seq_len` is larger, then they take it: `max(100, max_seq_len)`. Non-sequence fields:
  `f.max_len` unchanged.
  """
  if not f.is_seq:
    return f.max_len
  if f.max_len == MAX_SEQ_LEN:
    return int(max_seq_len)
  return max(f.max_len, int(max_seq_len))


def mask_name(seq_field: str) -> str:
  """Name of the padding mask of a sequence group: `source_item_ids` -> `source_mask`."""
  for suffix in ("_item_ids", "_ids"):
    if seq_field.endswith(suffix):
      return seq_field[: -len(suffix)] + "_mask"
  return seq_field + "_mask"


def get_kind(name: str) -> RecordKind:
  """Returns the record kind called `name`, or raises naming the known kinds."""
  try:
    return KINDS[name]
  except KeyError:
    raise ValueError(f"unknown record kind {name!r}; known: {sorted(KINDS)}") from None


def describe() -> str:
  """Markdown table of every record kind (used by the docs and `validate --schema`)."""
  lines = []
  for kind in KINDS.values():
    lines.append(f"### `{kind.name}`: {kind.doc}\n")
    lines.append("| field | dtype | shape | ids / range | meaning |")
    lines.append("|---|---|---|---|---|")
    for f in kind.fields:
      if f.kind == "scalar":
        shape = "[]"
      elif f.kind == "fixed":
        shape = f"[{f.width or 'd'}]"
      elif f.kind == "seq":
        shape = f"[<= {f.max_len}]"
      else:
        shape = f"[<= {f.max_len}, {f.width}]"
      rng = f.id_space or ""
      if f.low is not None or f.high is not None:
        rng += f" [{f.low if f.low is not None else ''}, {f.high if f.high is not None else ''}]"
      opt = " (optional)" if f.optional else ""
      lines.append(f"| `{f.name}` | {f.dtype} | {shape} | {rng.strip()} | {f.doc}{opt} |")
    lines.append("")
  return "\n".join(lines)

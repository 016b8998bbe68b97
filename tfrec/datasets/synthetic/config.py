"""The synthetic world's parameters: `SyntheticConfig` (every knob, documented per field), the
presets and the command line's `--set field=value` parsing."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Sequence, Tuple

CCL_PAIR_SCOPES = ("session", "week")
TUPLE_FIELDS = ("scenario_traffic", "item_kind_transfer")
# Record kind -> its splits (by day; dual pairs by target item: `world.dual_pair_split`).
SPLITS: Dict[str, Tuple[str, ...]] = {
    "ranking": ("train", "valid", "test", "test_cold"),
    "ccl_pair": ("train",),
    "dual_pair": ("train", "valid", "test"),
    "matching": ("train", "valid", "test", "test_cold"),
}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Every parameter of the synthetic cross-domain world (defaults = the "default" preset)."""

  name: str = "default"
  seed: int = 0
  num_users: int = 4000
  num_topics: int = 16
  categories_per_topic: int = 4
  num_source_items: int = 4000
  num_target_items: int = 3000
  latent_dim: int = 16
  category_offset_std: float = 0.5
  item_noise_std: float = 0.3
  visual_dim: int = 512
  visual_noise_std: float = 0.3
  visual_domain_shift: float = 0.5
  tags_per_topic: int = 12          # P: tags of one topic in one domain.
  tag_overlap: float = 0.3          # share of those P tags the other domain uses too.
  title_function_words: int = 40   # F: frequent, uninformative (target titles).
  title_source_tokens: int = 24     # Ks per topic.
  title_target_tokens: int = 32     # Kt per topic.
  title_shared_tokens: int = 4      # S per topic, used by both domains.
  popularity_exponent: float = 0.8  # popularity of the item with rank r: (1 + r)^-exponent.
  quality_std: float = 0.5
  transfer: float = 0.7             # weight of the shared interest in each domain's interest.
  interest_concentration: float = 0.3  # Dirichlet concentration per topic.
  intent_drift: float = 0.3         # P(session intent is redrawn at the next session).
  intent_weight: float = 0.7        # share of a session's events drawn from its intent.
  days: int = 8                     # >= 3: days 0..days-3 train, days-2 valid, days-1 test.
  sessions_per_user: float = 10.0
  source_events_per_session: float = 6.0
  target_events_per_session: float = 0.5
  active_share: float = 0.15
  active_target_events_per_session: float = 4.0
  impressions_per_session: float = 3.0
  cold_impressions_per_session: float = 1.5
  candidate_intent_share: float = 0.4
  candidate_popular_share: float = 0.3
  num_scenarios: int = 4
  scenario_traffic: Tuple[float, ...] = (0.5, 0.25, 0.15, 0.1)
  scenario_pref_std: float = 0.5
  cold_item_share: float = 0.1
  click_interest_weight: float = 4.0  # a
  click_intent_weight: float = 1.5    # b
  click_bias: float = -1.8            # c
  dual_second_share: float = 0.3
  # Issue-11 knobs (SEMI's regime: sparse, partly unrelated target behaviour). Their defaults
  # leave the world exactly as it was (same users, items, events, labels and oracle_prob:
  # tests/test_synthetic.py pins a digest); every new latent has its own random stream.
  target_intent_coupling: float = 1.0
  """P(a session's target-domain intent = its source intent); otherwise the target intent is
  drawn from theta_u^t. Target behaviours, impression candidates and P(click) use the target
  intent (1.0: one intent drives both domains)."""
  target_taste_weight: float = 0.0
  """w_tau: a target-only taste. Each user has a style vector style_u ~ N(0, I/TASTE_DIM) and
  each target item a latent tau_i ~ N(0, I) (source items none); the click logit adds
  w_tau * <style_u, tau_i>, and organic target behaviours draw their item within the topic
  with weight pop_i * exp(w_tau * <style_u, tau_i>). Only the target history reveals it."""
  target_activity_spread: float = 0.0
  """sigma: each user's target activity (organic target events and warm impressions per
  session, hence clicks) is multiplied by exp(sigma z_u - sigma^2 / 2), z_u ~ N(0, 1): the
  mean rate is preserved, more users are nearly silent in the target domain and a few very
  active. Cold-item impressions (test_cold) are not scaled."""
  session_dispersion: float = 0.0
  """kappa: sessions per user = 1 + Poi((sessions_per_user - 1) g_u), g_u ~ Gamma(1/kappa,
  kappa) (mean 1, variance kappa): a negative-binomial count whose variance grows with kappa
  (0: Poisson)."""
  cold_user_share: float = 0.0
  """Share of users whose target activity (organic target events and impressions, hence the
  clicks joining the target history) starts on the test (last) day. Their ranking and matching
  records carry cold_user=1; the field is written for cold users only (others leave it out
  and readers fill the contract's default 0), so a world without cold users keeps its bytes."""
  ccl_only_users: int = 0
  """Extra users, ids num_users .. num_users + ccl_only_users - 1 (dataset.json's num_users
  counts them), simulated like the others up to the end of the train period but writing only
  ccl_pair records (pre-training at scale); never in ranking or matching. They take the lean
  path (`simulate.ccl_only_pairs`: train sessions' events only, no histories or records),
  which draws exactly what the full simulation draws. Measured: the small preset with 50,000
  of them writes 317,464 pairs in 1 min 35 s wall (2 CPU cores, the default 2 writer
  processes over default_num_shards(total_users) = 20 shards). The semi preset with 50,000
  (week-scope pairs, sparse target: 42,855 pairs) took 14 min 28 s wall and 0.59 GB peak
  while 2 cores were shared with 5 trainings; in one run on that loaded machine a CCL-only
  user cost 10.7 ms (semi) vs 14.0 ms (small), so unloaded it takes about the small
  preset's 1.5 min."""
  ccl_pair_scope: str = "session"
  """"session": one ccl_pair per train session with events in both domains (SEMI §3.3's
  wording); "week": one pair per user and week of the train period, each domain's last 50
  behaviours of that week (SEMI §4.1: pairs are the 7-day sequences of the records)."""

  max_seq_len: int = 50
  """The longest per-domain history written into ranking and ccl_pair records (the newest
  kept) and recorded as dataset.json's max_seq_len; matching sequences keep max(100,
  max_seq_len). 50 is the contract's default (SEMI §4.1); THACIL uses 160."""
  # ADAPT (DUAL's domain gap and the storytelling -> product mounting, §III-D, Table II).
  visual_relatedness: float = 0.0
  """r in [0, 1]: the target domain's visual projection is W_t = r W_s + sqrt(1 - r^2) W_t'
  (W_s, W_t' independent): 0 leaves the domains' projections unrelated, 1 makes them one."""
  title_source_shared_prob: float = 0.15
  """P(a source (product) title token is one of its topic's S shared words)."""
  title_target_function_prob: float = 0.4
  """P(a target (storytelling) title token is a function word)."""
  title_target_shared_prob: float = 0.1
  """P(a target title token is one of its topic's shared words); the rest are the topic's
  target words."""
  story_title_copy: float = 0.0
  """c: the mean rate at which a storytelling title's tokens are replaced by words of its
  first mounted product's title (each story's own rate ~ Beta(c, 1 - c)): raises ADAPT eq. 1's
  title similarity of dual pairs."""
  story_product_closeness: float = 0.0
  """w_m: a story's first mounted product is drawn from its category's products with weight
  pop_s * exp(w_m * cos(eps_story, eps_product)) (eps: the items' own parts of their latents,
  z - mu_topic - o_category; 0: by popularity alone): item-level closeness."""
  topic_popularity_divergence: float = 0.0
  """delta in [0, 1]: the target items' topic distribution is (1 - delta) pi + delta pi'
  (pi' ~ Dir(5), its own stream); 0: both domains share pi."""
  dual_valid_share: float = 0.1
  """Share of mounted target items whose dual pairs form the dual_pair valid split."""
  dual_test_share: float = 0.1
  """Share of mounted target items whose dual pairs form the dual_pair test split."""
  # THACIL (category- and item-level interest, drifting interest, long histories).
  category_interest_weight: float = 0.0
  """w_c: each user has a preference psi_u[c] ~ N(0, 1) per category; behaviours of both
  domains draw their item within the topic with weight pop_i * exp(w_c psi_u[c_i]) and the
  click logit adds w_c psi_u[c_i]: interest inside a topic, at category level."""
  item_taste_weight: float = 0.0
  """w_z: each user has p_u ~ N(0, I / latent_dim); the item-level affinity is
  <p_u, z_i - mu_{k_i}> (the item's latent away from its topic centre). Behaviours of both
  domains are tilted by exp(w_z affinity) and the click logit adds w_z affinity."""
  interest_drift_per_day: float = 0.0
  """rho: on day t a user's interests (shared and per domain) are (1 - l_t) theta + l_t phi,
  l_t = 1 - (1 - rho)^t, phi ~ Dir(alpha) the user's drift target: long-term interest drifts
  a little every day (session intents, behaviours and clicks follow the day's interest)."""
  # COUPLE (tags specific to a category, user groups; cold-item matching is the
  # matching/test_cold split, written whatever the knobs).
  category_tags: int = 0
  """Tags per category (ids after the topic tag blocks, shared by both domains)."""
  category_tag_share: float = 0.0
  """P(each of an item's tags is replaced by a random tag of its own category); needs
  category_tags > 0."""
  user_groups: int = 0
  """G: number of user groups; each user joins one uniformly (own stream)."""
  user_group_weight: float = 0.0
  """w_g in [0, 1]: a user's long-term interest is (1 - w_g) theta_u + w_g theta_g, theta_g ~
  Dir(alpha) the group's centre: users drawn around a few group centres."""
  # M5 (scenarios, item kinds, subsidiary features).
  scenario_user_tilt: float = 0.0
  """w_s: each user has t_u[s, k] ~ N(0, 1) per scenario and topic; in a session of scenario s
  the non-intent behaviour topics are drawn from theta^d[k] exp(w_s t_u[s, k]) and the click
  logit adds w_s t_u[s, k_i]: a user-by-scenario interest tilt."""
  scenario_behaviour_weight: float = 0.0
  """w_b: organic target behaviours in a session of scenario s draw their item within the topic
  with weight pop_i * exp(w_b s[s, c_i]) (the scenario's category preference that already
  moves clicks): scenarios change organic behaviour, not only clicks."""
  scenario_pool_share: float = 1.0
  """Share of warm target items each scenario can show (a random subset per scenario, world
  stream); impression candidates come from the scenario's subset (1.0: every item)."""
  scenario_traffic_skew: float = 1.0
  """s >= 0: a session's scenario is drawn with weight scenario_traffic[j]^s (times the user's
  region tilt): 1 as `scenario_traffic` says, 0 every scenario alike, > 1 the large scenarios
  larger and the small ones smaller (M5's regime map: the gain of multi-scenario modelling in
  the smallest scenario against the traffic skew). No draw changes with it."""
  item_kind_transfer: Tuple[float, ...] = ()
  """Per item kind j = 1..K, its transfer tr_j: target items get kind ~ U{1..K} (the item
  store's kind column; dataset.json's num_item_kinds = K) and their click logit's interest
  term uses tr_j theta_u + (1 - tr_j) phi_u^t instead of theta_u^t. Empty: no kinds."""
  sub_source_watch_rate: float = 0.2
  """Source behaviours' watch count is 1 + Poi(sub_source_watch_rate)."""
  sub_source_playback_mean: float = 0.03
  """Source behaviours' playback hours ~ Exp(mean)."""
  sub_target_watch_base: float = 1.0
  """Target behaviours' watch count is 1 + Poi(base + interest * theta_u^t[k_i])."""
  sub_target_watch_interest: float = 3.0
  """See sub_target_watch_base."""
  sub_target_playback_scale: float = 0.04
  """Target playback hours = count * Gamma(2, scale + intent_scale * [k_i = intent])."""
  sub_target_playback_intent: float = 0.04
  """See sub_target_playback_scale."""

  def __post_init__(self):
    for name in ("transfer", "intent_drift", "intent_weight", "active_share", "tag_overlap",
                 "cold_item_share", "dual_second_share", "target_intent_coupling",
                 "cold_user_share", "visual_relatedness", "title_source_shared_prob",
                 "title_target_function_prob", "title_target_shared_prob", "story_title_copy",
                 "topic_popularity_divergence", "dual_valid_share", "dual_test_share",
                 "interest_drift_per_day", "category_tag_share", "user_group_weight",
                 "scenario_pool_share"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1]")
    if self.candidate_intent_share + self.candidate_popular_share > 1.0:
      raise ValueError("candidate_intent_share + candidate_popular_share must be <= 1")
    if len(self.scenario_traffic) != self.num_scenarios:
      raise ValueError(f"scenario_traffic has {len(self.scenario_traffic)} entries for "
                       f"num_scenarios={self.num_scenarios}")
    if self.scenario_traffic_skew < 0:
      raise ValueError(f"scenario_traffic_skew={self.scenario_traffic_skew} must be >= 0")
    positive = ("num_users", "num_topics", "categories_per_topic", "num_source_items",
                "num_target_items", "latent_dim", "tags_per_topic", "days", "num_scenarios")
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
    if self.visual_dim < 0:
      raise ValueError("visual_dim must be >= 0")
    for name in ("target_taste_weight", "target_activity_spread", "session_dispersion",
                 "ccl_only_users"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
    for name in ("story_product_closeness", "category_interest_weight", "item_taste_weight",
                 "category_tags", "user_groups", "scenario_user_tilt",
                 "scenario_behaviour_weight", "sub_source_watch_rate",
                 "sub_source_playback_mean", "sub_target_watch_base",
                 "sub_target_watch_interest", "sub_target_playback_scale",
                 "sub_target_playback_intent"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
    if self.title_target_function_prob + self.title_target_shared_prob > 1.0:
      raise ValueError("title_target_function_prob + title_target_shared_prob must be <= 1")
    if self.dual_valid_share + self.dual_test_share > 1.0:
      raise ValueError("dual_valid_share + dual_test_share must be <= 1")
    if self.category_tag_share > 0 and self.category_tags < 1:
      raise ValueError("category_tag_share > 0 needs category_tags >= 1")
    if self.user_group_weight > 0 and self.user_groups < 1:
      raise ValueError("user_group_weight > 0 needs user_groups >= 1")
    if self.scenario_pool_share <= 0:
      raise ValueError("scenario_pool_share must be > 0")
    if any(not 0.0 <= t <= 1.0 for t in self.item_kind_transfer):
      raise ValueError(f"item_kind_transfer={self.item_kind_transfer}: each in [0, 1]")
    if self.max_seq_len < 1:
      raise ValueError(f"max_seq_len={self.max_seq_len} must be >= 1")
    if self.ccl_pair_scope not in CCL_PAIR_SCOPES:
      raise ValueError(f"ccl_pair_scope={self.ccl_pair_scope!r} must be one of "
                       f"{list(CCL_PAIR_SCOPES)}")
    if self.days < 3:
      raise ValueError(f"days={self.days} must be >= 3: the last day is the test split, the "
                       "day before it the valid split and the days before that train")

  @property
  def total_users(self) -> int:
    """Users with ids: num_users ranking/matching users + the ccl_only_users."""
    return self.num_users + self.ccl_only_users

  @property
  def num_categories(self) -> int:
    return self.num_topics * self.categories_per_topic

  @property
  def shared_tags_per_topic(self) -> int:
    return int(round(self.tag_overlap * self.tags_per_topic))

  @property
  def num_tags(self) -> int:
    exclusive = self.tags_per_topic - self.shared_tags_per_topic
    return (self.num_topics * (self.shared_tags_per_topic + 2 * exclusive)
            + self.num_categories * self.category_tags)

  @property
  def tokens_per_topic(self) -> int:
    return self.title_shared_tokens + self.title_source_tokens + self.title_target_tokens

  @property
  def num_item_kinds(self) -> int:
    return len(self.item_kind_transfer)

  @property
  def num_tokens(self) -> int:
    return self.title_function_words + self.num_topics * self.tokens_per_topic

  def to_dict(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    d["scenario_traffic"] = list(self.scenario_traffic)
    d["item_kind_transfer"] = list(self.item_kind_transfer)
    return d


CONFIGS: Dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(name="tiny", num_users=200, num_topics=8, num_source_items=300,
                            num_target_items=300, visual_dim=64, tags_per_topic=10),
    "small": SyntheticConfig(name="small", num_users=1000, num_source_items=1500,
                             num_target_items=1000),
    "default": SyntheticConfig(),
    "large": SyntheticConfig(name="large", num_users=200_000, num_topics=32,
                             num_source_items=60_000, num_target_items=30_000),
}

# One preset per paper, at the `small` preset's CPU scale, calibrated against the paper's own
# dataset tables (stats.md prints each figure beside the paper's; tests/test_synthetic_presets.py
# keeps them within tolerance). Measured on 300 users (THACIL: 100) of seed 0:
#   semi    Table 4: 18.2 categories per target sequence (16.3), 1.98 of them in the source
#           sequence (1.93): 10.9% (12%); 3% of test examples with <= 1 target event.
#   adapt   Table III (sequences of 20): storytelling / product length 17.2 / 19.95 (16.1 /
#           19.88), categories 9.8 / 6.6 (8.17 / 6.83), overlap 3.0 (2.76); Table II: 43.7%
#           of pairs below title similarity 0.2 (41.8%), 20.9% at 0.8 or more (17.8%).
#   thacil  160.7 target positives per user in the train period (160), 69% below (65%);
#           histories up to 160; 30% cold items (item cold-start is THACIL's task).
#   couple  62% of the target domain's tags used by the source domain (TPMV 60%).
#   m5      5.9 matching records per user (Dataset-H: 5); "Local" scenarios (0, 1) carry
#           less traffic than "Global" ones (2, 3), as the paper says.
_SMALL = dict(num_users=1000, num_source_items=1500, num_target_items=1000)
CONFIGS.update({
    "semi": SyntheticConfig(
        name="semi", **_SMALL, num_topics=64, interest_concentration=0.5, transfer=0.4,
        target_intent_coupling=0.0, target_events_per_session=0.6, impressions_per_session=2.0,
        target_activity_spread=1.0, session_dispersion=0.5, target_taste_weight=1.0,
        cold_user_share=0.05, ccl_pair_scope="week"),
    "adapt": SyntheticConfig(
        name="adapt", **_SMALL, max_seq_len=20, target_events_per_session=0.5,
        intent_weight=0.8, target_intent_coupling=0.2, candidate_intent_share=0.7,
        candidate_popular_share=0.2, category_interest_weight=2.0, story_title_copy=0.3,
        topic_popularity_divergence=0.5, visual_relatedness=0.3),
    "thacil": SyntheticConfig(
        name="thacil", **_SMALL, max_seq_len=160, sessions_per_user=30.0,
        target_events_per_session=5.0, active_target_events_per_session=8.0,
        impressions_per_session=4.0, target_activity_spread=1.0, category_interest_weight=1.0,
        item_taste_weight=1.0, interest_drift_per_day=0.1, cold_item_share=0.3),
    "couple": SyntheticConfig(
        name="couple", **_SMALL, tag_overlap=0.2, category_tags=3, category_tag_share=0.3,
        user_groups=8, user_group_weight=0.5, cold_user_share=0.1, cold_item_share=0.2),
    "m5": SyntheticConfig(
        name="m5", **dict(_SMALL, num_users=5000), days=14, sessions_per_user=4.0,
        target_events_per_session=0.5, impressions_per_session=1.0,
        scenario_traffic=(0.15, 0.1, 0.45, 0.3), scenario_user_tilt=1.0,
        scenario_behaviour_weight=1.0, scenario_pool_share=0.6,
        item_kind_transfer=(0.9, 0.6, 0.3)),
})
PAPER_PRESETS = ("semi", "adapt", "thacil", "couple", "m5")


def config_from_dict(raw: Dict[str, Any]) -> SyntheticConfig:
  """The `SyntheticConfig` a dataset.json's generator config (`to_dict`) describes; fields it
  lacks (knobs added after it was written) take their defaults, which leave the world as it was.

  Raises:
    TypeError, ValueError: an unknown field or a bad value.
  """
  raw = dict(raw)
  for name in TUPLE_FIELDS:
    if name in raw:
      raw[name] = tuple(float(x) for x in raw[name])
  return SyntheticConfig(**raw)


def get_config(name: str = "default", **overrides: Any) -> SyntheticConfig:
  """Returns preset `name` with `overrides` (field=value) applied; None values are ignored."""
  if name not in CONFIGS:
    raise ValueError(f"unknown synthetic config {name!r}; presets: {sorted(CONFIGS)}")
  overrides = {k: v for k, v in overrides.items() if v is not None}
  fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown synthetic config field(s) {unknown}")
  for field in TUPLE_FIELDS:
    if field in overrides:
      overrides[field] = tuple(float(x) for x in overrides[field])
  return dataclasses.replace(CONFIGS[name], **overrides)


def parse_assignments(assignments: Sequence[str]) -> Dict[str, Any]:
  """`["field=value", ...]` (the CLI's repeatable --set) -> {field: value typed as the
  SyntheticConfig field: int, float, str, or comma-separated floats for tuples}. Later
  assignments of a field win.

  Raises:
    ValueError: (one line) no "=", an unknown field (the valid ones listed) or a bad value.
  """
  hints = typing.get_type_hints(SyntheticConfig)
  valid = [f.name for f in dataclasses.fields(SyntheticConfig)]
  out: Dict[str, Any] = {}
  for item in assignments:
    name, sep, text = item.partition("=")
    name, text = name.strip(), text.strip()
    if not sep or not name:
      raise ValueError(f"--set {item!r}: expected field=value")
    if name not in hints:
      raise ValueError(f"--set {item!r}: unknown SyntheticConfig field {name!r}; valid: "
                       f"{', '.join(valid)}")
    kind = hints[name]
    try:
      if kind is int:
        value: Any = int(text)
      elif kind is float:
        value = float(text)
      elif kind is str:
        value = text
      else:  # Tuple[float, ...]
        value = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
      raise ValueError(f"--set {item!r}: {name} takes a value of type "
                       f"{getattr(kind, '__name__', str(kind))}") from None
    out[name] = value
  return out

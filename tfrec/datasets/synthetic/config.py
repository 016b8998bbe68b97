"""The synthetic world's parameters: `SyntheticConfig` (every knob, documented per field), the
presets and the command line's `--set field=value` parsing."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Sequence, Tuple

CCL_PAIR_SCOPES = ("session", "week")


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
  processes over default_num_shards(total_users) = 20 shards)."""
  ccl_pair_scope: str = "session"
  """"session": one ccl_pair per train session with events in both domains (SEMI §3.3's
  wording); "week": one pair per user and week of the train period, each domain's last 50
  behaviours of that week (SEMI §4.1: pairs are the 7-day sequences of the records)."""

  def __post_init__(self):
    for name in ("transfer", "intent_drift", "intent_weight", "active_share", "tag_overlap",
                 "cold_item_share", "dual_second_share", "target_intent_coupling",
                 "cold_user_share"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1]")
    if self.candidate_intent_share + self.candidate_popular_share > 1.0:
      raise ValueError("candidate_intent_share + candidate_popular_share must be <= 1")
    if len(self.scenario_traffic) != self.num_scenarios:
      raise ValueError(f"scenario_traffic has {len(self.scenario_traffic)} entries for "
                       f"num_scenarios={self.num_scenarios}")
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
    return self.num_topics * (self.shared_tags_per_topic + 2 * exclusive)

  @property
  def tokens_per_topic(self) -> int:
    return self.title_shared_tokens + self.title_source_tokens + self.title_target_tokens

  @property
  def num_tokens(self) -> int:
    return self.title_function_words + self.num_topics * self.tokens_per_topic

  def to_dict(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    d["scenario_traffic"] = list(self.scenario_traffic)
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


def get_config(name: str = "default", **overrides: Any) -> SyntheticConfig:
  """Returns preset `name` with `overrides` (field=value) applied; None values are ignored."""
  if name not in CONFIGS:
    raise ValueError(f"unknown synthetic config {name!r}; presets: {sorted(CONFIGS)}")
  overrides = {k: v for k, v in overrides.items() if v is not None}
  fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown synthetic config field(s) {unknown}")
  if "scenario_traffic" in overrides:
    overrides["scenario_traffic"] = tuple(float(x) for x in overrides["scenario_traffic"])
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

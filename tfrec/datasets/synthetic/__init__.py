"""Deterministic, streaming synthetic cross-domain data whose planted model is a known oracle.

Run:
  python -m tfrec.datasets.synthetic --out DIR [--config=tiny|small|default|large] [--seed=N]
      [--num_users=N] [--num_shards=N] [--workers=N] [--transfer=X] [--intent_drift=X] ...

Planted model (T topics, C categories per topic; items in `world.py`):

  Items i of domain d_i in {source, target}:
    k_i ~ Cat(pi),  c_i = k_i * C + U{1..C}                  each category in one topic
    z_i = mu_{k_i} + o_{c_i} + eps_i,  mu ~ N(0, I), o ~ N(0, 0.5^2 I), eps ~ N(0, 0.3^2 I)
    pop_i ∝ (1 + rank_i)^-0.8 within the domain,  q_i ~ N(0, 0.5^2)      (quality bias)
    visual_i = W_{d_i} z_i + m_{d_i} + N(0, 0.3^2 I)          W_s != W_t: a domain gap
    tags_i ⊂ Tags(k_i, d_i), |Tags(k, s) ∩ Tags(k, t)| = tag_overlap * |Tags(k, d)|
    title_i: source = topic keywords; target = function words + topic words + shared words
    a `cold_item_share` of target items is cold: never in a history, train, valid or test
    example; only a candidate in ranking/test_cold.
  User u (its own RNG, default_rng([seed, u])):
    x_u = [gender, age, occupation, region],  P(scenario) ∝ traffic * exp(R[region])
    theta_u ~ Dir(alpha * exp(A[age]))                          long-term shared interest
    phi_u^d ~ Dir(alpha),  theta_u^d = transfer * theta_u + (1 - transfer) * phi_u^d
  Sessions (1 + Poi(sessions_per_user - 1), in distinct hours of `days` days, each < 1 h):
    intent_1 ~ theta_u;  intent_s = intent_{s-1} w.p. 1 - intent_drift, else ~ theta_u
    (one intent for both domains of a session)
    events: n^s ~ Poi(6), n^t ~ Poi(0.5) (Poi(4) for an `active_share` of users)
    event topic = intent_s w.p. intent_weight, else ~ theta_u^d;  item ~ pop within topic
  Ranking impressions (target domain, Poi(impressions_per_session) per session):
    candidate ~ pop in the intent topic | pop in the domain | uniform (never cold)
    p = sigmoid(a * theta_u^t[k_i] + b * [k_i == intent_s] + q_i + s[scenario, c_i] + c)
    (a, b, c = 4, 1.5, -1.8 by default: positive rate about 0.35-0.45)
    label ~ Bernoulli(p),  oracle_prob = p;  a click joins the target history.

Splits, by the day of the session (`split_of_day`; `days` >= 3): "test" = the last day,
"valid" = the day before it, "train" = the days before that. Only the split assignment depends
on the day: events, labels and oracle_prob of a seed are the same whichever split they land in.
Records:
  ranking    train / valid / test: every impression with some history; histories are the
             last 50 events of each domain strictly before the impression (valid and test
             histories include the earlier days' events); test_cold = last-day impressions
             of cold candidates (clicks on them never enter a history).
  ccl_pair   train: per train-day session with events in both domains, its source and target
             events (no valid-day or test-day session).
  matching   train / valid / test: at every target positive, the last 100 mixed-domain
             behaviours before it.
  dual_pair  train: each non-cold target item -> a source item of its category (ADAPT §III-D).

Python API: `build_world(config) -> World`, `user_records(world, user_id)` (kind -> split ->
record dicts, no files), `dual_pair_records(world)`, `click_probability(...)` (the oracle),
`dataset_info(config)` and `generate(config, out_dir, num_shards, verbose, workers)`.
Users are simulated one at a time from their own RNG, so the output for a seed does not depend
on which other users were generated, nor on the number of writer processes.
"""

from tfrec.datasets.synthetic.simulate import (SPLITS, dataset_info, default_num_shards, generate,
                                               split_of_day, user_records)
from tfrec.datasets.synthetic.world import (CONFIGS, DAY_S, SyntheticConfig, World, build_world,
                                            click_probability, dual_pair_records, get_config)

__all__ = ["CONFIGS", "DAY_S", "SPLITS", "SyntheticConfig", "World", "build_world",
           "click_probability", "dataset_info", "default_num_shards", "dual_pair_records",
           "generate", "get_config", "split_of_day", "user_records"]

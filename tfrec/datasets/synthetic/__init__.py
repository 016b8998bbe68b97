"""Deterministic, streaming synthetic cross-domain data whose planted model is a known oracle.

Run:
  python -m tfrec.datasets.synthetic --out DIR [--config=tiny|small|default|large] [--seed=N]
      [--num_users=N] [--num_shards=N] [--workers=N] [--transfer=X] [--intent_drift=X] ...
      [--set field=value ...]       (any SyntheticConfig field, repeatable; e.g.
                                     --set target_intent_coupling=0.2 --set cold_user_share=0.3)

Presets: sizes (tiny, small, default, large) and one calibrated world per paper (semi, adapt,
thacil, couple, m5: `config.py`, figures beside the papers' in stats.md).

Planted model (T topics, C categories per topic; items in `items.py` / `world.py`, users in
`users.py`; every knob documented on `SyntheticConfig`):

  Items i of domain d_i in {source, target}:
    k_i ~ Cat(pi),  c_i = k_i * C + U{1..C}                  each category in one topic
    z_i = mu_{k_i} + o_{c_i} + eps_i,  mu ~ N(0, I), o ~ N(0, 0.5^2 I), eps ~ N(0, 0.3^2 I)
    pop_i ∝ (1 + rank_i)^-0.8 within the domain,  q_i ~ N(0, 0.5^2)      (quality bias)
    visual_i = W_{d_i} z_i + m_{d_i} + N(0, 0.3^2 I)          a domain gap:
      W_t = r W_s + sqrt(1 - r^2) W' (r = visual_relatedness, 0 by default)
    target topics ~ (1 - delta) pi + delta pi'  (delta = topic_popularity_divergence)
    tags_i ⊂ Tags(k_i, d_i), |Tags(k, s) ∩ Tags(k, t)| = tag_overlap * |Tags(k, d)|;
      each tag replaced w.p. category_tag_share by one of its category's `category_tags`
    title_i: source = topic keywords; target = function words + topic words + shared words
      (the title_* probabilities); a story copies words of its first mounted product's title
      at its own rate ~ Beta(c, 1 - c) (c = story_title_copy)
    kind_i ~ U{1..K} for target items when item_kind_transfer has K entries
    a `cold_item_share` of target items is cold: never in a history, train, valid or test
    example; only a candidate in ranking/test_cold.
  User u (its own RNG, default_rng([seed, u])):
    x_u = [gender, age, occupation, region],  P(scenario) ∝ traffic * exp(R[region])
    theta_u ~ Dir(alpha * exp(A[age]))                          long-term shared interest
      (with groups: (1 - w_g) theta_u + w_g theta_g, theta_g ~ Dir(alpha) its group's centre)
    phi_u^d ~ Dir(alpha),  theta_u^d = transfer * theta_u + (1 - transfer) * phi_u^d
    on day t every interest drifts: (1 - l_t) theta + l_t phi_u^drift, l_t = 1 - (1 - rho)^t
    issue-11 latents, each from the user's own streams default_rng([seed, u, 1|2]) (never the
    main stream, whose draws stay put): style_u ~ N(0, I/8), a_u = exp(sigma z_u - sigma^2/2),
    g_u ~ Gamma(1/kappa, kappa), cold_u = [U < cold_user_share]; tau_i ~ N(0, I_8) per target
    item (a world stream; source items 0); the later latents from [seed, u, 3, j], drawn only
    when their knob is on: psi_u[c] ~ N(0, 1) per category, p_u ~ N(0, I/latent_dim),
    t_u[s, k] ~ N(0, 1) per scenario and topic, phi_u^drift ~ Dir(alpha), the group.
  Sessions (1 + Poi((sessions_per_user - 1) g_u), in distinct hours of `days` days, < 1 h):
    intent_1 ~ theta_u;  intent_s = intent_{s-1} w.p. 1 - intent_drift, else ~ theta_u
    target intent_s^t = intent_s w.p. target_intent_coupling, else ~ theta_u^t
    events: n^s ~ Poi(6), n^t ~ Poi(0.5 a_u) (Poi(4 a_u) for an `active_share` of users)
    event topic = intent_s (source) / intent_s^t (target) w.p. intent_weight, else
    ~ theta_u^d(day) exp(w_s t_u[scenario]);  item ~ pop_i exp(tilt_i) within the topic,
    tilt_i = w_c psi_u[c_i] + w_z <p_u, z_i - mu_k> (+ w_tau <style_u, tau_i>
             + w_b s[scenario, c_i] for target items)
    a cold user (cold_u) has no target events or impressions before the test day.
  Ranking impressions (target domain, Poi(impressions_per_session a_u) per session):
    candidate ~ pop in the intent^t topic | pop in the domain | uniform (never cold; from
    the scenario's `scenario_pool_share` of the items when below 1)
    p = sigmoid(a * theta_u^t(day)[k_i] + b * [k_i == intent_s^t] + q_i + s[scenario, c_i]
                + c + w_tau <style_u, tau_i> + w_c psi_u[c_i] + w_z <p_u, z_i - mu_k>
                + w_s t_u[scenario, k_i])
    (an item of kind j: tr_j theta_u + (1 - tr_j) phi_u^t in place of theta_u^t)
    (a, b, c = 4, 1.5, -1.8 by default: positive rate about 0.35-0.45)
    label ~ Bernoulli(p),  oracle_prob = p;  a click joins the target history.
  The issue-11 knobs' defaults (coupling 1, w_tau = sigma = kappa = 0, no cold users, no
  CCL-only users, session-scope pairs) give the world as it was before them, record for
  record (tests/test_synthetic.py pins a digest); their meanings are on `SyntheticConfig`.

Splits, by the day of the session (`split_of_day`; `days` >= 3): "test" = the last day,
"valid" = the day before it, "train" = the days before that. Only the split assignment depends
on the day: events, labels and oracle_prob of a seed are the same whichever split they land in.
Records:
  ranking    train / valid / test: every impression with some history; histories are the
             last max_seq_len (50) events of each domain strictly before the impression
             (valid and test histories include the earlier days' events); test_cold = last-day impressions
             of cold candidates (clicks on them never enter a history). Cold users' records
             carry cold_user=1 (written for them only; others leave the field to its default 0).
  ccl_pair   train: ccl_pair_scope "session": per train-day session with events in both
             domains, its source and target events (no valid-day or test-day session);
             "week" (SEMI §4.1): per user and week of the train period, each domain's last 50
             behaviours of that week, with the end of the week (clipped at the train period's
             end) as its `timestamp`, the time reference CCL counts time blocks back from.
             The `ccl_only_users` (ids num_users..) write only these.
             small preset + 50,000 CCL-only users (measured): 317,464 pairs, 1 min 35 s wall
             (1 min 52 s with the 2 shared CPU cores busier), default 2 writer processes over
             20 shards, 0.6 GB peak memory.
  matching   train / valid / test: at every target positive, the last max(100, max_seq_len)
             mixed-domain behaviours before it; test_cold: at every click on a cold item
             (test day; warm and cold users). Planted score: `planted.positive_intensity`.
  stats.md   record counts and, per ranking split, SEMI Table-4 figures of the target
             histories: categories, how many also in the source history and their share,
             shares of examples with <= 1 / <= 5 target events and of cold users (the paper:
             16.3 categories, 1.93 overlapping, 12%); also printed by the summary.
  dual_pair  train / valid / test (by story, dual_valid_share / dual_test_share): each
             non-cold target item (story) -> a source item of its category, drawn with weight
             pop exp(w_m cos(eps_story, eps_product)) (ADAPT §III-D); planted score:
             `planted.mount_intensity`.
  stats.md   also the other papers' dataset figures beside ours (`paper_stats.py`).

Python API: `build_world(config) -> World`, `user_records(world, user_id)` (kind -> split ->
record dicts, no files), `dual_pair_records(world)`, `click_probability(...)` (the oracle),
`dataset_info(config)`, `generate(config, out_dir, num_shards, verbose, workers)` and
`parse_assignments(["field=value", ...])` (the CLI's --set).
Users are simulated one at a time from their own RNG, so the output for a seed does not depend
on which other users were generated, nor on the number of writer processes.
"""

from tfrec.datasets.synthetic.simulate import (SPLITS, dataset_info, default_num_shards, generate,
                                               split_of_day, user_records)
from tfrec.datasets.synthetic.users import click_probability
from tfrec.datasets.synthetic.world import (CONFIGS, DAY_S, SyntheticConfig, World, build_world,
                                            dual_pair_records, get_config, parse_assignments)

__all__ = ["CONFIGS", "DAY_S", "SPLITS", "SyntheticConfig", "World", "build_world",
           "click_probability", "dataset_info", "default_num_shards", "dual_pair_records",
           "generate", "get_config", "parse_assignments", "split_of_day", "user_records"]

"""The synthetic world's ADAPT, THACIL, COUPLE and M5 knobs (issue 11): each moves its statistic
in the documented direction on a tiny world, and the planted scores of matching and dual-pair
records agree with the generator's own draws."""

import numpy as np
import pytest

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema
from tfrec.data.tfrecord_io import check_record
from tfrec.datasets import synthetic as syn
from tfrec.datasets.synthetic import items, planted, simulate, users


def _world(**knobs):
  return syn.build_world(syn.get_config("tiny", **knobs), with_visual="visual_relatedness" in knobs)


_records = simulate.users_records


def _profile(world, u):
  rng = np.random.default_rng([world.config.seed, u])
  user = users.make_user(world, rng, u)
  return user, users.plan_sessions(world, rng, user)


# ----------------------------------------------------------------------------- ADAPT


def test_visual_relatedness_aligns_the_domains_projections():
  def alignment(w):
    z, v, dom = w.latent, w.store.visual.astype(np.float64), w.store.domain
    maps = []
    for d in (schema.SOURCE, schema.TARGET):
      rows = np.nonzero((dom == d) & (np.arange(len(dom)) > 0))[0]
      x = np.c_[z[rows], np.ones(len(rows))]
      maps.append(np.linalg.lstsq(x, v[rows], rcond=None)[0][:-1].ravel())  # W_d, least squares.
    return maps[0] @ maps[1] / (np.linalg.norm(maps[0]) * np.linalg.norm(maps[1]))
  low, high = alignment(_world(visual_relatedness=0.0)), alignment(_world(visual_relatedness=0.9))
  assert abs(low) < 0.25 and high > 0.8, (low, high)


def _pair_similarity(w):
  return np.array([items.title_similarity(w.store.title[p["target_item_id"]],
                                          w.store.title[p["source_item_id"]])
                   for p in syn.dual_pair_records(w)])


def test_story_title_copy_raises_adapt_title_similarity():
  base, copied = _pair_similarity(_world()), _pair_similarity(_world(story_title_copy=0.5))
  assert np.mean(copied >= 0.6) > np.mean(base >= 0.6) + 0.2, (np.mean(base >= 0.6),
                                                                np.mean(copied >= 0.6))
  # Eq. 1 by hand: {3, 4, 9} vs {4, 9, 7, 8}: 2 shared words over the shorter title's 3.
  assert items.title_similarity(np.array([3, 4, 9, 0]), np.array([4, 9, 7, 8, 0])) == 2 / 3


def test_title_sharing_probabilities():
  def shared_share(w, domain):
    cfg = w.config
    ids = w.store.item_ids(domain=domain)
    tok = w.store.title[ids]
    base = cfg.title_function_words + 1 + w.topic[ids] * cfg.tokens_per_topic
    shared = (tok >= base[:, None]) & (tok < base[:, None] + cfg.title_shared_tokens)
    return shared.sum() / (tok > 0).sum()
  w = _world(title_source_shared_prob=0.6, title_target_shared_prob=0.5)
  assert shared_share(_world(), schema.SOURCE) == pytest.approx(0.15, abs=0.03)
  assert shared_share(w, schema.SOURCE) == pytest.approx(0.6, abs=0.04)
  assert shared_share(w, schema.TARGET) == pytest.approx(0.5, abs=0.04)


def test_story_product_closeness_mounts_closer_products():
  def closeness(w):
    z = w.item_level
    first = {}
    for p in syn.dual_pair_records(w):
      first.setdefault(p["target_item_id"], p["source_item_id"])
    t, s = np.array(list(first)), np.array(list(first.values()))
    return np.mean(np.sum(z[t] * z[s], 1) / np.linalg.norm(z[t], axis=1)
                   / np.linalg.norm(z[s], axis=1))
  assert closeness(_world(story_product_closeness=20.0)) > closeness(_world()) + 0.3


def test_topic_popularity_divergence_separates_the_domains_topics():
  def tv(w):
    t = [np.bincount(w.topic[w.store.item_ids(domain=d)], minlength=w.config.num_topics)
         for d in (schema.SOURCE, schema.TARGET)]
    return 0.5 * np.abs(t[0] / t[0].sum() - t[1] / t[1].sum()).sum()
  assert tv(_world(topic_popularity_divergence=1.0)) > tv(_world()) + 0.1


def test_dual_pair_splits_keep_a_storys_pairs_together(tmp_path):
  w = _world()
  by_split = items.split_dual_pairs(w.config, syn.dual_pair_records(w), w.num_items)
  stories = {s: {p["target_item_id"] for p in recs} for s, recs in by_split.items()}
  assert not (stories["train"] & stories["valid"]) and not (stories["train"] & stories["test"])
  assert not (stories["valid"] & stories["test"])
  n = sum(len(v) for v in stories.values())
  assert 0.04 < len(stories["valid"]) / n < 0.18 and 0.04 < len(stories["test"]) / n < 0.18
  assert sum(len(v) for v in by_split.values()) == len(syn.dual_pair_records(w))


# ----------------------------------------------------------------------------- THACIL


def test_category_interest_narrows_the_categories_of_a_history():
  def categories(w):
    recs = _records(w, 80)["ranking"]["test"]
    return np.mean([len(set(w.store.category[r["target_item_ids"] + r["source_item_ids"]]))
                    for r in recs])
  assert categories(_world(category_interest_weight=3.0)) < categories(_world()) - 1.0


def test_item_taste_tilts_behaviours_and_clicks():
  w = _world(item_taste_weight=3.0)
  chosen, clicked, unclicked = [], [], []
  for u in range(60):
    user, _ = _profile(w, u)
    recs = syn.user_records(w, u)
    aff = lambda ids: w.residual[np.asarray(ids, np.int64)] @ user.item_pref  # noqa: E731
    chosen.extend(aff([r["positive_item_id"] for r in recs["matching"]["train"]]))
    for r in recs["ranking"]["train"]:
      (clicked if r["label"] else unclicked).append(aff([r["item_id"]])[0])
  assert np.mean(chosen) > 0.15 and np.mean(clicked) > np.mean(unclicked) + 0.1


def test_interest_drift_moves_behaviour_topics_between_first_and_last_days():
  def distance(w):
    out = []
    for u in range(w.config.num_users):
      recs = syn.user_records(w, u)["matching"]
      items_ = [(r["timestamp"], r["positive_item_id"]) for s in ("train", "valid", "test")
                for r in recs[s]]
      early = [i for t, i in items_ if t < 2 * syn.DAY_S]
      late = [i for t, i in items_ if t >= (w.config.days - 2) * syn.DAY_S]
      if len(early) >= 3 and len(late) >= 3:
        h = [np.bincount(w.topic[x], minlength=w.config.num_topics) for x in (early, late)]
        out.append(0.5 * np.abs(h[0] / h[0].sum() - h[1] / h[1].sum()).sum())
    return np.mean(out)
  assert distance(_world(interest_drift_per_day=0.4)) > distance(_world()) + 0.05
  w = _world(interest_drift_per_day=0.4)
  user, _ = _profile(w, 0)
  assert np.allclose(users.interest_at(w, user, schema.TARGET, 0), user.interest[schema.TARGET])
  later = users.interest_at(w, user, schema.TARGET, 3)
  assert np.allclose(later, 0.6 ** 3 * user.interest[schema.TARGET]
                     + (1 - 0.6 ** 3) * user.drift)


def test_max_seq_len_writes_long_histories_within_the_contract():
  cfg = syn.get_config("tiny", num_users=6, sessions_per_user=40.0, max_seq_len=160)
  w = syn.build_world(cfg, with_visual=False)
  info = simulate.dataset_info(cfg)
  assert info.max_seq_len == 160
  recs = _records(w)
  longest = max(len(r["source_item_ids"]) for r in recs["ranking"]["test"])
  assert 50 < longest <= 160
  assert max(len(r["seq_item_ids"]) for r in recs["matching"]["test"]) == 160
  for kind, splits in recs.items():
    for split, rs in splits.items():
      for r in rs[:50]:
        check_record(getattr(schema, kind.upper()), r, info=info)


# ----------------------------------------------------------------------------- COUPLE


def test_category_tags_are_specific_to_a_category():
  w = _world(category_tags=4, category_tag_share=0.5)
  cfg, store = w.config, w.store
  first = items.category_tag_base(cfg) + 1
  ids = store.item_ids()
  tags = store.tags[ids]
  specific = tags >= first
  assert np.mean(specific[tags > 0]) == pytest.approx(0.5, abs=0.06)
  owner = (tags - first) // cfg.category_tags + 1  # the category a specific tag belongs to.
  assert np.all(owner[specific] == np.broadcast_to(store.category[ids][:, None],
                                                   tags.shape)[specific])
  for row in tags:  # still distinct within an item.
    real = row[row > 0]
    assert len(set(real.tolist())) == len(real)
  assert tags.max() <= cfg.num_tags
  assert np.array_equal(_world().store.tags, _world(category_tags=4).store.tags)  # share 0.


def test_user_groups_pull_interests_to_group_centres():
  def gap(w):
    prof = [_profile(w, u)[0] for u in range(w.config.num_users)]
    theta = np.stack([p.shared for p in prof])
    group = np.array([p.group for p in prof])
    sim = theta @ theta.T / np.outer(np.linalg.norm(theta, axis=1), np.linalg.norm(theta, axis=1))
    same = group[:, None] == group[None, :]
    np.fill_diagonal(same, False)
    other = group[:, None] != group[None, :]
    return sim[same].mean() - sim[other].mean()
  assert gap(_world(user_groups=4, user_group_weight=0.8)) > gap(_world(user_groups=4)) + 0.2


def test_matching_test_cold_positives_are_cold_items_for_warm_and_cold_users():
  w = _world(cold_user_share=0.3)
  recs = _records(w)["matching"]["test_cold"]
  assert recs and all(w.store.cold[r["positive_item_id"]] == 1 for r in recs)
  assert {r.get("cold_user", 0) for r in recs} == {0, 1}
  for r in recs:  # the cold item never entered any history.
    assert not w.store.cold[np.asarray(r["seq_item_ids"])].any()


# ----------------------------------------------------------------------------- M5


def test_scenario_user_tilt_shows_in_clicks():
  w = _world(scenario_user_tilt=2.0)
  tilts, labels = [], []
  for u in range(100):
    user, _ = _profile(w, u)
    for r in syn.user_records(w, u)["ranking"]["train"]:
      tilts.append(user.scenario_tilt[r["scenario_id"], w.topic[r["item_id"]]])
      labels.append(r["label"])
  tilts, labels = np.array(tilts), np.array(labels)
  assert tilts[labels == 1].mean() > tilts[labels == 0].mean() + 0.3


def test_scenario_traffic_skew_shrinks_the_small_scenarios():
  def smallest_share(**knobs):  # scenario 3 has the smallest traffic (0.1) in the preset
    w = _world(**knobs)
    scen = [r["scenario_id"] for u in range(60)
            for r in syn.user_records(w, u)["matching"]["train"]]
    return np.mean(np.asarray(scen) == 3)
  flat, given, steep = (smallest_share(scenario_traffic_skew=s) for s in (0.0, 1.0, 2.0))
  assert flat > given + 0.05 and given > steep + 0.03
  with pytest.raises(ValueError, match="scenario_traffic_skew"):
    syn.get_config("tiny", scenario_traffic_skew=-1.0)


def test_scenario_behaviour_weight_tilts_organic_target_behaviour():
  def preference(w):
    out = []
    for u in range(100):
      for r in syn.user_records(w, u)["matching"]["train"]:
        out.append(w.scenario_category_pref[r["scenario_id"],
                                            w.store.category[r["positive_item_id"]]])
    return np.mean(out)
  assert preference(_world(scenario_behaviour_weight=3.0)) > preference(_world()) + 0.08


def test_scenario_pool_share_limits_what_a_scenario_shows():
  w = _world(scenario_pool_share=0.3)
  shown = {s: set(p.ids.tolist()) for s, p in enumerate(w.scenario_warm_all)}
  warm = len(w.warm_all[schema.TARGET])
  assert all(0.15 * warm < len(v) < 0.45 * warm for v in shown.values())
  for r in _records(w, 80)["ranking"]["train"]:
    assert r["item_id"] in shown[r["scenario_id"]]
  assert _world().scenario_warm is None


def test_item_kinds_take_their_own_transfer():
  kinds = _world(item_kind_transfer=(1.0, 1.0))
  assert set(np.unique(kinds.store.kind[kinds.store.item_ids(domain=schema.TARGET)])) == {1, 2}
  assert not kinds.store.kind[kinds.store.item_ids(domain=schema.SOURCE)].any()
  assert simulate.dataset_info(kinds.config).num_item_kinds == 2
  # Transfer 1 for every kind = the click model of a world whose transfer is 1 (same users).
  full = _world(transfer=1.0)
  cand = kinds.store.item_ids(domain=schema.TARGET)
  for u in range(5):
    a, sess = _profile(kinds, u)
    b, _ = _profile(full, u)
    pa = users.click_probability(kinds, a, cand, sess[0].target_intent, 1, 2)
    pb = users.click_probability(full, b, cand, sess[0].target_intent, 1, 2)
    np.testing.assert_allclose(pa, pb, rtol=1e-12)


def test_subsidiary_constants():
  w = _world(sub_source_watch_rate=2.0)
  counts = [r["seq_subsidiary"][0::2] for r in _records(w, 40)["matching"]["train"]]
  doms = [r["seq_domain_ids"] for r in _records(w, 40)["matching"]["train"]]
  src = np.concatenate([np.asarray(c)[np.asarray(d) == schema.SOURCE]
                        for c, d in zip(counts, doms)])
  assert src.mean() == pytest.approx(3.0, abs=0.3)


# ----------------------------------------------------------------------------- planted scores


def test_positive_intensity_sums_to_the_sessions_expected_positives():
  """Sum over the catalogue = r_t + r_imp E[p | candidate] + r_cold E[p | cold candidate],
  the expectations estimated from the simulator's own candidate draws."""
  w = _world(scenario_pool_share=0.5, item_taste_weight=1.0)
  catalogue = w.store.item_ids(domain=schema.TARGET)
  rng = np.random.default_rng(7)
  for u in (0, 1, 2):
    user, sessions = _profile(w, u)
    sess = sessions[-1]  # the test day: cold impressions too.
    total = planted.positive_intensity(w, user, sess, catalogue).sum()
    rate_t, rate_i, rate_c = users.session_rates(w, user, sess)
    expect = rate_t
    for cold, rate in ((False, rate_i), (True, rate_c)):
      if rate:
        cand = simulate._candidates(w, rng, sess.target_intent, 40_000, cold, sess.scenario)
        expect += rate * users.click_probability(w, user, cand, sess.target_intent,
                                                 sess.scenario, sess.day).mean()
    assert total == pytest.approx(expect, rel=0.02)


def test_oracle_ranks_matching_positives_above_popularity():
  from tfrec.datasets.synthetic.oracle import SyntheticOracle
  cfg = syn.get_config("tiny", num_users=60)
  w = syn.build_world(cfg, with_visual=False)
  oracle = SyntheticOracle(simulate.dataset_info(cfg))
  recs = _records(w)["matching"]["test"]
  catalogue = w.store.item_ids(domain=schema.TARGET, cold=False)
  def rank(scores, pos):
    return int((scores > scores[np.searchsorted(catalogue, pos)]).sum())
  ours, popular = [], []
  for r in recs:
    s = oracle.positive_intensities(np.array([r["user_id"]]), np.array([r["timestamp"]]),
                                    np.array([r["scenario_id"]]), catalogue[None])[0]
    ours.append(rank(s, r["positive_item_id"]))
    popular.append(rank(w.popularity[catalogue], r["positive_item_id"]))
  assert np.mean(np.array(ours) < 10) > np.mean(np.array(popular) < 10) + 0.1


def test_mount_intensity_is_the_mounting_distribution():
  w = _world(story_product_closeness=5.0)
  src = w.store.item_ids(domain=schema.SOURCE)
  pairs = syn.dual_pair_records(w)
  stories = sorted({p["target_item_id"] for p in pairs})[:40]
  for t in stories:
    score = planted.mount_intensity(w, t, src)
    assert score.sum() == pytest.approx(1.0 + w.config.dual_second_share)
  # The mounted products score far above a random product of the catalogue.
  mounted = [planted.mount_intensity(w, p["target_item_id"], np.array([p["source_item_id"]]))[0]
             for p in pairs[:200]]
  assert np.mean(mounted) > 10 / len(src)

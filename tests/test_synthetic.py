"""Tests of the synthetic cross-domain generator (`tfrec.datasets.synthetic`), tiny preset."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.data import schema
from tfrec.datasets import synthetic as syn
from tfrec.datasets.synthetic import simulate, stats, users
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.data.tfrecord_io import Manifest, check_record, decode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAST_DAY_S = (syn.get_config("tiny").days - 1) * syn.DAY_S  # Day 7 of 8: test.
VALID_DAY_S = LAST_DAY_S - syn.DAY_S                         # Day 6: valid.


def _auc(labels, scores) -> float:
  """Rank-based ROC AUC with averaged ties."""
  labels = np.asarray(labels, bool)
  scores = np.asarray(scores, np.float64)
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  ends = np.cumsum(counts)
  ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]
  pos = labels.sum()
  neg = len(labels) - pos
  return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


_all_records = simulate.users_records


def _topic_share_score(world, recs, domain):
  """Share of the `domain` history items whose topic equals the candidate's topic (0 if none)."""
  scores = []
  for r in recs:
    hist = np.asarray(r[f"{domain}_item_ids"], np.int64)
    same = world.topic[hist] == world.topic[r["item_id"]]
    scores.append(same.mean() if len(hist) else 0.0)
  return np.asarray(scores)


def _ranking(records, splits=("train", "valid", "test")):
  return [r for split in splits for r in records["ranking"][split]]


@pytest.fixture(scope="module")
def world():
  return syn.build_world(syn.get_config("tiny"))


@pytest.fixture(scope="module")
def records(world):
  return _all_records(world)


def _files(directory):
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


# ----------------------------------------------------------------------------- config


def test_presets_and_overrides():
  assert set(syn.CONFIGS) == {"tiny", "small", "default", "large", "semi", "adapt", "thacil",
                              "couple", "m5"}
  sizes = [syn.CONFIGS[n].num_users for n in ("tiny", "small", "default", "large")]
  assert sizes == sorted(sizes) and sizes[-1] >= 100_000
  cfg = syn.get_config("tiny", seed=7, transfer=0.0, num_users=None)
  assert (cfg.seed, cfg.transfer, cfg.name, cfg.num_users) == (7, 0.0, "tiny", 200)
  with pytest.raises(ValueError, match="unknown synthetic config"):
    syn.get_config("huge")
  with pytest.raises(ValueError, match="no_such_field"):
    syn.get_config("tiny", no_such_field=1)
  with pytest.raises(ValueError, match="transfer"):
    syn.get_config("tiny", transfer=1.5)
  with pytest.raises(ValueError, match="scenario_traffic"):
    syn.get_config("tiny", num_scenarios=3)
  with pytest.raises(ValueError, match=r"days=2 must be >= 3"):
    syn.get_config("tiny", days=2)  # No day would be left for train.


# ----------------------------------------------------------------------------- default world

# The default world must not move when knobs are added: these digests were computed with the code
# of commit 97f49e8 (before the issue-11 knobs), by `_records_digest(build_world(get_config(
# "tiny"), with_visual=False))`: the sha256 over every user's `user_records` (each kind and split,
# users in id order) as canonical JSON (sorted keys, floats rounded to 10 decimals so that an ulp
# of np.exp on another CPU does not matter) followed by `dual_pair_records`, and the sha256 of the
# store's integer columns. Records include labels and oracle_prob, so this pins users, items,
# events, labels and planted probabilities.
TINY_RECORDS_SHA256 = "472842fde87eb16d5b0271759f752975c75d7495b98f21cc24b6beb9b06f24af"
TINY_STORE_SHA256 = "965944ade8321b5fde8d5ea3e66d71c7be1f86afae08faa60f93b49c5c7603fb"


def _canonical(x):
  if isinstance(x, float):
    return round(x, 10)
  if isinstance(x, dict):
    return {k: _canonical(v) for k, v in x.items()}
  if isinstance(x, list):
    return [_canonical(v) for v in x]
  return x


def _records_digest(world) -> str:
  """The pinned records: every kind and split the digest was taken on (matching/test_cold,
  added since, is left out: it adds records without changing any other)."""
  h = hashlib.sha256()
  for user_id in range(world.config.num_users):
    recs = syn.user_records(world, user_id)
    del recs["matching"]["test_cold"]
    h.update(json.dumps(_canonical(recs), sort_keys=True).encode())
  h.update(json.dumps(syn.dual_pair_records(world), sort_keys=True).encode())
  return h.hexdigest()


def _store_digest(store) -> str:
  h = hashlib.sha256()
  for col in ("domain", "category", "tags", "title", "cold"):
    h.update(np.ascontiguousarray(getattr(store, col), np.int64).tobytes())
  return h.hexdigest()


def test_default_knobs_leave_the_world_unchanged():
  w = syn.build_world(syn.get_config("tiny"), with_visual=False)
  assert _store_digest(w.store) == TINY_STORE_SHA256
  assert _records_digest(w) == TINY_RECORDS_SHA256


# ----------------------------------------------------------------------------- files


def test_generate_is_deterministic_across_runs_and_processes(tmp_path):
  cfg = syn.get_config("tiny", num_users=40)
  syn.generate(cfg, str(tmp_path / "a"), num_shards=2, verbose=False)
  code = ("import sys; from tfrec.datasets import synthetic as s; "
          "s.generate(s.get_config('tiny', num_users=40), sys.argv[1], num_shards=2, "
          "verbose=False)")
  env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=REPO)
  subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], check=True, env=env,
                 cwd=REPO, capture_output=True)
  syn.generate(syn.get_config("tiny", num_users=40, seed=1), str(tmp_path / "c"),
               num_shards=2, verbose=False)
  a, b, c = (_files(tmp_path / name) for name in "abc")
  assert "items.npz" in a and "ranking/train-00001-of-00002.tfrecord" in a
  assert a == b  # Byte-identical, even with another PYTHONHASHSEED.
  assert a["items.npz"] != c["items.npz"]
  assert a["ranking/train-00000-of-00002.tfrecord"] != c["ranking/train-00000-of-00002.tfrecord"]


def test_generate_layout_and_records(tmp_path):
  cfg = syn.get_config("tiny", num_users=30)
  info = syn.generate(cfg, str(tmp_path), num_shards=3, verbose=False)
  loaded = DatasetInfo.load(str(tmp_path))
  assert loaded == info and info.name == "synthetic/tiny"
  assert info.extra["config"]["num_users"] == 30 and info.extra["seed"] == 0
  store = ItemStore.load(str(tmp_path))
  store.validate(info=info)
  assert store.num_items == info.num_items and store.visual_dim == cfg.visual_dim
  for kind, splits in syn.SPLITS.items():
    for split in splits:
      manifest = Manifest.load(str(tmp_path), kind, split)
      manifest.verify(str(tmp_path))
      assert len(manifest.shards) == 3 and manifest.num_records > 0, (kind, split)
      with open(manifest.paths(str(tmp_path))[0], "rb") as f:
        assert f.read(1)  # Shard 0 holds users 0, 3, ...: not empty.
  import tensorflow as tf
  path = Manifest.load(str(tmp_path), "ranking", "train").paths(str(tmp_path))[1]
  for raw in tf.data.TFRecordDataset(path).take(20).as_numpy_iterator():
    rec = decode(schema.RANKING, raw, path)
    check_record(schema.RANKING, rec, info)
    assert rec["user_id"][0] % 3 == 1  # shard = user_id % num_shards.
    assert 0.0 <= rec["oracle_prob"][0] <= 1.0


def test_cli_tiny(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "tfrec.datasets.synthetic", f"--out={tmp_path}", "--config=tiny",
       "--num_users=20", "--seed=3", "--workers=1"],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "ranking/test" in out.stdout and "oracle AUC" in out.stdout
  assert "ranking/valid" in out.stdout and "matching/valid" in out.stdout
  assert "train = days 0-5, valid = day 6, test and test_cold = day 7" in out.stdout
  info = DatasetInfo.load(str(tmp_path))
  assert info.num_users == 20 and info.extra["seed"] == 3


# ----------------------------------------------------------------------------- records


def test_user_records_pass_the_schema(world, records):
  info = syn.dataset_info(world.config)
  for kind, by_split in records.items():
    for split, recs in by_split.items():
      assert recs, (kind, split)
      for rec in recs:
        check_record(schema.get_kind(kind), rec, info)
  for rec in syn.dual_pair_records(world):
    check_record(schema.DUAL_PAIR, rec, info)


def test_user_records_do_not_depend_on_other_users(world):
  alone = syn.user_records(world, 5)
  in_loop = [syn.user_records(world, u) for u in range(8)]
  assert alone == in_loop[5]
  assert alone != in_loop[4]
  again = syn.user_records(syn.build_world(world.config, with_visual=False), 5)
  assert again == alone  # A rebuilt world (without visuals, as in the workers) agrees.


def test_histories_are_past_and_newest_last(records):
  for rec in _ranking(records, ("train", "valid", "test", "test_cold")):
    assert rec["source_item_ids"] or rec["target_item_ids"]
    for domain in ("source", "target"):
      ts = np.asarray(rec[f"{domain}_timestamps"])
      assert len(ts) == len(rec[f"{domain}_item_ids"]) <= schema.MAX_SEQ_LEN
      assert np.all(ts < rec["timestamp"]) and np.all(np.diff(ts) >= 0)
  for rec in [r for split in ("train", "valid", "test") for r in records["matching"][split]]:
    ts = np.asarray(rec["seq_timestamps"])
    assert 1 <= len(ts) <= schema.MAX_MATCH_SEQ_LEN
    assert np.all(ts < rec["timestamp"]) and np.all(np.diff(ts) >= 0)
    sub = np.asarray(rec["seq_subsidiary"]).reshape(len(ts), schema.NUM_SUBSIDIARY)
    assert np.all(sub[:, 0] >= 1) and np.all(sub[:, 0] == np.round(sub[:, 0]))
    assert np.all(sub[:, 1] >= 0)
  # The next positive shows up in later histories (clicks join the target history).
  rec = records["matching"]["train"][0]
  later = [r for r in records["matching"]["train"] if r["user_id"] == rec["user_id"]
           and r["timestamp"] > rec["timestamp"]]
  assert later and rec["positive_item_id"] in later[0]["seq_item_ids"]


def test_split_by_day(records):
  assert syn.SPLITS["ranking"] == ("train", "valid", "test", "test_cold")
  assert syn.SPLITS["matching"] == ("train", "valid", "test", "test_cold")
  assert syn.SPLITS["dual_pair"] == ("train", "valid", "test")
  for rec in records["ranking"]["train"] + records["matching"]["train"]:
    assert rec["timestamp"] < VALID_DAY_S  # Days 0..5.
  for rec in records["ranking"]["valid"] + records["matching"]["valid"]:
    assert VALID_DAY_S <= rec["timestamp"] < LAST_DAY_S  # Day 6.
  for rec in (records["ranking"]["test"] + records["ranking"]["test_cold"]
              + records["matching"]["test"] + records["matching"]["test_cold"]):
    assert LAST_DAY_S <= rec["timestamp"] < LAST_DAY_S + syn.DAY_S  # Day 7.
  for rec in records["ccl_pair"]["train"]:  # No valid-day or test-day session.
    ts = rec["source_timestamps"] + rec["target_timestamps"]
    assert max(ts) < VALID_DAY_S and max(ts) - min(ts) < 3600  # One session (< 1 hour).
  # Valid and test histories reach back into the earlier days.
  for split in ("valid", "test"):
    assert any(min(r["source_timestamps"] + r["target_timestamps"]) < VALID_DAY_S
               for r in records["ranking"][split])
  cfg = syn.get_config("tiny")
  assert [syn.split_of_day(cfg, d * syn.DAY_S + 5) for d in range(8)] == \
      ["train"] * 6 + ["valid", "test"]
  assert syn.split_of_day(cfg, VALID_DAY_S - 1) == "train"
  assert syn.split_of_day(cfg, LAST_DAY_S - 1) == "valid"


def test_valid_split_moves_records_without_changing_them(world, monkeypatch):
  """The valid split only reassigns day-6 records: with the old two-way rule (last day test,
  every earlier day train) the same users give train = train + valid, the same test, and
  ccl_pair = today's ccl_pair + the day-6 sessions."""
  users = range(10)
  now = [syn.user_records(world, u) for u in users]
  monkeypatch.setattr(simulate, "split_of_day",
                      lambda cfg, t: "test" if t // syn.DAY_S >= cfg.days - 1 else "train")
  old = [syn.user_records(world, u) for u in users]
  assert any(n["ranking"]["valid"] for n in now)
  for n, o in zip(now, old):
    for kind in ("ranking", "matching"):
      assert o[kind]["valid"] == []
      assert o[kind]["train"] == n[kind]["train"] + n[kind]["valid"]
      assert o[kind]["test"] == n[kind]["test"]
    assert o["ranking"]["test_cold"] == n["ranking"]["test_cold"]
    day6 = [r for r in o["ccl_pair"]["train"] if r["source_timestamps"][0] >= VALID_DAY_S]
    assert o["ccl_pair"]["train"] == n["ccl_pair"]["train"] + day6


def test_cold_items_only_in_test_cold(world, records):
  cold = set(world.store.item_ids(cold=True).tolist())
  assert len(cold) == round(world.config.cold_item_share * world.config.num_target_items)
  assert all(world.store.domain[i] == schema.TARGET for i in cold)
  seen = set()
  for rec in _ranking(records):
    seen.update([rec["item_id"], *rec["source_item_ids"], *rec["target_item_ids"]])
  for rec in [r for split in ("train", "valid", "test") for r in records["matching"][split]]:
    seen.update([rec["positive_item_id"], *rec["seq_item_ids"]])
  for rec in records["ccl_pair"]["train"]:
    seen.update(rec["source_item_ids"] + rec["target_item_ids"])
  for rec in syn.dual_pair_records(world):
    seen.update([rec["target_item_id"], rec["source_item_id"]])
  assert not seen & cold
  cold_recs = records["ranking"]["test_cold"]
  assert cold_recs and all(r["item_id"] in cold for r in cold_recs)
  for rec in cold_recs:  # Their histories are warm too.
    assert not set(rec["source_item_ids"] + rec["target_item_ids"]) & cold


def test_ccl_and_dual_pairs(world, records):
  for rec in records["ccl_pair"]["train"]:
    assert world.store.domain[rec["source_item_ids"]].max() == schema.SOURCE
    assert world.store.domain[rec["target_item_ids"]].min() == schema.TARGET
  pairs = syn.dual_pair_records(world)
  warm_targets = world.store.item_ids(domain=schema.TARGET, cold=False)
  assert {p["target_item_id"] for p in pairs} == set(warm_targets.tolist())
  assert len(pairs) > len(warm_targets)  # Some items get a second pair.
  tgt = np.array([p["target_item_id"] for p in pairs])
  src = np.array([p["source_item_id"] for p in pairs])
  assert np.all(world.store.domain[src] == schema.SOURCE)
  assert np.all(world.topic[src] == world.topic[tgt])
  assert np.mean(world.store.category[src] == world.store.category[tgt]) > 0.6


# ----------------------------------------------------------------------------- planted structure


def test_oracle_is_informative_and_labels_follow_it(records):
  test = records["ranking"]["test"]
  labels = np.array([r["label"] for r in test])
  probs = np.array([r["oracle_prob"] for r in test])
  assert _auc(labels, probs) > 0.7
  train = records["ranking"]["train"]
  labels = np.array([r["label"] for r in train])
  probs = np.array([r["oracle_prob"] for r in train])
  assert 0.3 <= labels.mean() <= 0.5
  assert abs(labels.mean() - probs.mean()) < 0.03
  # Calibration: within oracle-probability bins the click rate follows the probability.
  for low, high in ((0.0, 0.3), (0.3, 0.6), (0.6, 1.0)):
    sel = (probs >= low) & (probs < high)
    assert abs(labels[sel].mean() - probs[sel].mean()) < 0.05


def test_source_history_helps_sparse_target_users(world, records):
  recs = [r for r in _ranking(records) if len(r["target_item_ids"]) <= 2]
  assert len(recs) > 300
  labels = [r["label"] for r in recs]
  auc_source = _auc(labels, _topic_share_score(world, recs, "source"))
  auc_target = _auc(labels, _topic_share_score(world, recs, "target"))
  assert auc_source > auc_target + 0.03 and auc_source > 0.65


def test_transfer_controls_what_the_source_tells():
  aucs = {}
  for transfer in (0.0, 1.0):
    w = syn.build_world(syn.get_config("tiny", transfer=transfer))
    recs = _ranking(_all_records(w, num_users=120))
    aucs[transfer] = _auc([r["label"] for r in recs], _topic_share_score(w, recs, "source"))
  assert aucs[1.0] > aucs[0.0] + 0.05, aucs


# ----------------------------------------------------------------------------- item features


def _measured_tag_overlap(store):
  used = [set(store.tags[store.item_ids(domain=d)].ravel().tolist()) - {0} for d in (0, 1)]
  return [len(used[0] & used[1]) / len(u) for u in used]


@pytest.mark.parametrize("overlap", [0.3, 0.6])
def test_tag_overlap(overlap):
  w = syn.build_world(syn.get_config("tiny", tag_overlap=overlap))
  for share in _measured_tag_overlap(w.store):
    assert abs(share - overlap) < 0.1


def test_item_store_layout(world):
  store, cfg = world.store, world.config
  assert store.num_items == cfg.num_source_items + cfg.num_target_items
  for col in store.columns().values():
    assert not np.any(col[0])
  src, tgt = store.item_ids(domain=0), store.item_ids(domain=1)
  assert src.max() == cfg.num_source_items and tgt.min() == cfg.num_source_items + 1
  assert np.all((store.category[1:] - 1) // cfg.categories_per_topic == world.topic[1:])
  assert np.all((store.tags[1:] > 0).sum(1) >= 2) and store.tags.max() <= cfg.num_tags
  title_len = (store.title > 0).sum(1)
  assert title_len[src].max() <= 6 and title_len[tgt].min() >= 8
  func = (store.title >= 1) & (store.title <= cfg.title_function_words)
  assert not func[src].any() and func[tgt].mean() > 0.15
  # Title tokens other than function words belong to the item's topic block.
  block = (store.title - cfg.title_function_words - 1) // cfg.tokens_per_topic
  topical = store.title > cfg.title_function_words
  assert np.all(block[topical] == np.broadcast_to(world.topic[:, None], block.shape)[topical])


def test_visual_domain_gap(world):
  store = world.store
  src, tgt = store.item_ids(domain=0), store.item_ids(domain=1)
  centroids = np.stack([store.visual[src].mean(0), store.visual[tgt].mean(0)])
  items = np.concatenate([src, tgt])
  dist = ((store.visual[items][:, None, :] - centroids[None]) ** 2).sum(-1)
  accuracy = np.mean(dist.argmin(1) == store.domain[items])
  assert accuracy > 0.9
  no_visual = syn.build_world(syn.get_config("tiny", visual_dim=0)).store
  assert no_visual.visual.shape == (store.num_items + 1, 0)
  np.testing.assert_array_equal(no_visual.tags, store.tags)  # Visual has its own stream.


def test_streaming_summary_auc_matches_exact(records):
  total = stats.Stats()
  half = len(records["ranking"]["test"]) // 2
  part = stats.Stats()
  total.add("ranking", "test", records["ranking"]["test"][:half])
  part.add("ranking", "test", records["ranking"]["test"][half:])
  total.merge(part)
  test = records["ranking"]["test"]
  exact = _auc([r["label"] for r in test], [r["oracle_prob"] for r in test])
  assert abs(total.auc("test") - exact) < 0.005
  assert total.counts["ranking", "test"] == len(test)


# ----------------------------------------------------------------------------- issue-11 knobs


def _knob_world(**knobs):
  return syn.build_world(syn.get_config("tiny", **knobs), with_visual=False)


def _test_history(world, num_users=None):
  """SEMI Table-4 figures of the ranking/test examples (`stats.history_summary`)."""
  recs = _all_records(world, num_users)
  return stats.history_summary(stats.history_stats(world.store.category,
                                                         recs["ranking"]["test"]))


def _target_events_before_test(world):
  """<int>[num_users] target behaviours (organic + clicks) of each user before the test day."""
  out = []
  for u in range(world.config.num_users):
    recs = syn.user_records(world, u)["matching"]
    out.append(len(recs["train"]) + len(recs["valid"]))
  return np.array(out)


def test_knob_validation_and_assignments():
  with pytest.raises(ValueError, match="target_intent_coupling"):
    syn.get_config("tiny", target_intent_coupling=1.5)
  with pytest.raises(ValueError, match="ccl_pair_scope"):
    syn.get_config("tiny", ccl_pair_scope="day")
  with pytest.raises(ValueError, match="session_dispersion"):
    syn.get_config("tiny", session_dispersion=-1.0)
  parse = syn.world.parse_assignments
  got = parse(["cold_user_share=0.2", "ccl_only_users=5", "ccl_pair_scope=week",
               "scenario_traffic=0.4,0.3,0.2,0.1", "ccl_only_users=7"])
  assert got == {"cold_user_share": 0.2, "ccl_only_users": 7, "ccl_pair_scope": "week",
                 "scenario_traffic": (0.4, 0.3, 0.2, 0.1)}
  assert isinstance(got["ccl_only_users"], int)
  with pytest.raises(ValueError, match=r"unknown SyntheticConfig field 'bogus'; valid: name, "):
    parse(["bogus=1"])
  with pytest.raises(ValueError, match="expected field=value"):
    parse(["cold_user_share"])
  with pytest.raises(ValueError, match="ccl_only_users takes a value of type int"):
    parse(["ccl_only_users=0.5"])


def test_cli_set(tmp_path):
  run = lambda *a: subprocess.run(  # noqa: E731
      [sys.executable, "-m", "tfrec.datasets.synthetic", f"--out={tmp_path}", "--config=tiny",
       "--num_users=12", "--workers=1", *a], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
      capture_output=True, text=True)
  out = run("--set=cold_user_share=0.5", "--set", "ccl_only_users=8", "--transfer=0.2")
  assert out.returncode == 0, out.stderr[-2000:]
  info = DatasetInfo.load(str(tmp_path))
  cfg = info.extra["config"]
  assert (cfg["cold_user_share"], cfg["ccl_only_users"], cfg["transfer"]) == (0.5, 8, 0.2)
  assert info.num_users == 20  # CCL-only users counted.
  assert "SEMI" in out.stdout and "overlap" in out.stdout
  with open(tmp_path / "stats.md") as f:
    stats = f.read()
  assert "| SEMI (Table 4) | 16.3 | 1.93 | 12% |" in stats and "| test |" in stats
  bad = run("--set=no_such_knob=1")
  assert bad.returncode == 1
  lines = bad.stderr.strip().splitlines()
  assert "unknown SyntheticConfig field 'no_such_knob'; valid:" in lines[-1]
  assert "ccl_pair_scope" in lines[-1] and "Traceback" not in bad.stderr


def test_target_intent_coupling_lowers_cross_domain_overlap():
  coupled = _test_history(_knob_world())
  free = _test_history(_knob_world(target_intent_coupling=0.0))
  assert free["overlap_share"] < coupled["overlap_share"] - 0.08, (coupled, free)
  w = _knob_world(target_intent_coupling=0.0)
  rng = np.random.default_rng([w.config.seed, 3])
  sessions = users.plan_sessions(w, rng, users.make_user(w, rng, 3))
  assert any(s.target_intent != s.intent for s in sessions)
  base = _knob_world()
  rng = np.random.default_rng([base.config.seed, 3])
  base_sessions = users.plan_sessions(base, rng, users.make_user(base, rng, 3))
  assert all(s.target_intent == s.intent for s in base_sessions)
  # Only the target intent moved: the main stream's sessions are the same.
  assert [s[:4] for s in sessions] == [s[:4] for s in base_sessions]


def test_target_taste_weight_shows_in_clicks_and_target_history():
  w = _knob_world(target_taste_weight=2.0)
  clicked, unclicked, organic, baseline = [], [], [], []
  for u in range(80):
    rng = np.random.default_rng([w.config.seed, u])
    style = users.make_user(w, rng, u).style
    recs = syn.user_records(w, u)
    for r in _ranking(recs):
      (clicked if r["label"] else unclicked).append(w.taste[r["item_id"]] @ style)
    for r in recs["matching"]["train"]:
      organic.append(w.taste[r["positive_item_id"]] @ style)
    baseline.append(w.taste[w.store.item_ids(domain=schema.TARGET, cold=False)] @ style)
  assert np.mean(clicked) > np.mean(unclicked) + 0.3
  assert np.mean(organic) > np.mean(np.concatenate(baseline)) + 0.3  # The target history shows it.
  assert not np.any(w.taste[w.store.item_ids(domain=schema.SOURCE)])  # Source items: none.


def test_target_activity_spread_makes_nearly_silent_users():
  base = _target_events_before_test(_knob_world())
  spread = _target_events_before_test(_knob_world(target_activity_spread=1.5))
  assert np.mean(spread <= 1) > np.mean(base <= 1) + 0.1, (np.mean(base <= 1),
                                                              np.mean(spread <= 1))


def test_session_dispersion_widens_session_counts():
  def counts(w):
    out = []
    for u in range(w.config.num_users):
      rng = np.random.default_rng([w.config.seed, u])
      out.append(len(users.plan_sessions(w, rng, users.make_user(w, rng, u))))
    return np.array(out)
  base, wide = counts(_knob_world()), counts(_knob_world(session_dispersion=1.0))
  assert np.var(wide) > 3 * np.var(base), (np.var(base), np.var(wide))
  assert abs(np.mean(wide) - np.mean(base)) < 0.25 * np.mean(base)


def test_cold_users_start_on_the_test_day_and_are_flagged():
  w = _knob_world(cold_user_share=0.3)
  cold = 0
  for u in range(w.config.num_users):
    rng = np.random.default_rng([w.config.seed, u])
    is_cold = users.make_user(w, rng, u).cold
    recs = syn.user_records(w, u)
    cold += is_cold
    flagged = [r for kind in ("ranking", "matching") for recs_ in recs[kind].values()
               for r in recs_]
    assert all(r.get("cold_user", 0) == int(is_cold) for r in flagged)
    if is_cold:
      assert not recs["ranking"]["train"] and not recs["ranking"]["valid"]
      assert not recs["matching"]["train"] and not recs["matching"]["valid"]
      assert not recs["ccl_pair"]["train"]
      for r in recs["ranking"]["test"] + recs["ranking"]["test_cold"]:
        assert all(t >= LAST_DAY_S for t in r["target_timestamps"])
        assert r["source_item_ids"]  # Their source history is there.
  assert 0.2 < cold / w.config.num_users < 0.4
  info = syn.dataset_info(w.config)
  for u in range(20):
    for kind, by_split in syn.user_records(w, u).items():
      for recs_ in by_split.values():
        for r in recs_:
          check_record(schema.get_kind(kind), r, info)
  assert _test_history(w)["cold"] > 0.15 and _test_history(_knob_world())["cold"] == 0.0


def test_ccl_only_users_write_only_ccl_pairs(tmp_path):
  w = _knob_world(ccl_only_users=30)
  assert w.config.total_users == 230
  for u in (200, 215, 229):
    recs = syn.user_records(w, u)
    assert recs["ccl_pair"]["train"] and all(r["user_id"] == u for r in recs["ccl_pair"]["train"])
    assert not any(rs for kind in ("ranking", "matching") for rs in recs[kind].values())
  # The lean path draws what the full simulation draws: a regular user's pairs are equal.
  for u in (0, 7):
    assert simulate.ccl_only_pairs(w, u) == syn.user_records(w, u)["ccl_pair"]["train"]
  cfg = syn.get_config("tiny", num_users=10, ccl_only_users=15)
  info = syn.generate(cfg, str(tmp_path), num_shards=2, verbose=False)
  assert info.num_users == 25
  import tensorflow as tf
  users = {}
  for kind in ("ranking", "matching", "ccl_pair"):
    ids = set()
    for split in syn.SPLITS[kind]:
      for path in Manifest.load(str(tmp_path), kind, split).paths(str(tmp_path)):
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
          ids.add(int(decode(schema.get_kind(kind), raw, path)["user_id"][0]))
    users[kind] = ids
  assert max(users["ranking"] | users["matching"]) < 10
  assert users["ccl_pair"] & set(range(10, 25))


def test_week_scope_gives_one_longer_pair_per_user_week():
  base = _all_records(_knob_world(), 60)["ccl_pair"]["train"]
  week = _all_records(_knob_world(ccl_pair_scope="week"), 60)["ccl_pair"]["train"]
  keys = [(r["user_id"], r["source_timestamps"][0] // (7 * syn.DAY_S)) for r in week]
  assert len(keys) == len(set(keys)) and len(week) < len(base)
  for r in week:
    assert max(r["source_timestamps"] + r["target_timestamps"]) < VALID_DAY_S
    # The time reference: the end of the pair's week, clipped at the train period's end.
    week_end = (r["source_timestamps"][0] // (7 * syn.DAY_S) + 1) * 7 * syn.DAY_S
    assert r["timestamp"] == min(week_end, VALID_DAY_S)
    assert r["timestamp"] >= max(r["source_timestamps"] + r["target_timestamps"])
  assert all("timestamp" not in r for r in base)  # session pairs: their latest event
  assert (np.mean([len(r["target_item_ids"]) for r in week])
          > 2 * np.mean([len(r["target_item_ids"]) for r in base]))
  assert (np.mean([len(r["source_item_ids"]) for r in week])
          > 2 * np.mean([len(r["source_item_ids"]) for r in base]))

"""M5 Table 2's retrieval baselines (issue 17): GRU4Rec+, two-tower BST, SDM, PDN and CL4SRec on
the retrieval contract: shapes, encode-once scores, padding invariance, each model's defining
computation by hand, training through `tfrec.train`, config round trips and the flagfiles."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import tfrec.models.bst_two_tower  # noqa: F401  (registers the models)
import tfrec.models.cl4srec  # noqa: F401
import tfrec.models.gru4rec  # noqa: F401
import tfrec.models.pdn  # noqa: F401
import tfrec.models.sdm  # noqa: F401
from tfrec import train as train_lib
from tfrec.layers import sequence_augment as sa
from tfrec.layers import step_random
from tfrec.models import registry
from tfrec.models.cl4srec import _DIRECT_SEED
from tfrec.models.pdn import distinct_triggers
from tfrec.models.sdm import split_sequence
from tfrec.tasks.ranking_max import ranking_max

from conftest import (NUM_ITEMS, assert_two_replicas_equal_one_device,  # noqa: E402
                      flagfile_config, make_config, run_two_replica_script, tiny_store)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("gru4rec_plus", "bst_two_tower", "sdm", "pdn", "cl4srec")
PROFILE = dict(user_feature_sizes=[2, 7, 21, 10])  # conftest.tiny_info
SMALL = {"gru4rec_plus": dict(hidden=6, num_sampled=5),
         "bst_two_tower": dict(num_heads=2, mlp_units=[8]),
         "sdm": dict(short_len=2, num_heads=2, **PROFILE),
         "pdn": dict(trigger_units=[8], similarity_units=[8], **PROFILE),
         "cl4srec": dict(num_blocks=1, num_heads=1)}
# Arguments other than the defaults, for the round trips (DeepCTR's warning: STYLE.md).
OTHER = {"gru4rec_plus": dict(ranking_loss="top1_max", sample_alpha=0.3,
                              score_regularization=0.5, negatives="in_batch"),
         "bst_two_tower": dict(num_blocks=2, ff_dim=6, positions="order", pooling="max"),
         "sdm": dict(short_len=3, num_heads=1, user_feature_sizes=[3, 7, 21, 10]),
         "pdn": dict(trigger_units=[5, 3], similarity_units=[7]),
         "cl4srec": dict(crop_ratio=0.5, mask_ratio=0.2, reorder_ratio=0.4,
                         augmentations=["mask", "crop"], contrastive_temperature=0.5,
                         similarity="cosine")}
HOUR = 3600


def build(name, **kwargs):
  args = dict(num_items=NUM_ITEMS, dim=4, item_features=["id", "category"], num_categories=4,
              max_seq_len=4, **SMALL[name])
  args.update(kwargs)
  return registry.build(name, **args).build_and_fill(tiny_store())


def feats(seq, positives=None, now=100 * HOUR):
  """A matching batch: behaviours one hour apart ending an hour before the request."""
  seq = np.asarray(seq, np.int64)
  n, steps = seq.shape
  times = now - HOUR * (steps - np.arange(steps))[None].repeat(n, 0)
  return {"seq_item_ids": tf.constant(seq), "seq_mask": tf.constant(seq > 0),
          "seq_timestamps": tf.constant(times, tf.int64),
          "seq_domain_ids": tf.constant((seq > 5).astype(np.int64)),
          "timestamp": tf.fill([n], tf.constant(now, tf.int64)),
          "user_features": tf.constant([[i % 2, 1, 3, i % 10] for i in range(n)], tf.int64),
          "positive_item_id": tf.constant(positives or [7] * n, tf.int64)}


def padded_junk(f):
  """`f` with other values at every padded position (ids, times, domains)."""
  mask = f["seq_mask"].numpy()
  out = dict(f)
  for key, junk in (("seq_item_ids", 9), ("seq_timestamps", 5), ("seq_domain_ids", 1)):
    out[key] = tf.constant(np.where(mask, f[key].numpy(), junk), tf.int64)
  return out


# --------------------------------------------------------------------------- the contract

@pytest.mark.parametrize("name", NAMES)
def test_query_shape_dot_product_scores_and_padding_changes_nothing(name):
  m = build(name)
  f = feats([[1, 2, 0, 0], [6, 7, 8, 3]])
  query = m(f).numpy()
  assert query.shape == (2, 4) and np.isfinite(query).all()
  cands = tf.constant([[3, 7, 10], [9, 1, 2]], tf.int64)
  scores = m.score(m.encode_user(f), cands).numpy()
  expect = np.einsum("bd,bnd->bn", query, m.encode_items(cands).numpy())
  np.testing.assert_allclose(scores, expect, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m(padded_junk(f)).numpy(), query, rtol=1e-5, atol=1e-6)
  assert not np.allclose(m(feats([[1, 3, 0, 0], [6, 7, 8, 3]])).numpy()[0], query[0])


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_with_other_arguments(name):
  m = build(name, **OTHER[name])
  config = m.get_config()
  assert set(config) == set(registry.accepted_args(type(m))) - {"name"}, name  # each argument
  for key, value in OTHER[name].items():
    assert config[key] == value, key
  assert type(m).from_config(config).get_config() == config


# --------------------------------------------------------------------------- GRU4Rec+

def _ranking_max_numpy(scores, labels, negative, loss, reg):
  out = []
  for row, label in enumerate(labels):
    r, keep = scores[row].astype(np.float64), negative[row]
    if not keep.any():
      out.append(0.0)
      continue
    s = np.exp(r[keep] - r[keep].max())
    s /= s.sum()
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    if loss == "bpr_max":
      out.append(-np.log(np.sum(s * sig(r[label] - r[keep]))) + reg * np.sum(s * r[keep] ** 2))
    else:
      out.append(np.sum(s * (sig(r[keep] - r[label]) + sig(r[keep] ** 2))))
  return np.array(out)


@pytest.mark.parametrize("loss", ["bpr_max", "top1_max"])
def test_ranking_max_losses_against_numpy(loss):
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(3, 5)).astype(np.float32) * 2
  labels = np.array([0, 1, 2])
  negative = np.ones((3, 5), bool)
  negative[np.arange(3), labels] = False
  negative[1, 3] = False           # an accidental hit left out
  negative[2] = False              # no negative at all: loss 0
  got = ranking_max(tf.constant(scores), tf.constant(labels), tf.constant(negative), loss,
                    0.5).numpy()
  np.testing.assert_allclose(got, _ranking_max_numpy(scores, labels, negative, loss, 0.5),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["bpr_max", "top1_max"])
def test_gru4rec_plus_loss_over_in_batch_and_sampled_negatives_by_hand(loss):
  m = build("gru4rec_plus", ranking_loss=loss, num_sampled=6, score_regularization=0.7)
  m.item_log_q.assign(np.log(np.r_[1.0, np.arange(1, NUM_ITEMS + 1)] / 55.0).astype(np.float32))
  f = feats([[1, 2, 0, 0], [6, 7, 8, 0], [3, 0, 0, 0]], positives=[7, 9, 7])
  got = m.compute_losses(f, training=False)["ranking_max"].numpy()
  sampled = m.sample_negatives().numpy()  # outside a step: the fixed draw
  ids = np.r_[[7, 9, 7], sampled]
  scores = m(f).numpy() @ m.encode_items(tf.constant(ids)).numpy().T
  negative = ids[None, :] != np.array([7, 9, 7])[:, None]  # own column and same-item hits out
  want = _ranking_max_numpy(scores, np.arange(3), negative, loss, 0.7)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Its batch_top1 is measured over the same candidates: rows 0 and 2 share positive 7, so each
  # one's copy in the other's column is an accidental hit, out of the argmax.
  masked = np.where((ids[None, :] == np.array([7, 9, 7])[:, None])
                    & (np.arange(len(ids))[None, :] != np.arange(3)[:, None]), -np.inf, scores)
  assert m.task.top1.count.numpy() == 3  # measured: the 3 rows of this call
  assert m.task.top1.result().numpy() == pytest.approx(
      np.mean(np.argmax(masked, axis=1) == np.arange(3)))


def test_gru4rec_plus_samples_by_popularity_to_the_power_alpha():
  counts = np.arange(1, NUM_ITEMS + 1, dtype=np.float64)
  for alpha in (0.0, 0.5, 1.0):
    m = build("gru4rec_plus", num_sampled=20_000, sample_alpha=alpha)
    m.item_log_q.assign(np.log(np.r_[1.0, counts] / counts.sum()).astype(np.float32))
    with step_random.training_step(3, tf.constant(1, tf.int64)):
      draws = m.sample_negatives().numpy()
    assert draws.min() >= 1 and draws.max() <= NUM_ITEMS
    seen = np.bincount(draws, minlength=NUM_ITEMS + 1)[1:]
    expected = len(draws) * counts ** alpha / (counts ** alpha).sum()
    chi2 = float(((seen - expected) ** 2 / expected).sum())
    assert chi2 < 27.9, (alpha, chi2)  # 9 dof, p = 0.001
  with pytest.raises(ValueError, match="negatives"):
    build("gru4rec_plus", negatives="queue", queue_size=8)


# --------------------------------------------------------------------------- BST, SDM, PDN

def test_bst_two_tower_positions_are_hours_to_the_request_or_the_order():
  f = feats([[1, 2, 3, 0]])
  later = dict(f, timestamp=f["timestamp"] + 5 * HOUR)
  timed = build("bst_two_tower")
  assert not np.allclose(timed(later).numpy(), timed(f).numpy())
  ordered = build("bst_two_tower", positions="order")
  np.testing.assert_allclose(ordered(later).numpy(), ordered(f).numpy(), rtol=1e-6)
  swapped = feats([[2, 1, 3, 0]])
  assert not np.allclose(ordered(swapped).numpy(), ordered(f).numpy())


def test_sdm_splits_the_newest_behaviours_into_the_session():
  ids = tf.constant([[1, 2, 3, 4, 5, 0], [6, 7, 0, 0, 0, 0]], tf.int64)
  short, short_mask, long_mask = split_sequence(ids, ids > 0, 3)
  np.testing.assert_array_equal(short.numpy(), [[3, 4, 5], [6, 7, 0]])
  np.testing.assert_array_equal(short_mask.numpy(), [[1, 1, 1], [1, 1, 0]])
  np.testing.assert_array_equal(long_mask.numpy(), [[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
  m = build("sdm", short_len=2)
  f = feats([[1, 2, 3, 4]])
  g = feats([[5, 2, 3, 4]])  # only a long-term behaviour differs
  a, b = m.parts(f), m.parts(g)
  np.testing.assert_allclose(a["short"].numpy(), b["short"].numpy(), rtol=1e-6)
  assert not np.allclose(a["long"].numpy(), b["long"].numpy())
  query = (1 - a["gate"]) * a["long"] + a["gate"] * a["short"]
  np.testing.assert_allclose(m(f).numpy(), query.numpy(), rtol=1e-6)
  short_only = m.parts(feats([[3, 4, 0, 0]]))  # no long-term part: p^u = tanh(b)
  np.testing.assert_allclose(short_only["long"].numpy()[0],
                             np.tanh(m.long_projection.bias.numpy()), rtol=1e-6)


def test_pdn_scores_are_the_sum_over_trigger_paths():
  ids = tf.constant([[3, 5, 3, 2, 0]], tf.int64)
  triggers, count = distinct_triggers(ids, ids > 0)
  np.testing.assert_array_equal(triggers.numpy(), [[0, 1, 1, 1, 0]])  # newest occurrence of 3
  np.testing.assert_array_equal(count.numpy(), [[2, 1, 2, 1, 0]])
  m = build("pdn")
  f = feats([[3, 5, 3, 2]])
  items = m.item_encoder(f["seq_item_ids"])
  w = m.trigger_weights(f, items).numpy()[0]
  assert w[0] == 0 and (w[1:] > 0).all()
  f_j = m.similarity_history(items).numpy()[0]                     # SimNet, trigger side
  cands = np.array([1, 6, 10])
  g_t = m.encode_items(tf.constant(cands)).numpy()                 # SimNet, candidate side
  paths = sum(w[j] * (f_j[j] @ g_t.T) for j in range(4))           # sum_j w_uj r_jt
  np.testing.assert_allclose(m.score(m.encode_user(f), tf.constant(cands[None])).numpy()[0],
                             paths, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- CL4SRec

SEQ_IDS = np.array([[1, 2, 3, 4, 5, 9, 9, 9], [6, 7, 8, 9, 10, 1, 2, 3]], np.int64)
SEQ_MASK = np.array([[1] * 5 + [0] * 3, [1] * 8], bool)  # row 0: junk ids 9 at its padding


def _seeds(n):
  return [tf.constant([s, 7], tf.int64) for s in range(n)]


def test_crop_keeps_a_contiguous_part_at_the_front():
  starts = set()
  for seed in _seeds(40):
    ids, mask = (t.numpy() for t in sa.crop(SEQ_IDS, SEQ_MASK, 0.6, seed))
    for row, n in enumerate(SEQ_MASK.sum(1)):
      size = max(int(np.floor(0.6 * n)), 1)
      assert mask[row].tolist() == [True] * size + [False] * (8 - size)
      real = SEQ_IDS[row, :n].tolist()
      start = real.index(ids[row, 0])
      assert ids[row, :size].tolist() == real[start:start + size]
      assert (ids[row, size:] == 0).all()
      starts.add((row, start))
  assert starts == {(0, s) for s in range(3)} | {(1, s) for s in range(5)}  # every start drawn
  one, _ = sa.crop(SEQ_IDS[:1, :2], SEQ_MASK[:1, :2], 0.3, _seeds(1)[0])
  assert int(tf.reduce_sum(tf.cast(one > 0, tf.int32))) == 1  # at least one item kept


def test_mask_replaces_a_share_of_real_items_with_the_mask_id():
  for seed in _seeds(20):
    ids, mask = (t.numpy() for t in sa.mask_items(SEQ_IDS, SEQ_MASK, 0.5, 99, seed))
    np.testing.assert_array_equal(mask, SEQ_MASK)
    for row, n in enumerate(SEQ_MASK.sum(1)):
      hit = ids[row] == 99
      assert hit.sum() == int(np.floor(0.5 * n)) and not hit[n:].any()  # never padding
      np.testing.assert_array_equal(ids[row, :n][~hit[:n]], SEQ_IDS[row, :n][~hit[:n]])
      assert (ids[row, n:] == 0).all()


def test_reorder_permutes_one_window_and_nothing_else():
  moved = 0
  for seed in _seeds(20):
    ids, mask = (t.numpy() for t in sa.reorder(SEQ_IDS, SEQ_MASK, 0.6, seed))
    np.testing.assert_array_equal(mask, SEQ_MASK)
    for row, n in enumerate(SEQ_MASK.sum(1)):
      size = int(np.floor(0.6 * n))
      changed = np.flatnonzero(ids[row, :n] != SEQ_IDS[row, :n])
      if len(changed):
        moved += 1
        assert changed.max() - changed.min() < size  # inside one window of `size`
      assert sorted(ids[row, :n]) == sorted(SEQ_IDS[row, :n])  # a permutation of the items
      assert (ids[row, n:] == 0).all()
  assert moved > 20


def test_augment_draws_one_method_per_row_from_the_seed():
  seed = tf.constant([4, 2], tf.int64)
  a = sa.augment(SEQ_IDS, SEQ_MASK, seed, 0.6, 0.5, 0.6, 99)
  b = sa.augment(SEQ_IDS, SEQ_MASK, seed, 0.6, 0.5, 0.6, 99)
  np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
  ids, _ = sa.augment(SEQ_IDS, SEQ_MASK, seed, 0.6, 0.5, 0.6, 99, methods=["mask"])
  assert ((ids.numpy() == 99).sum(1) == [2, 4]).all()
  with pytest.raises(ValueError, match="subset"):
    sa.augment(SEQ_IDS, SEQ_MASK, seed, 0.6, 0.5, 0.6, 99, methods=["shuffle"])


def test_cl4srec_contrastive_loss_is_nt_xent_of_two_views_by_hand():
  m = build("cl4srec", contrastive_temperature=0.5)
  f = feats([[1, 2, 3, 0], [6, 7, 8, 9], [2, 4, 0, 0]])
  losses = m.compute_losses(f, training=True)
  (i1, m1), (i2, m2) = m.views(f, seed=tf.constant(_DIRECT_SEED, tf.int64))
  z = np.concatenate([m.view_vector(i1, m1).numpy(), m.view_vector(i2, m2).numpy()])
  n = 3
  logits = z @ z.T / 0.5
  np.fill_diagonal(logits, -np.inf)
  log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
      - logits.max(1, keepdims=True)
  partner = np.r_[np.arange(n) + n, np.arange(n)]
  per_view = -log_p[np.arange(2 * n), partner]
  # float32 round-off: a loss near 1e-4 differs from numpy's in its 3rd digit, hence atol.
  np.testing.assert_allclose(losses["contrastive"].numpy(), (per_view[:n] + per_view[n:]) / 2,
                             rtol=1e-4, atol=1e-6)
  # The mask token is its own learnt vector, never an item row.
  masked = m.embed_sequence(tf.constant([[m.mask_id, 2]], tf.int64)).numpy()[0]
  np.testing.assert_allclose(masked[0], m.mask_embedding.numpy(), rtol=1e-6)
  np.testing.assert_allclose(masked[1], m.item_encoder(tf.constant(2)).numpy(), rtol=1e-6)
  # Views follow the step seed; validation reports no contrastive loss.
  with step_random.training_step(1, tf.constant(3, tf.int64)):
    first = m.views(f)[0][0].numpy()
  with step_random.training_step(1, tf.constant(3, tf.int64)):
    np.testing.assert_array_equal(m.views(f)[0][0].numpy(), first)
  assert (m.compute_losses(f, training=False)["contrastive"].numpy() == 0).all()


@pytest.mark.slow
def test_ranking_max_and_nt_xent_on_two_logical_cpus_equal_one_device():
  assert_two_replicas_equal_one_device(run_two_replica_script("m5_two_replicas.py"))


# --------------------------------------------------------------------------- serving

@pytest.mark.parametrize("name", ["pdn", "sdm"])
def test_profile_reading_towers_serve_through_the_retrieve_signature(name):
  from tfrec.serving.retrieval import RetrievalServingModule
  m = build(name)
  index = np.arange(1, NUM_ITEMS + 1)
  f = feats([[3, 5, 3, 0]])
  request = {key: f[key][0, :3] for key in ("seq_item_ids", "seq_domain_ids", "seq_timestamps")}
  request.update(timestamp=f["timestamp"][0], k=tf.constant(4),
                 user_features=f["user_features"][0])
  out = RetrievalServingModule(m, index).retrieve(request)
  scores = m.encode_items(tf.constant(index)).numpy() @ m(f).numpy()[0]
  scores[[2, 4]] = -np.inf  # the request's own items are left out
  np.testing.assert_array_equal(out["item_ids"].numpy(), index[np.argsort(-scores)[:4]])


# --------------------------------------------------------------------------- training

# GRU4Rec+ and CL4SRec train with their own compute_losses; BST, SDM and PDN through the core's
# loss, which tests/test_retrieval_models.py trains already: their runs are `slow`, as their
# flagfiles' two-step runs in tests/test_train.py (at the paper's d = 128).
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("bst_two_tower", "sdm", "pdn") else n
                                  for n in NAMES])
def test_trains_through_tfrec_train_and_every_named_loss_is_finite(syn_dir, tmp_path, name):
  kwargs = {k: v for k, v in SMALL[name].items() if k != "user_feature_sizes"}
  # As the flagfiles: the full softmax (M5 §5.1.3), GRU4Rec+ its sampled negatives (which
  # count the popularity first); no log-q table otherwise (one pass over the data less).
  kwargs.update(dim=8, item_features=["id"], negatives="full", log_q_correction=False)
  if name == "gru4rec_plus":
    kwargs.update(negatives="sampled", num_sampled=16)
  cfg = make_config(syn_dir, str(tmp_path / "run"), model=name, model_kwargs=kwargs,
                    epochs=2, steps_per_epoch=4, batch_size=32, learning_rate=3e-2,
                    validation_steps=2, backup_every_steps=0)
  result = train_lib.train(cfg)
  assert np.isfinite(result.history["loss"]).all()
  for loss in registry.get(name).cls.LOSSES:
    assert np.isfinite(result.history[f"{loss}_loss"]).all(), loss
  # The validation batches are the same every epoch: their loss falls as the model trains.
  valid = result.history["val_loss"]
  assert valid[-1] < valid[0], valid


# --------------------------------------------------------------------------- flagfiles

FLAGFILES = sorted(glob.glob(os.path.join(REPO, "configs", "m5", "*.flags")))


def test_each_baseline_has_a_flagfile_that_parses_and_builds(monkeypatch, tmp_path):
  monkeypatch.chdir(REPO)  # flagfiles include each other by repository-relative paths
  names = {os.path.basename(p)[:-len(".flags")]: p for p in FLAGFILES}
  assert set(NAMES) <= set(names)
  for name in NAMES:
    cfg = flagfile_config(names[name], str(tmp_path / "d"), str(tmp_path / "r"))
    assert cfg.model.name == name and cfg.model.kwargs["dim"] == 128
    sizes = dict(num_items=10, num_categories=4, visual_dim=3)
    model = registry.build(name, **sizes, **cfg.model.kwargs)
    assert model.negatives == ("sampled" if name == "gru4rec_plus" else "full")
  assert flagfile_config(names["cl4srec"], "d", "r").train.loss_weights == {"contrastive": 0.1}

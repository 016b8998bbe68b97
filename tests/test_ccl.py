"""CCL pre-training (SEMI §3.3, Algorithm 1): InfoNCE (eq. 5-6) on hand-computed inputs, the
queue dictionaries, the momentum update (eq. 9), gradients to the query encoders only, the
cross-replica enqueue on 2 logical CPUs, CCL through the trainer, and SEMI `--init_from`."""

import math
import os
import types

import numpy as np
from ccl_data import pair_features
import pytest
import tensorflow as tf
import tf_keras as keras

from tfrec import runs
from tfrec import train as train_lib
from tfrec.models.ccl import CCL, info_nce, reference_time
from tfrec.moco import momentum as momentum_lib
from tfrec.moco.queue import KeyQueue
from conftest import make_config, run_two_replica_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_ITEMS, L = 30, 5


def features(n, seed):
  return pair_features(n, seed, NUM_ITEMS, L)


def tiny_ccl(queue_size=8, momentum=0.9, temperature=0.7, normalize=False, mask_own_keys=True):
  keras.utils.set_random_seed(3)
  m = CCL(NUM_ITEMS, dim=8, item_features=("id",), max_seq_len=L, num_heads=2, ff_dim=8,
          dropout=0.0, num_time_blocks=8, queue_size=queue_size, momentum=momentum,
          temperature=temperature, normalize=normalize, mask_own_keys=mask_own_keys)
  m.build_and_fill(types.SimpleNamespace(num_items=NUM_ITEMS))
  m.compile(optimizer=keras.optimizers.Adam(0.01))
  return m


# --------------------------------------------------------------------------- equations

def test_info_nce_is_eq5_on_a_hand_computed_input():
  q = tf.constant([[1.0, 0.0], [0.0, 2.0]])
  dictionary = tf.constant([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  loss, hits = info_nce(q, dictionary, tf.constant([0, 2]), temperature=0.5)
  # Row 0: logits q.k/tau = [2, 0, -2], positive 0. Row 1: [0, 4, 0], positive 2 (a miss).
  e = math.exp
  expected = [-math.log(e(2) / (e(2) + 1 + e(-2))), -math.log(1 / (1 + e(4) + 1))]
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)
  np.testing.assert_array_equal(hits.numpy(), [1.0, 0.0])


def test_info_nce_leaves_excluded_keys_out_but_never_the_positive():
  q = tf.constant([[1.0, 0.0], [0.0, 2.0]])
  dictionary = tf.constant([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  # Row 0 excludes key 1 (and asks to exclude its positive 0: kept); row 1 excludes key 1,
  # which would otherwise win.
  exclude = tf.constant([[True, True, False], [False, True, False]])
  loss, hits = info_nce(q, dictionary, tf.constant([0, 2]), 0.5, exclude)
  e = math.exp  # logits as in the test above, without the excluded keys
  expected = [-math.log(e(2) / (e(2) + e(-2))), -math.log(1 / (1 + 1))]
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
  # Row 1: logits [0, excluded, 0]: argmax is key 0, not the positive 2 (a miss, as before).
  np.testing.assert_array_equal(hits.numpy(), [1.0, 0.0])


def test_reference_time_is_the_latest_real_event_of_both_domains():
  f = {"source_timestamps": [[5, 9, 0]], "source_mask": [[True, True, False]],
       "target_timestamps": [[7, 99, 0]], "target_mask": [[True, False, False]]}
  assert reference_time({k: tf.constant(v) for k, v in f.items()}).numpy().tolist() == [9]


def test_reference_time_is_the_request_time_where_the_pair_has_one():
  f = {"source_timestamps": [[5, 9], [5, 9]], "source_mask": [[True, True]] * 2,
       "target_timestamps": [[7, 8], [7, 8]], "target_mask": [[True, True]] * 2,
       "timestamp": [3600 * 5, -1]}  # selected from a ranking record; absent (the default)
  got = reference_time({k: tf.constant(v) for k, v in f.items()}).numpy().tolist()
  assert got == [3600 * 5, 9]


def test_fit_momentum_takes_the_geometric_mean_of_the_queue_and_run_spans():
  # SEMI A.1: K = 40 x 1024, B = 1024, about 28.3M pairs / 1024 = 27,600 steps: m ~ 0.999.
  assert momentum_lib.fit_momentum(27_600, 40 * 1024, 1024) == pytest.approx(0.999, abs=1e-4)
  for steps, k, b in ((360, 256, 64), (5000, 4096, 256), (100, 64, 64)):
    tau = 1.0 / (1.0 - momentum_lib.fit_momentum(steps, k, b))
    assert tau / (k / b) == pytest.approx(steps / tau)  # equal margins on both spans
  m = momentum_lib.fit_momentum(360, 256, 64)
  assert m ** 360 < 1e-3 < 0.999 ** 360  # the initial key weights are forgotten
  assert momentum_lib.fit_momentum(1, 1, 64) == 0.0  # tau <= 1: keys are the queries
  with pytest.raises(ValueError, match="positive steps"):
    momentum_lib.fit_momentum(0, 256, 64)


def test_momentum_update_is_eq9():
  q, k = tf.Variable([1.0, 3.0]), tf.Variable([5.0, -1.0])
  momentum_lib.momentum_update([(q, k)], 0.75)
  np.testing.assert_allclose(k.numpy(), [0.75 * 5 + 0.25 * 1, 0.75 * -1 + 0.25 * 3])
  momentum_lib.copy_weights([(q, k)])
  np.testing.assert_array_equal(k.numpy(), q.numpy())


# --------------------------------------------------------------------------- the queue

def test_queue_is_a_ring_buffer_overwriting_the_oldest_keys():
  queue = KeyQueue(5, 2)
  rows1 = queue.enqueue(tf.constant([[1.0, 1], [2, 2], [3, 3]]))[1]
  new, rows2 = queue.enqueue(tf.constant([[4.0, 4], [5, 5], [6, 6]]))
  assert rows1.numpy().tolist() == [0, 1, 2] and rows2.numpy().tolist() == [3, 4, 0]
  np.testing.assert_array_equal(new.numpy()[:, 0], [6, 2, 3, 4, 5])
  np.testing.assert_array_equal(queue.keys.numpy(), new.numpy())
  assert int(queue.pointer.numpy()) == 1 and int(queue.count.numpy()) == 6
  with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the queue"):
    queue.enqueue(tf.zeros([6, 2]))


def test_queue_with_ids_keeps_each_keys_id_in_its_row():
  queue = KeyQueue(4, 1, with_ids=True)
  queue.build()
  np.testing.assert_array_equal(queue.ids.numpy(), [-1, -1, -1, -1])  # never written
  queue.enqueue(tf.constant([[1.0], [2.0], [3.0]]), tf.constant([10, 20, 30]))
  queue.enqueue(tf.constant([[4.0], [5.0]]), tf.constant([40, 50]))
  np.testing.assert_array_equal(queue.keys.numpy()[:, 0], [5, 2, 3, 4])
  np.testing.assert_array_equal(queue.ids.numpy(), [50, 20, 30, 40])
  with pytest.raises(ValueError, match="takes ids exactly when"):
    queue.enqueue(tf.constant([[6.0]]))
  with pytest.raises(ValueError, match="takes ids exactly when"):
    KeyQueue(4, 1).enqueue(tf.constant([[6.0]]), tf.constant([60]))


# --------------------------------------------------------------------------- Algorithm 1

def test_train_step_follows_algorithm_1():
  m = tiny_ccl(queue_size=8, momentum=0.9)
  pairs = m.variable_pairs()
  trainable = {id(v) for v in m.trainable_variables}
  assert len(pairs) == len(trainable) and {id(q) for q, _ in pairs} == trainable
  assert not {id(k) for _, k in pairs} & trainable  # key encoders take no optimizer step
  for q, k in pairs:  # key encoders start as copies of the query encoders (MoCo)
    np.testing.assert_array_equal(q.numpy(), k.numpy())
  m.fill_step(features(8, seed=0))  # lines 2-4: K keys from random samples
  batch = features(3, seed=1)
  keys = {d: v.numpy() for d, v in m.keys(batch).items()}
  queries = {d: v.numpy() for d, v in m(batch, training=False).items()}
  old_dicts = {d: m.queue(d).keys.numpy() for d in ("target", "source")}
  old_keys = [k.numpy() for _, k in pairs]
  logs = m.train_step(batch)
  # Lines 10-13: the batch's keys overwrite the oldest rows 0..2 (the queue was full).
  for d in ("target", "source"):
    np.testing.assert_allclose(m.queue(d).keys.numpy()[:3], keys[d], atol=1e-6)
    np.testing.assert_array_equal(m.queue(d).keys.numpy()[3:], old_dicts[d][3:])
  # Lines 15-18 (eq. 5-6) against the *updated* dictionaries, positive = the pair's own row,
  # computed here in numpy from the pre-step queries.
  def nce(q, dictionary):
    logits = q @ dictionary.T / 0.7
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -logp[np.arange(3), np.arange(3)]
  new_dicts = {d: np.concatenate([keys[d], old_dicts[d][3:]]) for d in keys}
  expected = nce(queries["target"], new_dicts["source"]) + nce(queries["source"],
                                                              new_dicts["target"])
  np.testing.assert_allclose(float(logs["loss"]), expected.mean(), rtol=1e-5)
  # Line 21, eq. 9: theta_k <- m theta_k + (1 - m) theta_q with the updated query weights.
  for (q, k), k_old in zip(pairs, old_keys):
    np.testing.assert_allclose(k.numpy(), 0.9 * k_old + 0.1 * q.numpy(), rtol=1e-5, atol=1e-7)
  assert any(not np.allclose(k.numpy(), k_old) for (_, k), k_old in zip(pairs, old_keys))


def test_a_pairs_own_earlier_keys_are_not_its_negatives():
  """mask_own_keys: a query's softmax runs over the dictionary without the keys of its own
  user other than the positive (stale keys of the same pair from earlier steps)."""
  for mask in (True, False):
    m = tiny_ccl(queue_size=8, mask_own_keys=mask)
    m.fill_step(features(8, seed=0))  # users 0..7 in rows 0..7
    batch = features(3, seed=1)
    batch["user_id"] = np.array([5, 6, 0])  # users 5 and 6 still have keys in rows 5 and 6
    keys = {d: v.numpy() for d, v in m.keys(batch).items()}
    queries = {d: v.numpy() for d, v in m(batch, training=False).items()}
    old = {d: m.queue(d).keys.numpy() for d in ("target", "source")}
    logs = m.train_step(batch)
    if mask:
      np.testing.assert_array_equal(m.target_queue.ids.numpy(), [5, 6, 0, 3, 4, 5, 6, 7])
    # Rows 0..2 hold the batch's keys; query i's positive is row i. With the mask, user 5's
    # query leaves row 5 out and user 6's row 6 (user 0's old key, row 0, was overwritten).
    keep = np.ones((3, 8), bool)
    if mask:
      keep[0, 5] = keep[1, 6] = False

    def nce(q, dictionary):
      logits = np.where(keep, q @ dictionary.T / 0.7, -np.inf)
      logits -= logits.max(axis=1, keepdims=True)
      logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
      return -logp[np.arange(3), np.arange(3)]
    new = {d: np.concatenate([keys[d], old[d][3:]]) for d in keys}
    expected = nce(queries["target"], new["source"]) + nce(queries["source"], new["target"])
    np.testing.assert_allclose(float(logs["loss"]), expected.mean(), rtol=1e-5)


def test_ccl_learns_planted_pairs():
  """Pairs whose two sequences are two orderings of the same random item set: after 150 steps
  the queries find their pair's key among K = 32 far above chance (1/32)."""
  num_items, length, k, b = 40, 6, 32, 16
  rng = np.random.default_rng(0)

  def planted(n, first_user):
    f = {"user_id": first_user + np.arange(n, dtype=np.int64)}
    items = np.stack([rng.choice(num_items, length, replace=False) + 1 for _ in range(n)])
    for d in ("source", "target"):
      order = np.stack([rng.permutation(length) for _ in range(n)])
      mask = np.arange(length)[None] < rng.integers(3, length + 1, size=n)[:, None]
      f[f"{d}_item_ids"] = np.where(mask, np.take_along_axis(items, order, 1), 0)
      f[f"{d}_timestamps"] = np.where(mask, 3600 * np.arange(length)[None], 0)
      f[f"{d}_mask"] = mask
    return f

  keras.utils.set_random_seed(0)
  m = CCL(num_items, dim=16, item_features=("id",), max_seq_len=length, num_heads=2, ff_dim=16,
          dropout=0.0, num_time_blocks=8, queue_size=k, momentum=0.9)
  m.build_and_fill(types.SimpleNamespace(num_items=num_items))
  m.compile(optimizer=keras.optimizers.Adam(0.01))
  m.fill_step(planted(k, 10**6))
  step = tf.function(m.train_step)
  windows = []
  for i in range(150):
    if i % 25 == 0:
      for task in m.tasks.values():
        task.top1.reset_state()
    logs = step(planted(b, i * b))
    if i % 25 == 24:
      windows.append(min(float(logs["top1_target"]), float(logs["top1_source"])))
  assert windows[-1] > 10 / k, windows  # ~0.58 measured
  assert windows[-1] > windows[0] + 0.2, windows


def test_gradients_reach_only_the_query_encoders():
  m = tiny_ccl()
  m.fill_step(features(8, seed=0))
  batch = features(3, seed=1)
  key_vars = [k for _, k in m.variable_pairs()]
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(key_vars)
    out = m.contrastive_losses(batch, training=True)
    loss = tf.reduce_mean(out["target"][0] + out["source"][0])
  assert all(g is None for g in tape.gradient(loss, key_vars))
  grads = tape.gradient(loss, m.trainable_variables)
  assert sum(float(tf.norm(g)) for g in grads if g is not None) > 0


def test_normalize_gives_unit_queries_and_keys():
  m = tiny_ccl(normalize=True)
  batch = features(4, seed=2)
  for v in list(m(batch).values()) + list(m.keys(batch).values()):
    np.testing.assert_allclose(np.linalg.norm(v.numpy(), axis=1), 1.0, rtol=1e-5)


def test_queue_gets_every_replicas_keys_in_order_once_per_step_on_two_cpus():
  result = run_two_replica_script("ccl_two_replicas.py")
  assert result["replicas"] == 2
  even, uneven = result["steps"]
  assert even["rows_per_replica"] == [2, 2] and uneven["rows_per_replica"] == [2, 1]
  for step, n in ((even, 4), (uneven, 3)):
    assert step["pointer_advance"] == n and step["count_advance"] == n  # exactly once
    assert step["written_in_order"] < 1e-5  # replica 0's rows, then replica 1's
    assert step["others_untouched"] == 0.0
    assert step["queue_vs_single"] < 1e-5  # the same dictionary as one device
    assert abs(step["loss_multi"] - step["loss_single"]) < 1e-5
    assert step["weights_vs_single"] < 1e-3  # the same update (Adam on float sums)


# --------------------------------------------------------------------------- with the trainer

def test_ccl_trains_through_train_py_and_semi_initialises_from_it(syn_dir, tmp_path):
  common = dict(dim=8, num_heads=2, ff_dim=8)
  ccl_run = str(tmp_path / "ccl")
  ccl_cfg = make_config(syn_dir, ccl_run, model="ccl",
                        model_kwargs=dict(common, queue_size=64, momentum=0.99,
                                          momentum_rule="steps"),
                        epochs=2, steps_per_epoch=4, batch_size=16)

  class Momentum(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      self.value = self.model.momentum

  fitted = Momentum()
  result = train_lib.train(ccl_cfg, extra_callbacks=[fitted])
  # The rule replaces 0.99 before the first step: S = 2 x 4 steps, K = 64, B = 16.
  assert fitted.value == pytest.approx(1 - 1 / math.sqrt(8 * 64 / 16))
  assert result.steps == 8 and set(result.history) == {
      "loss", "top1_target", "top1_source", "target_to_source_loss", "source_to_target_loss",
      "target_to_source_weight", "source_to_target_weight"}
  assert all(np.isfinite(result.history["loss"]))
  ccl, *_ = runs.restore_model(ccl_run, "best")
  assert int(ccl.target_queue.count.numpy()) >= 64 + 16 * 8  # filled, then one batch a step

  class Capture(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      self.weights = {n: [w.numpy() for w in getattr(self.model, n).weights]
                      for n in ("item_encoder", "time_blocks", "target_encoder",
                                "source_encoder", "inter_block")}
      self.iterations = int(self.model.optimizer.iterations.numpy())

  capture = Capture()
  semi_cfg = make_config(syn_dir, str(tmp_path / "semi"), model="semi", model_kwargs=common,
                         epochs=1, steps_per_epoch=2, batch_size=16, init_from=ccl_run)
  semi_result = train_lib.train(semi_cfg, extra_callbacks=[capture])
  assert capture.iterations == 0 and semi_result.steps == 2  # CCL's optimizer not restored
  for name in ("item_encoder", "time_blocks", "target_encoder", "source_encoder"):
    want = [w.numpy() for w in getattr(ccl, name).weights]
    assert len(want) == len(capture.weights[name])
    for got, w in zip(capture.weights[name], want):
      np.testing.assert_array_equal(got, w)


  # --init_layers restricts the transfer (an ablation): encoders from CCL, the item encoder not.
  capture = Capture()
  train_lib.train(make_config(syn_dir, str(tmp_path / "semi_blocks"), model="semi",
                              model_kwargs=common, epochs=1, steps_per_epoch=1, batch_size=16,
                              init_from=ccl_run, init_layers="target_encoder,source_encoder"),
                  extra_callbacks=[capture])
  for got, w in zip(capture.weights["target_encoder"], ccl.target_encoder.weights):
    np.testing.assert_array_equal(got, w.numpy())
  assert not np.allclose(capture.weights["item_encoder"][0], ccl.item_encoder.weights[0].numpy())

  # After --init_from, SEMI's encoders give CCL's outputs on the same ranking records: both
  # count the time blocks back from the request time (ccl_select keeps it in the pairs).
  from tfrec.data.info import DatasetInfo
  from tfrec.data.item_store import ItemStore
  info, store = DatasetInfo.load(syn_dir), ItemStore.load(syn_dir)
  keras.backend.clear_session()
  semi = runs.build_model(semi_cfg, info, store)
  train_lib._init_from(semi, ccl_run, store)
  reader = runs.reader(semi_cfg, "train", training=False, info=info)
  batch = next(iter(reader.dataset(16)))
  batch = batch[0] if isinstance(batch, tuple) else batch
  assert len(set(batch["timestamp"].numpy().tolist())) > 1
  for d in ("target", "source"):
    x, mask = semi.domain_sequence(batch, d)
    want = ccl.pool(semi.encoder(d)(x, query_mask=mask, training=False), mask=mask)
    np.testing.assert_allclose(ccl.encode(batch, d, training=False).numpy(), want.numpy(),
                               rtol=1e-5, atol=1e-6)


def test_init_from_a_run_without_the_encoders_is_an_error(syn_dir, tmp_path):
  bst_run = str(tmp_path / "bst")
  train_lib.train(make_config(syn_dir, bst_run, model="bst", model_kwargs=dict(num_heads=2),
                              steps_per_epoch=1))
  cfg = make_config(syn_dir, str(tmp_path / "semi"), model="semi",
                    model_kwargs=dict(num_heads=2), steps_per_epoch=1, init_from=bst_run)
  with pytest.raises(ValueError, match=r"lacks \[.*target_encoder"):
    train_lib.train(cfg)


def test_ccl_refuses_a_dictionary_as_large_as_its_training_pairs(syn_dir, tmp_path):
  from tfrec.data.pipeline import Reader
  pairs = Reader(syn_dir, "ccl_pair", "train").num_records
  cfg = make_config(syn_dir, str(tmp_path / "ccl"), model="ccl",
                    model_kwargs=dict(num_heads=2, queue_size=pairs), batch_size=16)
  with pytest.raises(ValueError, match=f"queue_size={pairs} is at least the {pairs} training"):
    train_lib.train(cfg)


def test_ccl_refuses_a_batch_larger_than_its_queue(syn_dir, tmp_path):
  cfg = make_config(syn_dir, str(tmp_path / "ccl"), model="ccl",
                    model_kwargs=dict(num_heads=2, queue_size=8), batch_size=16)
  with pytest.raises(ValueError, match="exceeds --queue_size=8"):
    train_lib.train(cfg)

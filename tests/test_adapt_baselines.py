"""ADAPT's Table IV baselines that tfrec adds for it (one file each in tfrec/models/): CMF's shared
user factor fits both domains."""

import numpy as np
import tensorflow as tf

from tfrec.models.cmf import _VALIDATION_SEED
from test_models import build, make_features, small_store, as_tf


def test_cmf_source_loss_by_hand_and_the_user_factor_learns_from_both_domains():
  model = build("cmf")  # test_models' EXTRA: enough users for its features
  f = as_tf(make_features(seed=2))
  f["label"] = tf.constant(np.arange(len(f["item_id"])) % 2)
  losses = model.compute_losses(f, training=False)
  # By hand: BCE of <p_u, x_p> for each real product of the history (label 1) and of a
  # product drawn with the fixed validation seed (label 0), averaged over the positions.
  products = small_store().item_ids(domain=0)
  seq = f["source_item_ids"].numpy()
  mask = f["source_mask"].numpy()
  pick = tf.random.stateless_uniform(seq.shape, tf.constant(_VALIDATION_SEED, tf.int64),
                                     minval=0, maxval=len(products), dtype=tf.int64).numpy()
  u = model.user_embedding(f["user_id"]).numpy()
  items = model.item_encoder(tf.range(model.num_items + 1)).numpy()
  sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
  for row in range(len(seq)):
    terms = [sp(-u[row] @ items[seq[row, t]]) + sp(u[row] @ items[products[pick[row, t]]])
             for t in range(seq.shape[1]) if mask[row, t]]
    want = np.mean(terms) if terms else 0.0
    np.testing.assert_allclose(losses["source"].numpy()[row], want, rtol=1e-4, atol=1e-6)
  # The one user factor receives gradient from the product history alone.
  with tf.GradientTape() as tape:
    source = tf.reduce_mean(model.compute_losses(f, training=False)["source"])
  grad = tape.gradient(source, model.user_embedding.trainable_variables[0])
  assert np.abs(tf.convert_to_tensor(grad).numpy()).sum() > 0


def test_pinet_transfers_the_other_domains_state_through_a_gate():
  model = build("pinet")
  f = as_tf(make_features(seed=4))
  g = dict(f)
  other = as_tf(make_features(seed=5))
  for k in ("source_item_ids", "source_timestamps", "source_mask"):
    g[k] = other[k]
  a, b = model.encode_user(f), model.encode_user(g)
  # The storytelling GRU reads its own domain only; what the product domain transfers moves.
  np.testing.assert_allclose(a["target"].numpy(), b["target"].numpy(), rtol=1e-6)
  assert np.abs(a["target_from_source"].numpy() - b["target_from_source"].numpy()).max() > 1e-6
  # h^{p->s} = g * tanh(W_t h^p + b_t) with g = sigmoid(W_g [h^s; h^p] + b_g).
  gate = model.target_gate(tf.concat([a["target"], a["source"]], -1)).numpy()
  assert ((gate > 0) & (gate < 1)).all()
  np.testing.assert_allclose(a["target_from_source"].numpy(),
                             gate * model.target_from_source(a["source"]).numpy(), rtol=1e-5)

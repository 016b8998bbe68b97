"""SEMI Table 1's CoNet and π-Net as SEMI A.2 sets them: CoNet's user vector is the average of
both domains' actions (`user_input="history"`), π-Net gains the product-domain loss on the newest
clicked product (`pinet_source`); by hand, plus their flagfiles for two steps."""

import os

import numpy as np
import pytest

from conftest import flagfile_config
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402

from test_models import (as_tf, assert_loss_follows_the_step_seed, build,  # noqa: E402
                         make_features, newest_product_task)
from tfrec.models.cmf import newest_item, pooled_mean  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sp(x):
  return np.log1p(np.exp(x))


def test_newest_item_and_pooled_mean_by_hand():
  seq = tf.constant([[4, 7, 9, 0], [0, 0, 0, 0], [5, 0, 0, 0]], tf.int64)
  mask = seq > 0
  positive, before, has = newest_item(seq, mask)
  assert positive.numpy()[:, 0].tolist()[::2] == [9, 5] and has.numpy()[:, 0].tolist() == [
      True, False, True]
  assert before.numpy().tolist() == [[True, True, False, False], [False] * 4, [False] * 4]
  x = tf.constant(np.arange(24, dtype=np.float32).reshape(3, 4, 2))
  got = pooled_mean([x, x[:, :2]], [before, tf.constant([[True, False]] * 3)]).numpy()
  # Row 0: positions 0, 1 of x and position 0 of x[:, :2]; rows 1 and 2: position 0 only.
  np.testing.assert_allclose(got[0], (x[0, 0] + x[0, 1] + x[0, 0]).numpy() / 3)
  np.testing.assert_allclose(got[1:], x[1:, 0].numpy())


def test_conet_user_is_the_average_of_both_domains_actions():
  model = build("conet", user_input="history", mlp_units=(8, 4), cross_layers=1, num_users=5)
  f = make_features(seed=3)
  f["user_id"] = np.arange(6) % 5
  user = model.encode_user(as_tf(f))
  items = model.item_encoder(tf.range(model.num_items + 1)).numpy()
  for row in range(6):
    real = list(f["target_item_ids"][row][f["target_mask"][row]]) + list(
        f["source_item_ids"][row][f["source_mask"][row]])
    want = items[real].mean(0) if real else np.zeros(model.dim)
    np.testing.assert_allclose(user["user"].numpy()[row], want, rtol=1e-5, atol=1e-6)
  # The user id is not read: another id, the same logits.
  g = dict(f, user_id=(f["user_id"] + 1) % 5)
  np.testing.assert_allclose(model(as_tf(g)).numpy(), model(as_tf(f)).numpy(), rtol=1e-6)
  assert model.get_config()["user_input"] == "history"
  id_model = build("conet", mlp_units=(8, 4), cross_layers=1, num_users=5)
  assert not np.allclose(id_model(as_tf(g)).numpy(), id_model(as_tf(f)).numpy())
  with pytest.raises(ValueError, match="user_input must be one of"):
    build("conet", user_input="session", num_users=5)
  with pytest.raises(ValueError, match="pools both domains"):
    build("conet", user_input="history", num_users=5, domains=("source",))


def pinet_source():
  return build("pinet_source", mlp_units=(8,), gru_units=4)


def test_pinet_product_loss_on_the_newest_product_by_hand():
  model = pinet_source()
  f, losses, negatives, items, head = newest_product_task(model)
  for row in range(6):
    n_src = int(f["source_mask"][row].sum())
    if not n_src:
      assert losses["source"].numpy()[row] == 0.0  # row 2: no product history
      continue
    # The user's states from the histories without the newest product (its own row alone).
    g = {k: v[row:row + 1] for k, v in f.items()}
    g["source_mask"] = g["source_mask"].copy()
    g["source_mask"][0, n_src - 1] = False
    g["source_item_ids"] = np.where(g["source_mask"], g["source_item_ids"], 0)
    state = model.encode_user(as_tf(g))
    s = np.concatenate([state["source"].numpy()[0], state["source_from_target"].numpy()[0]])
    newest = f["source_item_ids"][row, n_src - 1]
    want = (sp(-head(np.concatenate([s, items[newest]])[None]))
            + sp(head(np.concatenate([s, items[negatives[row]]])[None])))
    np.testing.assert_allclose(losses["source"].numpy()[row], want, rtol=1e-4, atol=1e-5)
  # The target loss is π-Net's own.
  np.testing.assert_allclose(losses["bce"].numpy(), build("pinet", mlp_units=(8,), gru_units=4)
                             .compute_losses(as_tf(f))["bce"].numpy(), rtol=1e-5)


def test_pinet_product_negatives_follow_the_step_seed():
  f = make_features(seed=2)
  f["label"] = np.arange(6) % 2
  assert_loss_follows_the_step_seed(pinet_source(), as_tf(f), "source")


def test_pinet_product_loss_reaches_its_head_and_the_gru():
  model = pinet_source()
  f = make_features(seed=5)
  f["label"] = np.arange(6) % 2
  with tf.GradientTape(persistent=True) as tape:
    losses = model.compute_losses(as_tf(f), training=True)
  head = tape.gradient(losses["source"], model.source_mlp.trainable_variables)
  assert all(g is not None and float(tf.norm(g)) > 0 for g in head)
  assert all(g is None for g in tape.gradient(losses["bce"],
                                              model.source_mlp.trainable_variables))
  gru = tape.gradient(losses["source"], model.source_gru.trainable_variables)
  assert any(g is not None and float(tf.norm(g)) > 0 for g in gru)


@pytest.mark.parametrize("stem,model", [("conet", "conet"), ("pinet", "pinet_source")])
def test_flagfile_settings(stem, model, syn_dir, tmp_path, monkeypatch):
  """What SEMI A.2 sets (tests/test_train.py trains every flagfile for two steps and checks
  each named loss)."""
  monkeypatch.chdir(REPO)
  cfg = flagfile_config(f"configs/semi/{stem}.flags", syn_dir, str(tmp_path / stem))
  assert cfg.model.name == model and cfg.train.loss_weights == {"source": 1.0}
  if model == "conet":
    assert cfg.model.kwargs["user_input"] == "history"

"""SEMI (KDD 2021 §3.4): composition against the paper's order, cross-domain transfer through the
inter-domain block, the single-domain variants of Table 2, and the encoder names CCL loads."""

import numpy as np
import pytest
import tensorflow as tf

from test_models import as_tf, build, make_features


def test_semi_composes_encoders_inter_block_and_target_attention_in_the_papers_order():
  model = build("semi", num_heads=2, ff_dim=8)
  f = as_tf(make_features(seed=3))
  cand_ids = f["item_id"][:, None]
  # v_t^in = item features + the time-block embedding of the request time (block 0).
  v_t = model.item_encoder(cand_ids) + model.time_blocks.embeddings[0]
  intra, masks = [], []
  for d in ("target", "source"):  # V^intra, P^intra (§3.2.3)
    x, m = model.domain_sequence(f, d)
    intra.append(model.encoder(d)(x, query_mask=m))
    masks.append(m)
  joint = model.inter_block(tf.concat(intra, 1), query_mask=tf.concat(masks, 1))
  v_inter, p_inter = joint[:, :intra[0].shape[1]], joint[:, intra[0].shape[1]:]
  u_v = model.target_attention_v(v_t, v_inter, masks[0])
  u_p = model.target_attention_p(v_t, p_inter, masks[1])
  want = model.output_mlp(tf.concat([u_v, u_p, v_t], -1))[..., 0][:, 0]  # MLP([u_v, u_p, v_t])
  np.testing.assert_allclose(model(f).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def _with_other_source_history(features, seed):
  other = make_features(seed=seed)
  g = dict(features)
  for k in ("source_item_ids", "source_timestamps", "source_mask"):
    g[k] = other[k]
  return g


def test_inter_domain_block_carries_product_behaviour_into_the_micro_video_representation():
  f = make_features(seed=4)
  g = _with_other_source_history(f, seed=5)
  semi = build("semi", num_heads=2, ff_dim=8)
  a = semi.encode_user(as_tf(f))["target_inter"].numpy()
  b = semi.encode_user(as_tf(g))["target_inter"].numpy()
  real = f["target_mask"][0]  # row 0 has a full target history
  assert not np.allclose(a[0][real], b[0][real])  # V^inter depends on the product sequence
  ablated = build("semi", num_heads=2, ff_dim=8, use_inter_domain=False)
  a = ablated.encode_user(as_tf(f))["target_inter"].numpy()
  b = ablated.encode_user(as_tf(g))["target_inter"].numpy()
  np.testing.assert_allclose(a, b)  # without it, V^intra sees micro-videos only


@pytest.mark.parametrize("name,reads", [("semi_micro_video", "target"),
                                        ("semi_product", "source")])
def test_single_domain_variants_read_only_their_domain(name, reads):
  model = build(name, num_heads=2, ff_dim=8)
  assert model.domains == (reads,)
  f = make_features(seed=6)
  other = "source" if reads == "target" else "target"
  g = dict(f)
  g2 = make_features(seed=7)
  for k in (f"{other}_item_ids", f"{other}_timestamps", f"{other}_mask"):
    g[k] = g2[k]
  np.testing.assert_allclose(model(as_tf(f)).numpy(), model(as_tf(g)).numpy())
  h = dict(f)
  for k in (f"{reads}_item_ids", f"{reads}_timestamps", f"{reads}_mask"):
    h[k] = g2[k]
  assert not np.allclose(model(as_tf(f)).numpy(), model(as_tf(h)).numpy())


def test_encoders_have_domain_names_in_checkpoints_for_ccl_initialisation(tmp_path):
  model = build("semi", num_heads=2, ff_dim=8)
  names = {v.name.split("/")[1] for v in model.weights if "/" in v.name}
  assert {"target_encoder", "source_encoder", "inter_domain"} <= names, names
  path = str(tmp_path / "ckpt")
  model.save_weights(path)
  keys = [k for k, _ in tf.train.list_variables(path)]
  assert any(k.startswith("target_encoder/") for k in keys), keys[:10]
  assert any(k.startswith("source_encoder/") for k in keys)


def test_semi_refuses_to_drop_time_blocks():
  with pytest.raises(ValueError, match="time blocks"):
    build("semi", num_heads=2, use_time_blocks=False)

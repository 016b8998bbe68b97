"""M5 on the retrieval contract (§4, eq. 1-9): shapes, MLM's masking (main ids of real behaviours
only), SIN's intensity 1 at the start, the hybrid query . item vector = eq. 6, the exported
`retrieve` = the top-K of eq. 6, Table 2's switches, the CG table from GraphSAGE's file, and a
few steps through train.py lowering the loss with every named loss finite."""

import dataclasses

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from conftest import NUM_ITEMS, make_config, tiny_store  # noqa: E402
from tfrec.data.errors import DataError  # noqa: E402
from tfrec.layers import step_random  # noqa: E402
from tfrec.layers.ple import ProgressiveLayeredExtraction  # noqa: E402
from tfrec.layers.split_moe import SplitMixtureOfExperts, TwoLayerNetwork  # noqa: E402
from tfrec.models import m5 as m5_lib  # noqa: E402,F401  (registers "m5")
from tfrec.models import registry  # noqa: E402
from tfrec.models.graphsage import save_cg_embeddings  # noqa: E402

KINDS = np.array([0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 1])  # source items: kind 0; targets: 1, 2


def store():
  s = tiny_store()
  s.kind = KINDS.copy()
  return s


def m5(build=True, **kwargs):
  keras.utils.set_random_seed(0)
  args = dict(num_items=NUM_ITEMS, dim=8, cg_dim=4, max_seq_len=5, num_item_kinds=2,
              num_scenarios=2, user_feature_sizes=(2, 7, 21, 10), num_layers=1, num_heads=2,
              ff_dim=8, mlp_hidden=16, cg_sin_units=(6,), dropout=0.0, mlp_dropout=0.0)
  args.update(kwargs)
  model = registry.build("m5", **args)
  return model.build_and_fill(store()) if build else model


def feats(subsidiary=None):
  seq = tf.constant([[1, 2, 6, 0, 0], [3, 4, 5, 7, 8], [9, 0, 0, 0, 0], [6, 7, 0, 0, 0]],
                    tf.int64)
  sub = (np.random.default_rng(0).uniform(0.1, 3.0, [4, 5, 2]).astype(np.float32)
         if subsidiary is None else subsidiary)
  return {"seq_item_ids": seq, "seq_mask": seq > 0,
          "seq_domain_ids": tf.cast(seq >= 6, tf.int64),
          "seq_timestamps": tf.cast(seq, tf.int64) * 3600,
          "seq_subsidiary": tf.constant(sub),
          "timestamp": tf.fill([4], tf.constant(90_000, tf.int64)),
          "scenario_id": tf.constant([0, 1, 1, 0], tf.int64),
          "user_features": tf.constant([[0, 1, 2, 3], [1, 6, 20, 9], [0, 0, 0, 0], [1, 2, 3, 4]],
                                       tf.int64),
          "positive_item_id": tf.constant([6, 7, 8, 9], tf.int64)}


def bucket_sums(table, seq, mask, kinds, num_buckets):
  """numpy: per row and bucket the sum of `table`'s rows of the row's real behaviours."""
  out = np.zeros([seq.shape[0], num_buckets, table.shape[1]], np.float32)
  for b in range(seq.shape[0]):
    for j in range(seq.shape[1]):
      if mask[b, j]:
        out[b, kinds[seq[b, j]]] += table[seq[b, j]]
  return out


def test_shapes_of_the_query_items_interests_and_losses():
  m = m5()
  f = feats()
  parts = m.user_parts(f)
  assert parts["query"].shape == (4, 8 + 4)
  assert parts["interests_id"].shape == (4, 3, 8) and parts["interests_cg"].shape == (4, 3, 4)
  assert parts["u_id"].shape == (4, 8) and parts["u_cg"].shape == (4, 4)
  w = parts["w"].numpy()
  assert w.shape == (4, 1) and np.all((w > 0) & (w < 1))
  assert m.encode_items(tf.constant([[1, 2], [3, 4]])).shape == (2, 2, 12)
  assert m.score(m.encode_user(f), tf.constant([[6, 7, 8]] * 4)).shape == (4, 3)
  losses = m.compute_losses(f, training=True)
  assert set(losses) == {"softmax", "mlm", "disagreement"}
  for name, loss in losses.items():
    assert loss.shape == (4,) and np.all(np.isfinite(loss.numpy())), name
  assert m.loss_weights == {"softmax": 1.0, "mlm": 0.1, "disagreement": 0.1}  # eq. 9
  m.configure_training(loss_weights={"mlm": 0.5})
  assert m.loss_weights == {"softmax": 1.0, "mlm": 0.5, "disagreement": 0.1}


def test_mlm_masks_main_ids_of_real_behaviours_only_and_keeps_the_subsidiary():
  m = m5()
  f = feats()
  mask = f["seq_mask"].numpy()
  for step in range(20):  # the step's seed: other positions every step, never padding
    with step_random.training_step(0, tf.constant(step, tf.int64)):
      masked = m.mlm_positions(f, training=True).numpy()
    assert not np.any(masked & ~mask)
    assert np.all(masked.sum(axis=1) == np.maximum(1, np.round(0.15 * mask.sum(axis=1))))
  masked = m.mlm_positions(f).numpy()  # outside training: a fixed draw
  np.testing.assert_array_equal(masked, m.mlm_positions(f).numpy())
  seq = m.behaviours(f)

  def hidden(features):
    s = m.behaviours(features)
    return m.id_extraction(m.item_encoder(s["ids"]), seq["buckets"], s["mask"],
                           s["subsidiary"], masked=tf.constant(masked),
                           return_sequence=True)[1].numpy()

  base = hidden(f)
  # The main id at a masked position is replaced: another id there changes nothing...
  other = np.where(masked, 10, f["seq_item_ids"].numpy())
  np.testing.assert_allclose(hidden(dict(f, seq_item_ids=tf.constant(other))), base, atol=1e-6)
  # ...while its subsidiary features are kept (they enter the transformer's input).
  sub = f["seq_subsidiary"].numpy().copy()
  sub[masked] += 5.0
  changed = hidden(dict(f, seq_subsidiary=tf.constant(sub)))
  assert np.abs(changed - base)[masked].max() > 1e-3
  # Eq. 2: the mean over a row's masked positions of -log softmax over every ID embedding.
  table = m.item_encoder(tf.range(1, NUM_ITEMS + 1)).numpy()
  logits = np.einsum("bld,nd->bln", base, table)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ids = f["seq_item_ids"].numpy()
  want = [np.mean([-logp[b, j, ids[b, j] - 1] for j in np.flatnonzero(masked[b])])
          for b in range(4)]
  got = m.mlm_loss(tf.constant(base), f["seq_item_ids"], tf.constant(masked)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(m.compute_losses(f)["mlm"].numpy(), want, rtol=1e-5)


def test_sin_intensity_is_one_at_start_so_channels_are_plain_bucket_sums():
  m = m5(self_attention="none")
  f = feats()
  seq, mask = f["seq_item_ids"].numpy(), f["seq_mask"].numpy()
  parts = m.user_parts(f)
  cg = bucket_sums(m.cg_embeddings.numpy(), seq, mask, KINDS, 3)
  np.testing.assert_allclose(parts["interests_cg"].numpy(), cg, rtol=1e-5, atol=1e-6)
  ids = bucket_sums(m.item_encoder.id_embeddings.numpy(), seq, mask, KINDS, 3)
  np.testing.assert_allclose(parts["interests_id"].numpy(), ids, rtol=1e-5, atol=1e-6)
  b = m.behaviours(f)
  emb = tf.gather(m.cg_embeddings, tf.cast(b["ids"], tf.int32))
  _, intensity = m.cg_extraction.intensity(emb, b["subsidiary"], mask=b["mask"],
                                           return_intensity=True)
  np.testing.assert_array_equal(intensity.numpy(), mask.astype(np.float32))
  # mean pooling: the bucket's average instead
  mean = m5(self_attention="none", pooling="mean").user_parts(f)["interests_cg"].numpy()
  counts = bucket_sums(np.ones([NUM_ITEMS + 1, 1], np.float32), seq, mask, KINDS, 3)
  np.testing.assert_allclose(mean, np.divide(cg, counts, out=np.zeros_like(cg),
                                             where=counts > 0), rtol=1e-5, atol=1e-6)


def test_the_hybrid_query_dot_the_item_vector_is_eq_6():
  m = m5()
  f = feats()
  parts = m.user_parts(f)
  cands = np.array([[6, 7, 8, 9, 10]] * 4)
  f_id = np.einsum("bd,bnd->bn", parts["u_id"].numpy(), m.item_encoder(cands).numpy())
  f_cg = np.einsum("bd,bnd->bn", parts["u_cg"].numpy(), m.cg_embeddings.numpy()[cands])
  w = parts["w"].numpy()
  want = w * f_id + (1 - w) * f_cg
  got = m.score(m.encode_user(f), tf.constant(cands)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # full softmax (eq. 7-8) over that score
  scores = m.encode_user(f)["query"].numpy() @ m.encode_items(
      tf.range(1, NUM_ITEMS + 1)).numpy().T
  pos = f["positive_item_id"].numpy() - 1
  ce = np.log(np.exp(scores).sum(1)) - scores[np.arange(4), pos]
  np.testing.assert_allclose(m.compute_losses(f)["softmax"].numpy(), ce, rtol=1e-5)


@pytest.mark.parametrize("args,check", [
    (dict(multi_modal=False), lambda m, q, l: q.shape[1] == 8 and m.cg_embeddings is None),
    (dict(multi_interest=False),
     lambda m, q, l: m.num_buckets == 1 and not m.id_extraction.blocks
     and m.id_extraction.intensity is None and float(np.abs(l["mlm"]).max()) == 0),
    (dict(bucketing=False, subsidiary=False),
     lambda m, q, l: m.num_buckets == 1 and not m.id_extraction.decorate),
    (dict(multi_scenario=False),
     lambda m, q, l: isinstance(m.mixers["id"], TwoLayerNetwork) and not m.indicators
     and float(np.abs(l["disagreement"]).max()) == 0),
    (dict(indicator=False, disagreement=False),
     lambda m, q, l: not m.indicators and isinstance(m.mixers["cg"], SplitMixtureOfExperts)
     and float(np.abs(l["disagreement"]).max()) == 0),
    (dict(mixing="cgc"), lambda m, q, l: m.mixers["id"].num_levels == 1),
    (dict(mixing="ple"),
     lambda m, q, l: isinstance(m.mixers["id"], ProgressiveLayeredExtraction)
     and m.mixers["id"].num_levels == 2),
    (dict(self_attention="none"),  # w/ SIN
     lambda m, q, l: not m.id_extraction.blocks and float(np.abs(l["mlm"]).max()) == 0),
    (dict(self_attention="both", sin=False),  # w/ SA
     lambda m, q, l: m.cg_extraction.blocks and m.cg_extraction.intensity is None),
    (dict(self_attention="both"),  # w/ SA-SIN
     lambda m, q, l: m.cg_extraction.blocks and m.cg_extraction.intensity is not None),
    (dict(mlm=False, num_layers=2),
     lambda m, q, l: float(np.abs(l["mlm"]).max()) == 0 and len(m.id_extraction.blocks) == 2),
    (dict(negatives="sampled", num_sampled=4), lambda m, q, l: True),
    (dict(cg_source="raw", num_categories=4, num_tags=6, num_tokens=9),  # w/ Raw Metadata
     lambda m, q, l: q.shape[1] == 12 and m.cg_embeddings is None
     and m.cg_metadata.parts == ("category", "tags", "title")),
    (dict(channels="single"),  # w/ Single Channel
     lambda m, q, l: q.shape[1] == 8 and m.weighting is None and m.single_item is not None),
])
def test_each_ablation_switch_builds_and_runs(args, check):
  m = m5(**args)
  f = feats()
  query = m(f, training=True)
  with step_random.training_step(0, tf.constant(1, tf.int64)):
    losses = m.compute_losses(f, training=True)
  for name, loss in losses.items():
    assert loss.shape == (4,) and np.all(np.isfinite(loss.numpy())), name
  assert check(m, query, losses)


def test_config_round_trip_and_bad_arguments():
  m = m5(mixing="cgc", self_attention="both", pooling="mean")
  config = m.get_config()
  again = type(m).from_config(config).build_and_fill(store())
  assert again.get_config() == config
  again.set_weights(m.get_weights())
  np.testing.assert_allclose(again(feats()).numpy(), m(feats()).numpy(), rtol=1e-5)
  for bad, message in ((dict(mixing="mmoe"), "mixing must be"),
                       (dict(self_attention="cg"), "self_attention must be"),
                       (dict(negatives="queue", queue_size=8), "queue"),
                       (dict(num_item_kinds=1), "kind 2 > num_item_kinds 1")):
    with pytest.raises(ValueError, match=message):
      m5(**bad)


def test_the_cg_table_starts_from_graphsages_file(tmp_path):
  table = np.random.default_rng(1).normal(size=[NUM_ITEMS + 1, 4]).astype(np.float32)
  table[0] = 0
  save_cg_embeddings(str(tmp_path), table, {"dim": 4})
  m = m5(cg_init=str(tmp_path))
  assert not np.array_equal(m.cg_embeddings.numpy(), table)  # built: random until training
  assert m.initialise_cg()
  np.testing.assert_array_equal(m.cg_embeddings.numpy(), table)
  frozen = m5(False, cg_init=str(tmp_path / "cg_embeddings.npy"), cg_trainable=False)
  assert frozen.initialise_cg() and not frozen.cg_embeddings.trainable
  np.testing.assert_array_equal(frozen.cg_embeddings.numpy(), table)
  assert not m5(False).initialise_cg()
  assert not m5(False, cg_init=str(tmp_path), multi_modal=False).initialise_cg()
  with pytest.raises(ValueError, match="cg_dim is 8"):
    m5(False, cg_init=str(tmp_path), cg_dim=8).initialise_cg()
  with pytest.raises(DataError, match="missing CG embedding"):
    m5(False, cg_init=str(tmp_path / "elsewhere")).initialise_cg()


# ------------------------------------------------------------------ train.py and the export


@pytest.fixture(scope="module")
def kinds_dir(tmp_path_factory):
  """A tiny synthetic world with two item kinds (60 users) and a random CG table beside it."""
  from tfrec.data.info import DatasetInfo
  from tfrec.datasets import synthetic
  d = str(tmp_path_factory.mktemp("m5") / "kinds")
  cfg = dataclasses.replace(synthetic.get_config("tiny"), num_users=60,
                            item_kind_transfer=(0.9, 0.5))
  synthetic.generate(cfg, d, num_shards=1, verbose=False)
  n = DatasetInfo.load(d).num_items
  table = np.random.default_rng(0).normal(0, 0.3, [n + 1, 8]).astype(np.float32)
  table[0] = 0
  save_cg_embeddings(d, table, {"dim": 8})
  return d


def test_m5_trains_through_train_py_and_the_export_retrieves_eq_6s_top_k(kinds_dir, tmp_path):
  from tfrec import runs, serving
  from tfrec import train as train_lib
  run = str(tmp_path / "m5")
  cfg = make_config(kinds_dir, run, model="m5",
                    model_kwargs=dict(num_layers=1, ff_dim=16, mlp_hidden=32, cg_dim=8,
                                      cg_init="dataset", cg_trainable=False,
                                      cg_sin_units=[16], num_experts=2, mlm_shared_pass=True),
                    steps_per_epoch=3, epochs=2, batch_size=32, learning_rate=1e-2,
                    backup_every_steps=0)
  result = train_lib.train(cfg)
  assert result.steps == 6
  history = result.history
  for name in ("softmax_loss", "mlm_loss", "disagreement_loss", "loss"):
    assert np.all(np.isfinite(history[name])), name
  assert history["loss"][-1] < history["loss"][0]
  assert history["softmax_loss"][-1] < history["softmax_loss"][0]
  assert history["mlm_weight"][-1] == pytest.approx(0.1)

  path = serving.export_run(run, str(tmp_path / "serving" / "1"), checkpoint="final")
  model, _, info, store_ = runs.restore_model(run, "final")
  assert model.cg_init == kinds_dir  # cg_init=dataset: the run's --data_dir
  assert model.num_item_kinds == 2 and model.num_scenarios == info.num_scenarios
  from tfrec.models.graphsage import load_cg_embeddings
  np.testing.assert_array_equal(model.cg_embeddings.numpy(),  # frozen: the file's, trained on
                                load_cg_embeddings(kinds_dir)[0])
  index = store_.item_ids(domain=1)
  seq = index[[0, 5, 40, 41]]
  user = np.array([1, 3, 5, 2], np.int64)
  sub = np.array([[1, 0.5], [2, 1.5], [1, 0.25], [3, 2.0]], np.float32)
  retrieve = tf.saved_model.load(path).signatures["retrieve"]

  def request(scenario, subsidiary=sub):
    return dict(timestamp=tf.constant(10**6, tf.int64), k=tf.constant(10, tf.int32),
                seq_item_ids=tf.constant(seq), seq_domain_ids=tf.ones(len(seq), tf.int64),
                seq_timestamps=tf.constant([10, 20, 30, 40], tf.int64),
                user_features=tf.constant(user), scenario_id=tf.constant(scenario, tf.int64),
                seq_subsidiary=tf.constant(subsidiary))
  out = retrieve(**request(1))
  # The scenario and the subsidiary signals reach the query.
  assert not np.allclose(retrieve(**request(0))["scores"].numpy(), out["scores"].numpy())
  assert not np.allclose(retrieve(**request(1, 2 * sub))["scores"].numpy(),
                         out["scores"].numpy())
  with pytest.raises(tf.errors.InvalidArgumentError, match="scenario_id must be in"):
    retrieve(**request(info.num_scenarios))
  with pytest.raises(tf.errors.InvalidArgumentError, match="seq_subsidiary must have as many"):
    retrieve(**request(1, sub[:3]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="finite and >= 0"):
    retrieve(**request(1, -sub))
  # Eq. 6 computed apart, on the request as the export reads it (padded to max_seq_len).
  L = model.max_seq_len
  pad = lambda v: tf.constant(np.pad(v, (0, L - len(v)))[None], tf.int64)  # noqa: E731
  f = {"seq_item_ids": pad(seq), "seq_timestamps": pad([10, 20, 30, 40]),
       "seq_domain_ids": pad(np.ones(len(seq))), "seq_mask": pad(seq) > 0,
       "timestamp": tf.constant([10**6], tf.int64), "user_features": tf.constant(user[None]),
       "scenario_id": tf.constant([1], tf.int64),
       "seq_subsidiary": tf.constant(np.pad(sub, [(0, L - len(sub)), (0, 0)])[None])}
  parts = model.user_parts(f)
  w = float(parts["w"][0, 0])
  f_id = model.item_encoder(tf.constant(index)).numpy() @ parts["u_id"].numpy()[0]
  f_cg = model.cg_embeddings.numpy()[index] @ parts["u_cg"].numpy()[0]
  scores = w * f_id + (1 - w) * f_cg
  scores[np.isin(index, seq)] = -np.inf
  order = np.argsort(-scores, kind="stable")[:10]
  np.testing.assert_array_equal(out["item_ids"].numpy(), index[order])
  np.testing.assert_allclose(out["scores"].numpy(), scores[order], rtol=1e-4, atol=1e-5)


def test_the_flagfile_sets_the_papers_settings(monkeypatch, tmp_path):
  import os
  from conftest import flagfile_config
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  monkeypatch.chdir(repo)  # flagfiles include each other by repository-relative paths
  cfg = flagfile_config("configs/m5/m5.flags", "data", str(tmp_path / "r"))
  # (SHORT_RUN shortens batch and steps for tests; the file's own values:)
  text = open("configs/m5/m5.flags").read()
  assert "--batch_size=2048" in text and "--learning_rate=0.002" in text
  assert cfg.model.name == "m5" and cfg.train.learning_rate == 0.002
  assert cfg.train.loss_weights == {"mlm": 0.1, "disagreement": 0.1}
  kw = cfg.model.kwargs
  assert (kw["dim"], kw["num_layers"], kw["num_heads"], kw["ff_dim"], kw["mlp_hidden"],
          kw["negatives"], kw["cg_init"]) == (128, 3, 2, 512, 768, "full", "dataset")
  model = registry.build("m5", num_items=10, **{**kw, "cg_init": None})
  assert model.dim == 128 and model.cg_dim == 128 and model.item_features == ("id",)


# ------------------------------------------------------------------ §5.3.1's two variants

RAW = dict(cg_source="raw", num_categories=4, num_tags=6, num_tokens=9)  # tiny_store's sizes


def metadata_store():
  """tiny_store with several tags and title words per item, padding (0) between real ids, and
  item 3 without any tag or title word."""
  s = store()
  s.tags[:] = 0
  s.tags[1:, 0] = (np.arange(1, NUM_ITEMS + 1) % 6) + 1
  s.tags[1:, 2] = (np.arange(1, NUM_ITEMS + 1) * 5 % 6) + 1  # a padding tag between two real
  s.tags[7, 5] = 6
  s.title[:] = 0
  s.title[1:, 0] = (np.arange(1, NUM_ITEMS + 1) % 9) + 1
  s.title[4:, 1] = (np.arange(4, NUM_ITEMS + 1) * 2 % 9) + 1
  s.tags[3], s.title[3] = 0, 0
  return s


def numpy_raw_cg(m, s):
  """E^CG by hand: [E_cat[category]; mean of the real tags' rows; mean of the real title
  words' rows] W, every item (row 0 too)."""
  enc = m.cg_metadata.metadata
  cat, tag, tok = (enc.category_embeddings.numpy(), enc.tag_embeddings.numpy(),
                   enc.token_embeddings.numpy())
  kernel = m.cg_metadata.projection.kernel.numpy()

  def mean(table, ids):
    real = ids[ids > 0]
    return table[real].mean(0) if len(real) else np.zeros(table.shape[1], np.float32)
  x = np.stack([np.concatenate([cat[s.category[i]], mean(tag, s.tags[i]), mean(tok, s.title[i])])
                for i in range(NUM_ITEMS + 1)])
  assert x.shape == (NUM_ITEMS + 1, 3 * 4) and kernel.shape == (12, 4)
  return x @ kernel


def test_raw_metadata_cg_is_the_linear_map_of_the_concatenated_metadata():
  s = metadata_store()
  m = m5(False, self_attention="none", **RAW).build_and_fill(s)
  want = numpy_raw_cg(m, s)
  ids = tf.range(NUM_ITEMS + 1)
  np.testing.assert_allclose(m.cg_items(ids).numpy(), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m.encode_items(ids).numpy()[:, 8:], want, rtol=1e-5, atol=1e-6)
  # An item known only by its columns (one added later) gets the same vector.
  cols = {"category": s.category[[3, 7]], "tags": s.tags[[3, 7]], "title": s.title[[3, 7]]}
  np.testing.assert_allclose(m.cg_metadata.encode_features(cols).numpy(), want[[3, 7]],
                             rtol=1e-5, atol=1e-6)
  layer = m.cg_metadata  # the layer's own config round trip
  again = type(layer).from_config(layer.get_config())
  assert again.get_config() == layer.get_config() and again.parts == layer.parts
  # The CG channel's layers read it as they read GraphSAGE's table (SIN: 1 at start).
  f = feats()
  seq, mask = f["seq_item_ids"].numpy(), f["seq_mask"].numpy()
  np.testing.assert_allclose(m.user_parts(f)["interests_cg"].numpy(),
                             bucket_sums(want, seq, mask, KINDS, 3), rtol=1e-5, atol=1e-5)


def test_single_channel_score_is_the_dot_product_of_the_two_mlps():
  m = m5(channels="single")
  f = feats()
  parts = m.user_parts(f)
  assert "w" not in parts and parts["query"].shape == (4, 8)

  def mlp(net, x):  # TwoLayerNetwork: Dense(hidden, swish) -> Dense(out); no dropout here
    (w1, b1), (w2, b2) = [(d.kernel.numpy(), d.bias.numpy()) for d in net.mlp._stack
                          if isinstance(d, keras.layers.Dense)]
    h = x @ w1 + b1
    return (h / (1 + np.exp(-h))) @ w2 + b2
  query = mlp(m.single_query, np.concatenate([parts["u_id"].numpy(), parts["u_cg"].numpy()], 1))
  np.testing.assert_allclose(parts["query"].numpy(), query, rtol=1e-4, atol=1e-5)
  cands = np.array([[6, 7, 8, 9, 10]] * 4)
  items = mlp(m.single_item, np.concatenate(
      [m.item_encoder.id_embeddings.numpy()[cands], m.cg_embeddings.numpy()[cands]], -1))
  want = np.einsum("bd,bnd->bn", query, items)
  got = m.score(m.encode_user(f), tf.constant(cands)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # the full softmax (eq. 7-8) over that score
  scores = query @ mlp(m.single_item, np.concatenate(
      [m.item_encoder.id_embeddings.numpy()[1:], m.cg_embeddings.numpy()[1:]], -1)).T
  pos = f["positive_item_id"].numpy() - 1
  ce = np.log(np.exp(scores).sum(1)) - scores[np.arange(4), pos]
  np.testing.assert_allclose(m.compute_losses(f)["softmax"].numpy(), ce, rtol=1e-4)


@pytest.mark.parametrize("args,own", [
    (RAW, lambda m: m.cg_metadata.trainable_weights),
    (dict(channels="single"),
     lambda m: m.single_query.trainable_weights + m.single_item.trainable_weights),
])
def test_each_section_5_3_1_variant_trains_a_step_and_round_trips_its_config(args, own):
  m = m5(**args)
  names = [w.name for w in own(m)]
  assert names and all(w.trainable for w in own(m))
  before = [w.numpy() for w in own(m)]
  m.compile(optimizer=keras.optimizers.SGD(0.1))
  logs = m.train_step(feats())
  assert all(np.isfinite(float(logs[k])) for k in ("loss", "softmax_loss", "mlm_loss"))
  for name, a, w in zip(names, before, own(m)):
    assert not np.array_equal(a, w.numpy()), name  # every weight of the variant's own moved
  config = m.get_config()
  assert {k: config[k] for k in ("cg_source", "channels")} == {
      "cg_source": args.get("cg_source", "graph"), "channels": args.get("channels", "two")}
  again = type(m).from_config(config).build_and_fill(store())
  assert again.get_config() == config
  again.set_weights(m.get_weights())
  np.testing.assert_allclose(again(feats()).numpy(), m(feats()).numpy(), rtol=1e-5)
  ids = tf.range(1, NUM_ITEMS + 1)
  np.testing.assert_allclose(again.encode_items(ids).numpy(), m.encode_items(ids).numpy(),
                             rtol=1e-5)


def test_section_5_3_1_variants_refuse_bad_arguments():
  for bad, message in ((dict(cg_source="bert"), "cg_source must be one of"),
                       (dict(channels="three"), "channels must be one of"),
                       (dict(RAW, cg_init="data"), "leave cg_init unset"),
                       (dict(RAW, cg_trainable=False), "trains its metadata embeddings"),
                       (dict(cg_source="raw"), "num_tags and num_tokens are all 0"),
                       (dict(RAW, multi_modal=False), "multi_modal=False has none"),
                       (dict(channels="single", multi_modal=False), "multi_modal=False has")):
    with pytest.raises(ValueError, match=message):
      m5(False, **bad)


@pytest.mark.parametrize("args,saved", [(RAW, True), (dict(channels="single"), False)],
                         ids=["raw", "single"])
def test_the_export_of_each_section_5_3_1_variant_retrieves_its_top_k(args, saved, tmp_path):
  """raw: through a written and reloaded SavedModel (the metadata columns travel in it);
  single: the serving module's traced `retrieve` itself (what is saved; saving costs ~15 s)."""
  from tfrec.serving.export import write_saved_model
  from tfrec.serving.retrieval import RetrievalServingModule
  m = m5(**args)
  index = np.arange(1, NUM_ITEMS + 1)
  module = RetrievalServingModule(m, index, max_len=5)
  seq, ts = np.array([2, 6, 7]), np.array([10, 20, 30])
  sub = np.array([[1, 0.5], [2, 1.5], [3, 2.0]], np.float32)
  user = np.array([1, 3, 5, 2])
  request = dict(timestamp=tf.constant(10**6, tf.int64), k=tf.constant(4, tf.int32),
                 seq_item_ids=tf.constant(seq, tf.int64),
                 seq_domain_ids=tf.constant((seq >= 6).astype(np.int64)),
                 seq_timestamps=tf.constant(ts, tf.int64),
                 user_features=tf.constant(user, tf.int64),
                 scenario_id=tf.constant(1, tf.int64), seq_subsidiary=tf.constant(sub))
  if saved:
    path = write_saved_model(module, str(tmp_path / "1"))
    out = tf.saved_model.load(path).signatures["retrieve"](**request)
  else:
    out = module.retrieve(request)
  pad = lambda v: tf.constant(np.pad(v, (0, 5 - len(v)))[None], tf.int64)  # noqa: E731
  f = {"seq_item_ids": pad(seq), "seq_timestamps": pad(ts), "seq_domain_ids": pad(seq >= 6),
       "seq_mask": pad(seq) > 0, "timestamp": tf.constant([10**6], tf.int64),
       "user_features": tf.constant(user[None], tf.int64),
       "scenario_id": tf.constant([1], tf.int64),
       "seq_subsidiary": tf.constant(np.pad(sub, [(0, 2), (0, 0)])[None])}
  parts = m.user_parts(f)
  if "w" in parts:  # raw metadata: eq. 6 with E^CG from the metadata
    w = float(parts["w"][0, 0])
    scores = (w * m.item_encoder(tf.constant(index)).numpy() @ parts["u_id"].numpy()[0]
              + (1 - w) * m.cg_items(tf.constant(index)).numpy() @ parts["u_cg"].numpy()[0])
  else:  # single channel: the query MLP's output . the item MLP's (checked by hand above)
    scores = m.encode_items(tf.constant(index)).numpy() @ parts["query"].numpy()[0]
  scores[np.isin(index, seq)] = -np.inf
  order = np.argsort(-scores, kind="stable")[:4]
  np.testing.assert_array_equal(out["item_ids"].numpy(), index[order])
  np.testing.assert_allclose(out["scores"].numpy(), scores[order], rtol=1e-4, atol=1e-5)

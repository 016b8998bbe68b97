"""DUAL: dual-domain contrastive adversarial pre-training of ADAPT's feature extractors (Chen et
al., TMM 2021, §III-B, eq. 5-8), on `dual_pair` records (a storytelling item and a product
mounted on it).

Per step, for every part p of the extractor (visual v, textual t; `layers.adapt_extractor`):
  the positive pairs {s+, p+} of the batch, and as each one's random pair {s-, p-} the next
  row's pair (the batch rolled by one; a row whose rolled storytelling is its own gets weight 0)
  constraints_p  = eq. 5's four hinges on the Euclidean distances (margin mu = 1)
  adversarial_p  = eq. 6: BCE of the domain classifier D_p (MLP 64 -> 1) on s+ (z = 0) and
                   p+ (z = 1), reached through a Gradient Reversal Layer: one optimisation step
                   lowers it for D_p and raises it for the extractor, eq. 7-8's min-max game.
Losses (the core's named losses, weights by `--loss_weights`): constraints_visual,
constraints_title, adversarial_visual, adversarial_title; a part the model does not extract
(`item_features`) contributes zeros. The domain classifiers' accuracies are metrics
(`adversarial_<part>_accuracy`): DUAL closes the domain gap when they fall toward 0.5.

ADEN starts from the extractor with `--init_from=<DUAL run>` (the layer named `extractor`).
Validation (`valid` split of dual_pair) reports the same losses; the best checkpoint has the
lowest validation "constraints" (eq. 5's losses, parts summed: `tasks.dual.ConstraintsMean`),
which also stops training early. Not the total loss: its adversarial terms are a min-max whose
sum rises and falls as the classifiers and the extractor take turns (measured on the `adapt`
world: the total moved 12.4 -> 10.7 -> 12.8 -> 5.6 over 20 epochs while the title constraints
fell steadily, 2.98 -> 1.00).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers.adapt_extractor import PARTS, ContentExtractor
from tfrec.layers.gradient_reversal import GradientReversal
from tfrec.layers.mlp import MLP
from tfrec.models import core, registry
from tfrec.tasks import dual as dual_task


@keras.utils.register_keras_serializable(package="tfrec")
class DUAL(core.Model):
  """Module docstring.

  Args:
    num_items: item ids in [1, num_items].
    dim: d of the visual and textual features (ADAPT: 64).
    item_features: the extractor's parts, a subset of ("visual", "title") (Table VI's V, T,
      V+T; MovieLens has no visual feature).
    visual_dim, num_tokens: the store's visual width and title vocabulary (from dataset.json).
    margin: mu of eq. 5.
    grl_scale: lambda of the Gradient Reversal Layer.
    classifier_units: hidden widths of each domain classifier (ADAPT: [64]).
    num_categories, max_seq_len: passed by `runs.build_model` for every model; unused.
  """

  RECORD_KIND = "dual_pair"
  LOSSES = ("constraints_visual", "constraints_title", "adversarial_visual",
            "adversarial_title")
  # The validation constraint loss (eq. 5, parts summed) picks the best epoch and stops early,
  # not the total: its adversarial terms are a min-max, not a convergence signal.
  MONITOR = ("constraints", "min")
  VALIDATES = True
  EXPORTABLE = False

  def __init__(self, num_items: int, dim: int = 64,
               item_features: Sequence[str] = PARTS, visual_dim: int = 0, num_tokens: int = 0,
               margin: float = dual_task.MARGIN, grl_scale: float = 1.0,
               classifier_units: Sequence[int] = (64,), num_categories: int = 0,
               max_seq_len: int = schema.MAX_SEQ_LEN, **kwargs):
    super().__init__(**kwargs)
    del num_categories, max_seq_len
    self.num_items, self.dim = int(num_items), int(dim)
    self.item_features = tuple(item_features)
    self.visual_dim, self.num_tokens = int(visual_dim), int(num_tokens)
    self.margin, self.grl_scale = float(margin), float(grl_scale)
    self.classifier_units = tuple(int(u) for u in classifier_units)
    self.extractor = ContentExtractor(num_items, dim, visual_dim=visual_dim,
                                      num_tokens=num_tokens, parts=self.item_features,
                                      name="extractor")
    self.reversal = GradientReversal(grl_scale, name="gradient_reversal")
    self.classifiers = {p: MLP(list(self.classifier_units) + [1], linear_output=True,
                               name=f"domain_classifier_{p}") for p in self.item_features}
    self.adversarial = {p: dual_task.DomainAdversarial(name=f"adversarial_{p}")
                        for p in self.item_features}
    self.constraints = dual_task.ConstraintsMean(name="constraints_mean")

  def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None):
    """The extractor's parts of the batch's storytelling items (target_item_id)."""
    return self.extractor(features["target_item_id"], training=training)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    story_ids = tf.cast(batch["target_item_id"], tf.int64)
    story = self.extractor(story_ids, training=training)
    product = self.extractor(batch["source_item_id"], training=training)
    # {s-, p-}: the next row's pair; a row whose rolled storytelling is its own weighs 0.
    other_story = tf.not_equal(tf.roll(story_ids, 1, axis=0), story_ids)
    weight = tf.cast(other_story, tf.float32)
    zeros = tf.zeros_like(weight)
    losses = {name: zeros for name in self.LOSSES}
    n = tf.shape(story_ids)[0]
    domains = tf.concat([tf.fill([n], dual_task.STORYTELLING),
                         tf.fill([n], dual_task.PRODUCT)], axis=0)
    for part in self.item_features:
      s_pos, p_pos = tf.cast(story[part], tf.float32), tf.cast(product[part], tf.float32)
      s_neg, p_neg = tf.roll(s_pos, 1, axis=0), tf.roll(p_pos, 1, axis=0)
      losses[f"constraints_{part}"] = weight * dual_task.dual_constraints(
          s_pos, p_pos, s_neg, p_neg, self.margin)
      both = self.reversal(tf.concat([s_pos, p_pos], axis=0))
      logits = self.classifiers[part](both, training=training)[:, 0]
      adversarial = self.adversarial[part](logits, domains)             # [2n]
      losses[f"adversarial_{part}"] = adversarial[:n] + adversarial[n:]
    self.constraints(tf.add_n([losses[f"constraints_{p}"] for p in self.item_features]))
    return losses

  def dummy_features(self) -> Dict[str, tf.Tensor]:
    return {"target_item_id": tf.ones([2], tf.int64), "source_item_id": tf.ones([2], tf.int64)}

  def build_and_fill(self, item_store: Any) -> "DUAL":
    """Creates every weight (one loss pass on dummy pairs) and copies the item store in."""
    self.compute_losses(self.dummy_features(), training=False)
    self(self.dummy_features(), training=False)
    self.extractor.set_item_features(item_store)
    for metric in self.metrics:
      metric.reset_state()
    return self

  def get_config(self) -> Dict[str, Any]:
    return {"num_items": self.num_items, "dim": self.dim,
            "item_features": list(self.item_features), "visual_dim": self.visual_dim,
            "num_tokens": self.num_tokens, "margin": self.margin, "grl_scale": self.grl_scale,
            "classifier_units": list(self.classifier_units)}

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "DUAL":
    return cls(**config)


registry.register("dual", DUAL, "ADAPT's DUAL pre-training (§III-B): eq. 5's dual-domain "
                  "constraints and gradient-reversed domain classifiers (eq. 6-8) on the visual "
                  "and textual extractors; trains on dual_pair records; ADEN loads it with "
                  "--init_from", item_features=PARTS)

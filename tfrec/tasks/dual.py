"""ADAPT's DUAL pre-training objectives (§III-B): the dual-domain contrastive constraints (eq. 5)
and the domain-adversarial loss (eq. 6) that a Gradient Reversal Layer turns into eq. 7-8's
min-max game in one optimisation.

Eq. 5, for one modality (visual v or textual t), a positive pair {s+, p+} (a storytelling item and
a product mounted on it) and a random pair {s-, p-} from another storytelling item, with
d(x, y) = ||x - y||_2 and the hinge f_h(x1, x2) = max(0, mu + x1 - x2), mu = 1:

  L_d = f_h(d(s+, p+), d(s+, p-)) + f_h(d(s+, p+), d(s-, p+))
      + f_h(d(s-, p-), d(s+, p-)) + f_h(d(s-, p-), d(s-, p+))

Each pair's own distance must be smaller by the margin than both cross-pair distances that
share an item with it. Eq. 6 is the binary cross-entropy of the domain classifier's prediction
(z = 0 storytelling, 1 product); the feature extractors receive it through the GRL reversed.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

MARGIN = 1.0  # mu of eq. 5 (ADAPT §III-B)
STORYTELLING, PRODUCT = 0, 1  # eq. 6's domain labels z


def euclidean(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  """<float>[...] ||x - y||_2 over the last axis, with a finite gradient at x = y."""
  return tf.sqrt(tf.reduce_sum(tf.square(x - y), axis=-1) + 1e-12)


def dual_constraints(s_pos: tf.Tensor, p_pos: tf.Tensor, s_neg: tf.Tensor, p_neg: tf.Tensor,
                     margin: float = MARGIN) -> tf.Tensor:
  """Eq. 5 per example.

  Args:
    s_pos, p_pos: <float>[batch, d] the positive pair's storytelling and product features.
    s_neg, p_neg: <float>[batch, d] the random pair's.
    margin: mu.

  Returns:
    <float32>[batch] the sum of the four hinges.
  """
  d_pos = euclidean(s_pos, p_pos)
  d_neg = euclidean(s_neg, p_neg)
  d_sp_pn = euclidean(s_pos, p_neg)   # s+ with the other pair's product
  d_sn_pp = euclidean(s_neg, p_pos)   # the other pair's storytelling with p+

  def hinge(x1, x2):
    return tf.nn.relu(margin + x1 - x2)

  loss = (hinge(d_pos, d_sp_pn) + hinge(d_pos, d_sn_pp)
          + hinge(d_neg, d_sp_pn) + hinge(d_neg, d_sn_pp))
  return tf.cast(loss, tf.float32)


def domain_adversarial(logits: tf.Tensor, domains: tf.Tensor) -> tf.Tensor:
  """Eq. 6 per example: sigmoid cross-entropy of the domain classifier's logits against the
  domain labels (0 storytelling, 1 product). <float32>[...] of `logits`' shape."""
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(domains, tf.float32),
                                                 logits=tf.cast(logits, tf.float32))


@keras.utils.register_keras_serializable(package="tfrec")
class ConstraintsMean(keras.layers.Layer):
  """The epoch mean of eq. 5's summed constraint losses (every extracted part), as the metric
  "constraints": DUAL's monitor. The total loss is no convergence signal for DUAL: its
  adversarial terms are a min-max (the extractor maximises what the classifiers minimise).

  Call args:
    per_example: <float>[batch] the constraint losses of a batch, parts summed.
  """

  def __init__(self, name: str = "constraints_mean", **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    self.mean = keras.metrics.Mean("constraints")

  def call(self, per_example: tf.Tensor) -> tf.Tensor:
    self.mean.update_state(tf.cast(per_example, tf.float32))
    return per_example


@keras.utils.register_keras_serializable(package="tfrec")
class DomainAdversarial(keras.layers.Layer):
  """Eq. 6 as a task: per-example BCE of a domain classifier, and its accuracy as a metric
  ("<name>_accuracy": DUAL works when it falls toward chance, 0.5 on balanced domains).

  Call args:
    logits: <float>[batch] the classifier's logits (behind a `GradientReversal`).
    domains: <int>[batch] 0 storytelling, 1 product.

  Returns:
    <float32>[batch].
  """

  def __init__(self, name: str = "domain_adversarial", **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    self.accuracy = keras.metrics.BinaryAccuracy(f"{name}_accuracy", threshold=0.0)

  def call(self, logits: tf.Tensor, domains: tf.Tensor) -> tf.Tensor:
    self.accuracy.update_state(tf.cast(domains, tf.float32), tf.cast(logits, tf.float32))
    return domain_adversarial(logits, domains)

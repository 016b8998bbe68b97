"""Gradient Reversal Layer (Ganin & Lempitsky, ICML 2015), as ADAPT's DUAL uses it (§III-B,
eq. 7-8): the identity forward; backward, the incoming gradient times -lambda.

Placed between the feature extractors and the domain classifiers, one optimisation step then
plays the min-max game of eq. 7-8: the classifiers descend on the adversarial loss while the
extractors, receiving the reversed gradient, ascend on it (they learn features the classifiers
cannot tell apart by domain).
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras


def reverse_gradient(x: tf.Tensor, scale: float = 1.0) -> tf.Tensor:
  """`x` forward; the gradient with respect to `x` is -scale times the incoming gradient."""

  @tf.custom_gradient
  def _reverse(y):
    def grad(dy):
      return tf.cast(-scale, dy.dtype) * dy
    return tf.identity(y), grad

  return _reverse(x)


@keras.utils.register_keras_serializable(package="tfrec")
class GradientReversal(keras.layers.Layer):
  """Identity forward, gradient times -`scale` backward (module docstring).

  Args:
    scale: lambda >= 0 (0 cuts the gradient: the classifier trains, the extractor ignores it).

  Call args:
    x: <float>[...] any tensor.

  Returns:
    `x` unchanged.
  """

  def __init__(self, scale: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    if scale < 0:
      raise ValueError(f"scale must be >= 0 (the reversal is its sign), got {scale}")
    self.scale = float(scale)

  def call(self, x: tf.Tensor) -> tf.Tensor:
    return reverse_gradient(x, self.scale)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "scale": self.scale}

"""M5's scenario indicator (Zhao et al., KDD 2023, §4.4.1): a trained embedding per scenario,
attached to the user-side features and crossed with each of them by an inner product, so the
input f_s of the Split Mixture-of-Experts (eq. 4) already differs by scenario.

  z_s = E^SH(x^s)                                      the scenario's row of a [S, d] table
  f_s = [e_1, ..., e_F,  z_s,  z_s . e_1, ..., z_s . e_F]          <[batch, F d + d + F]>

e_1..e_F are the F feature fields (user features, context, the pooled ID or CG behaviours),
each d wide; "crossing ... via inner product [31]" is DLRM's dot interaction (Naumov et al.
2019) restricted to the pairs (indicator, field), which is what the sentence crosses. Reading
choices stated: the fields themselves are kept in f_s ("attaching" the indicator to them), and
the field-field dot products of full DLRM are not added (the paper crosses only the indicator).
The indicator alone (`indicator(ids)`) is also eq. 6's input to the dynamic weighting network.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer


def check_scenario_ids(ids: tf.Tensor, num_scenarios: int, name: str = "scenario_id") -> tf.Tensor:
  """Asserts `ids` are in [0, num_scenarios) (the data contract: scenario ids are 0-based)
  before any gather or split: on GPU an out-of-range `tf.gather` returns zeros instead of
  failing. Returns the ids as <int32> with the check as a control dependency.

  Raises (when run):
    tf.errors.InvalidArgumentError: "<name>: scenario ids must be in [0, num_scenarios) ..."
      with the first ten bad ids.
  """
  ids = tf.convert_to_tensor(ids)
  bad = (ids < 0) | (ids >= num_scenarios)
  assert_op = tf.debugging.Assert(
      tf.logical_not(tf.reduce_any(bad)),
      [f"{name}: scenario ids must be in [0, {num_scenarios}); unknown ids:",
       tf.boolean_mask(ids, bad)[:10]], name=f"check_{name}")
  with tf.control_dependencies([assert_op]):
    return tf.cast(tf.identity(ids), tf.int32)


@keras.utils.register_keras_serializable(package="tfrec")
class ScenarioIndicator(keras.layers.Layer):
  """f_s = [fields, z_s, z_s . fields] (module docstring; M5 §4.4.1, the input of eq. 4).

  Args:
    num_scenarios: scenario ids are in [0, num_scenarios) (`DatasetInfo.num_scenarios`).
    dim: d, the width of z_s and of every field it is crossed with.
    embeddings_initializer: initialiser of the [num_scenarios, dim] table.
    embeddings_regularizer: regulariser of the table.

  Call args:
    fields: <float>[batch, F, dim], or a list of F <float>[batch, dim] tensors (stacked).
    scenario_ids: <int>[batch]; an id outside [0, num_scenarios) fails naming "scenario_id".

  Returns:
    <float>[batch, F * dim + dim + F] in the compute dtype: the flattened fields, z_s, then the
    F inner products z_s . e_f in field order.
  """

  def __init__(self, num_scenarios: int, dim: int,
               embeddings_initializer: Any = "glorot_uniform",
               embeddings_regularizer: Any = None, **kwargs):
    super().__init__(**kwargs)
    if num_scenarios < 1 or dim < 1:
      raise ValueError(f"num_scenarios and dim must be >= 1, got {num_scenarios}, {dim}")
    self.num_scenarios, self.dim = int(num_scenarios), int(dim)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
    self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

  def build(self, input_shape: Any) -> None:
    self.embeddings = self.add_weight(
        "embeddings", shape=[self.num_scenarios, self.dim],
        initializer=clone_initializer(self.embeddings_initializer),
        regularizer=self.embeddings_regularizer)
    super().build(input_shape)

  def indicator(self, scenario_ids: tf.Tensor) -> tf.Tensor:
    """z_s = E^SH(x^s): <float>[batch, dim] (also eq. 6's weighting-network input)."""
    if not self.built:
      self.build(None)
    ids = check_scenario_ids(scenario_ids, self.num_scenarios)
    return tf.cast(tf.gather(self.embeddings, ids), self.compute_dtype)

  def call(self, fields: Union[tf.Tensor, Sequence[tf.Tensor]],
           scenario_ids: tf.Tensor) -> tf.Tensor:
    if isinstance(fields, (list, tuple)):
      fields = tf.stack([tf.cast(f, self.compute_dtype) for f in fields], axis=1)
    x = tf.cast(fields, self.compute_dtype)                                 # [b, F, d]
    if x.shape.rank != 3 or x.shape[-1] != self.dim:
      raise ValueError(f"fields must be [batch, F, {self.dim}], got {x.shape}")
    z = self.indicator(scenario_ids)                                        # [b, d]
    crosses = tf.einsum("bfd,bd->bf", x, z)                                 # [b, F]
    flat = tf.reshape(x, [-1, x.shape[1] * self.dim])
    return tf.concat([flat, z, crosses], axis=-1)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_scenarios": self.num_scenarios, "dim": self.dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer)}


__all__ = ["ScenarioIndicator", "check_scenario_ids"]

"""Multi-layer perceptron: the prediction MLP of SEMI (Lei et al., KDD 2021) §3.4 and §4.1
(128 -> 1 on [u_v, u_p, v_t^in], before eq. 10) and the hidden stacks of DIN and ADAPT."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer
from tfrec.layers.step_random import Dropout


@keras.utils.register_keras_serializable(package="tfrec")
class MLP(keras.layers.Layer):
  """Stack of Dense -> [BatchNorm] -> activation -> [Dropout] layers (SEMI §3.4 MLP).

  Each layer i computes dropout(act(bn(x W_i + b_i))). With `linear_output` the last layer is a
  bare Dense (no batch norm, activation or dropout), e.g. the logit of SEMI's 128 -> 1 MLP
  whose sigmoid belongs to the loss (eq. 10).

  Args:
    units: widths of the layers, e.g. [128, 1].
    activation: activation of every (non-linear) layer.
    dropout: dropout rate after every non-linear layer.
    use_batch_norm: batch normalisation between Dense and activation.
    linear_output: make the last layer linear.
    kernel_initializer: initialiser of all kernels.
    kernel_regularizer: regulariser of all kernels.

  Call args:
    inputs: <float32>[batch, ..., in_dim].
    training: dropout and batch-norm switch.

  Returns:
    <float32>[batch, ..., units[-1]].
  """

  def __init__(self,
               units: Sequence[int],
               activation: Union[str, Callable[..., Any]] = "relu",
               dropout: float = 0.0,
               use_batch_norm: bool = False,
               linear_output: bool = False,
               kernel_initializer: Any = "glorot_uniform",
               kernel_regularizer: Any = None,
               **kwargs):
    super().__init__(**kwargs)
    units = [int(u) for u in units]
    if not units or min(units) < 1:
      raise ValueError(f"units must be a non-empty list of positive widths, got {units}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.units = units
    self.activation = keras.activations.get(activation)
    self.dropout = dropout
    self.use_batch_norm = use_batch_norm
    self.linear_output = linear_output
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self._stack = []
    policy = self.dtype_policy  # sublayers follow this layer's dtype (e.g. a float32 logit MLP)
    for i, width in enumerate(units):
      linear = linear_output and i == len(units) - 1
      self._stack.append(keras.layers.Dense(
          width, kernel_initializer=clone_initializer(self.kernel_initializer),
          kernel_regularizer=self.kernel_regularizer, name=f"dense_{i}", dtype=policy))
      if linear:
        continue
      if use_batch_norm:
        self._stack.append(keras.layers.BatchNormalization(name=f"batch_norm_{i}", dtype=policy))
      self._stack.append(keras.layers.Activation(self.activation, name=f"activation_{i}",
                                                   dtype=policy))
      if dropout:
        self._stack.append(Dropout(dropout, name=f"dropout_{i}", dtype=policy))

  def call(self, inputs: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    x = inputs
    for layer in self._stack:
      if isinstance(layer, (keras.layers.Dropout, keras.layers.BatchNormalization)):
        x = layer(x, training=training)
      else:
        x = layer(x)
    return x

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        units=list(self.units),
        activation=keras.activations.serialize(self.activation),
        dropout=self.dropout,
        use_batch_norm=self.use_batch_norm,
        linear_output=self.linear_output,
        kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer))
    return config

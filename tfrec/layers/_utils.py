"""Small helpers shared by the layers of this package."""

from __future__ import annotations

from typing import Any

import tf_keras as keras


def clone_initializer(initializer: Any) -> keras.initializers.Initializer:
  """A fresh copy of `initializer`.

  An unseeded Keras initializer instance returns the SAME values every time it is called, so
  one instance shared by several kernels (Q, K and V, or the layers of an MLP) would make them
  identical; each kernel gets its own copy instead.
  """
  initializer = keras.initializers.get(initializer)
  return initializer.__class__.from_config(initializer.get_config())

"""Small helpers shared by the layers of this package."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import tf_keras as keras

_TRACE = threading.local()


def clone_initializer(initializer: Any) -> keras.initializers.Initializer:
  """A fresh copy of `initializer`.

  An unseeded Keras initializer instance returns the SAME values every time it is called, so
  one instance shared by several kernels (Q, K and V, or the layers of an MLP) would make them
  identical; each kernel gets its own copy instead.
  """
  initializer = keras.initializers.get(initializer)
  return initializer.__class__.from_config(initializer.get_config())


@contextlib.contextmanager
def per_position_items() -> Iterator[None]:
  """Inside, layers that compute each distinct item of a request once (`ContentExtractor`) are
  traced computing every position instead: the same values, with static shapes. FLOP counting
  traces models inside it, so model FLOPs count every position of every instance (the papers'
  per-instance figures), not what deduplication saves on one batch's data."""
  previous = getattr(_TRACE, "per_position", False)
  _TRACE.per_position = True
  try:
    yield
  finally:
    _TRACE.per_position = previous


def distinct_items() -> bool:
  """False inside `per_position_items`."""
  return not getattr(_TRACE, "per_position", False)

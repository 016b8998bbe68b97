"""tfrec: TensorFlow 2 / Keras 2 reproductions of industrial cross-domain recommenders.

Importing `tfrec` selects the Keras 2 API (`tf-keras`) for TensorFlow by setting
`TF_USE_LEGACY_KERAS=1` *before* TensorFlow is imported, because
`tensorflow-recommenders` refuses Keras 3. If TensorFlow was already imported and
bound to Keras 3, we cannot switch any more and raise an error that says what to do.
"""

import os
import sys

__version__ = "0.1.0"

_LEGACY = os.environ.get("TF_USE_LEGACY_KERAS")
if _LEGACY is None:
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
elif _LEGACY.strip().lower() not in ("1", "true"):
  raise ImportError(
      f"tfrec needs Keras 2 (tf-keras) but TF_USE_LEGACY_KERAS={_LEGACY!r} is set. "
      "Unset it or set TF_USE_LEGACY_KERAS=1 before starting Python.")


def _check_keras_version() -> None:
  """Raises if TensorFlow was imported before us and already bound `tf.keras` to Keras 3."""
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return  # The variable above decides when TensorFlow is imported.
  # `tf.keras` is resolved lazily on first use: if nobody touched it yet the variable
  # set above still takes effect; if Keras 3 was already bound, it is too late.
  keras_name = getattr(tf.keras, "__name__", "")
  if not keras_name.startswith("tf_keras"):
    raise ImportError(
        "TensorFlow was imported and bound to Keras 3 before tfrec was imported. tfrec "
        "(and tensorflow-recommenders) need Keras 2: import tfrec before tensorflow, or "
        "start Python with TF_USE_LEGACY_KERAS=1 (and `pip install tf-keras`).")


_check_keras_version()

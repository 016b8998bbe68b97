"""A trained user embedding (the user factor p_u of matrix factorisation: BPR, Rendle et al. UAI
2009; NCF, He et al. WWW 2017 eq. 1; THACIL §4.3: "user is embedded into 128-dim vector and the
user embedding is trained"), with its ids checked before the lookup."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers._utils import clone_initializer


def profile_sizes(user_feature_sizes: Sequence[int]) -> Tuple[int, ...]:
  """The vocabulary size of each of the `schema.USER_FEATURE_NAMES` profile fields, checked.

  Raises:
    ValueError: not one size per field.
  """
  sizes = tuple(int(n) for n in user_feature_sizes)
  if len(sizes) != schema.NUM_USER_FEATURES:
    raise ValueError(f"user_feature_sizes needs {schema.NUM_USER_FEATURES} sizes, got {sizes}")
  return sizes


def profile_embeddings(user_feature_sizes: Sequence[int], dim: int) -> List[keras.layers.Layer]:
  """One `Embedding(size, dim)` per profile field, named user_<field> (DSSM's, SDM's and
  PDN's user profile; a query tower that reads it sets `USES_USER_FEATURES`)."""
  return [keras.layers.Embedding(n, dim, name=f"user_{name}")
          for n, name in zip(profile_sizes(user_feature_sizes), schema.USER_FEATURE_NAMES)]


def embed_profile(embeddings: Sequence[keras.layers.Layer], user_features: tf.Tensor
                  ) -> List[tf.Tensor]:
  """<[b, dim]> per profile field from `user_features` <int64>[b, NUM_USER_FEATURES]."""
  return [emb(user_features[:, i]) for i, emb in enumerate(embeddings)]


def check_user_ids(ids: tf.Tensor, num_users: int, name: str = "user_id") -> tf.Tensor:
  """Asserts `ids` are in [0, num_users) (the data contract: user ids are 0-based) before any
  gather, as `check_item_ids` does for items: on GPU an out-of-range `tf.gather` returns zeros
  instead of failing, which would score an unknown user as a zero vector.

  Returns `ids` with the check as a control dependency.

  Raises (when run):
    tf.errors.InvalidArgumentError: "<name>: user ids must be in [0, num_users) ..." with the
      first ten bad ids.
  """
  ids = tf.convert_to_tensor(ids)
  bad_mask = (ids < 0) | (ids >= num_users)
  assert_op = tf.debugging.Assert(
      tf.logical_not(tf.reduce_any(bad_mask)),
      [f"{name}: user ids must be in [0, {num_users}) (num_users = {num_users}); unknown "
       "ids:", tf.boolean_mask(ids, bad_mask)[:10]], name=f"check_{name}")
  with tf.control_dependencies([assert_op]):
    return tf.identity(ids)


@keras.utils.register_keras_serializable(package="tfrec")
class UserEmbedding(keras.layers.Layer):
  """p_u = P[u]: one trained `dim`-wide row per user id.

  Args:
    num_users: user ids are in [0, num_users) (`DatasetInfo.num_users`).
    dim: width of each user vector.
    embeddings_initializer: initialiser of the table.
    embeddings_regularizer: regulariser of the table (THACIL §4.3's L2).

  Call args:
    user_ids: <int>[...] user ids; an id outside [0, num_users) fails with an
      InvalidArgumentError naming "user_id" (`check_user_ids`).

  Returns:
    <float>[..., dim] in the layer's compute dtype.
  """

  def __init__(self, num_users: int, dim: int, embeddings_initializer: Any = "glorot_uniform",
               embeddings_regularizer: Any = None, **kwargs):
    super().__init__(**kwargs)
    if num_users < 1:
      raise ValueError(f"num_users must be >= 1, got {num_users}")
    self.num_users = int(num_users)
    self.dim = int(dim)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
    self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

  def build(self, input_shape: tf.TensorShape) -> None:
    self.embeddings = self.add_weight(
        "embeddings", shape=[self.num_users, self.dim],
        initializer=clone_initializer(self.embeddings_initializer),
        regularizer=self.embeddings_regularizer)
    super().build(input_shape)

  def call(self, user_ids: tf.Tensor) -> tf.Tensor:
    ids = check_user_ids(tf.cast(user_ids, tf.int64), self.num_users)
    return tf.cast(tf.gather(self.embeddings, ids), self.compute_dtype)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_users": self.num_users, "dim": self.dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer)}


__all__ = ["UserEmbedding", "check_user_ids"]

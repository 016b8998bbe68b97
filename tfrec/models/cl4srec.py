"""CL4SRec (Xie et al., ICDE 2022), M5 Table 2's baseline: SASRec's encoder with a contrastive
auxiliary task between two augmented views of each behaviour sequence.

  query         = SASRec's output at the newest position (`models/sasrec.py`, reused: this
                  class is a `SASRec`, its blocks, positions and objectives unchanged)
  "next_item"   SASRec's objective (`objective`; "softmax" here: the retrieval core's loss on
                the record's positive, M5 §5.1.3's softmax with `negatives=full`)
  "contrastive" NT-Xent (`tasks.nt_xent`) between two views of every row of the global batch,
                each view = one augmentation drawn per row from `augmentations`
                (`layers.sequence_augment`: crop eta, mask gamma, reorder beta) of the record's
                sequence, encoded by the same encoder, represented by its newest position
  total         = next_item + lambda contrastive, lambda = `--loss_weights=contrastive=...`

The mask token is item id num_items + 1, embedded by its own learnt vector (`embed_sequence`):
it never reaches the item encoder, the index or a request. The views are drawn from the step's
seed (`step_random.step_seed()`; per replica, as the replicas hold different rows), so a resumed
run draws the same views; outside a training step (a direct call) from a fixed seed.
Validation (training falsy) reports the contrastive loss as 0: the checkpoint is picked by the
next-item loss alone, the task the model is evaluated on.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers import step_random
from tfrec.layers.sequence_augment import AUGMENTATIONS, augment
from tfrec.models import registry
from tfrec.models.retrieval import SEQ
from tfrec.models.sasrec import SASRec
from tfrec.tasks.nt_xent import SIMILARITIES, nt_xent

_DIRECT_SEED = (20220509, 0)  # views drawn outside a training step


@keras.utils.register_keras_serializable(package="tfrec")
class CL4SRec(SASRec):
  """SASRec + the contrastive task over augmented views (module docstring).

  Args:
    crop_ratio, mask_ratio, reorder_ratio: eta, gamma, beta of the augmentations.
    augmentations: the set each view draws its augmentation from.
    contrastive_temperature: tau of NT-Xent.
    similarity: "dot" (CL4SRec) or "cosine".
    Others: `SASRec` / `RetrievalModel`.

  Losses: "next_item" (SASRec's), "contrastive" (per example).
  """

  LOSSES = ("next_item", "contrastive")

  def __init__(self, num_items: int, crop_ratio: float = 0.6, mask_ratio: float = 0.3,
               reorder_ratio: float = 0.6, augmentations: Sequence[str] = AUGMENTATIONS,
               contrastive_temperature: float = 1.0, similarity: str = "dot", **kwargs):
    super().__init__(num_items, **kwargs)
    self.augmentations = tuple(augmentations)
    unknown = sorted(set(self.augmentations) - set(AUGMENTATIONS))
    if not self.augmentations or unknown:
      raise ValueError(f"augmentations must be a non-empty subset of {AUGMENTATIONS}, got "
                       f"{list(self.augmentations)}")
    for name, ratio in (("crop_ratio", crop_ratio), ("mask_ratio", mask_ratio),
                        ("reorder_ratio", reorder_ratio)):
      if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {ratio}")
    if similarity not in SIMILARITIES:
      raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if contrastive_temperature <= 0:
      raise ValueError(f"contrastive_temperature must be > 0, got {contrastive_temperature}")
    self.crop_ratio, self.mask_ratio = float(crop_ratio), float(mask_ratio)
    self.reorder_ratio = float(reorder_ratio)
    self.contrastive_temperature, self.similarity = float(contrastive_temperature), similarity
    self.mask_id = self.num_items + 1
    self.mask_embedding = self.add_weight("mask_embedding", shape=[self.dim],
                                          initializer="glorot_uniform")

  def embed_sequence(self, ids: tf.Tensor) -> tf.Tensor:
    """Item encodings, with the learnt mask vector where an id is `mask_id`."""
    is_mask = tf.equal(tf.cast(ids, tf.int64), self.mask_id)
    x = self.item_encoder(tf.where(is_mask, tf.zeros_like(ids), ids))
    return tf.where(is_mask[..., None], tf.cast(self.mask_embedding, x.dtype)[None, None], x)

  def views(self, batch: Dict[str, tf.Tensor], seed: Optional[tf.Tensor] = None):
    """Two augmented views [(ids, mask), (ids, mask)] of the batch's sequences, from `seed`
    <int64>[2] (default: the step's next seed, or a fixed one outside a training step)."""
    if seed is None:
      seed = step_random.step_seed()
    if seed is None:
      seed = tf.constant(_DIRECT_SEED, tf.int64)
    seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
    ids, mask = batch[SEQ], tf.cast(batch["seq_mask"], tf.bool)
    return [augment(ids, mask, s, self.crop_ratio, self.mask_ratio, self.reorder_ratio,
                    self.mask_id, self.augmentations) for s in seeds]

  def view_vector(self, ids: tf.Tensor, mask: tf.Tensor,
                  training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[b, d] the encoder's output at a view's newest position."""
    return self.encode_query({SEQ: ids, "seq_mask": mask}, training=training)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    losses = dict(super().compute_losses(batch, training=training))
    if not training:
      losses["contrastive"] = tf.zeros_like(losses["next_item"])
      return losses
    (first_ids, first_mask), (second_ids, second_mask) = self.views(batch)
    losses["contrastive"] = nt_xent(self.view_vector(first_ids, first_mask, training),
                                    self.view_vector(second_ids, second_mask, training),
                                    self.contrastive_temperature, self.similarity)
    return losses

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "crop_ratio": self.crop_ratio,
            "mask_ratio": self.mask_ratio, "reorder_ratio": self.reorder_ratio,
            "augmentations": list(self.augmentations),
            "contrastive_temperature": self.contrastive_temperature,
            "similarity": self.similarity}


registry.register("cl4srec", CL4SRec, "CL4SRec: SASRec's encoder + NT-Xent between two "
                  "augmented views (crop, mask, reorder) (matching records; M5 baseline)",
                  objective="softmax")

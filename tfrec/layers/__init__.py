"""Reusable Keras 2 layers shared by the models: attention block, target attention, time-block
embedding, MLP, masked pooling, the trained user embedding, self-attentive pooling (ADAPT eq. 2-4)
and the gradient reversal layer (ADAPT's DUAL). Every layer is registered as
`tfrec>ClassName`.

Conventions: sequences are right-padded (oldest first) with `<bool>[batch, seq]` masks, True =
real item; padded positions never influence a result and all-padded rows give finite values.
"""

from tfrec.layers.attention import MultiHeadAttentionBlock, masked_softmax
from tfrec.layers.augru import AUGRU
from tfrec.layers.attentive_pooling import SelfAttentivePooling
from tfrec.layers.gradient_reversal import GradientReversal, reverse_gradient
from tfrec.layers.mlp import MLP
from tfrec.layers.pooling import SequencePooling
from tfrec.layers.target_attention import TargetAttention
from tfrec.layers.time_block import TimeBlockEmbedding, time_block_index
from tfrec.layers.user_embedding import UserEmbedding, check_user_ids

__all__ = [
    "AUGRU",
    "GradientReversal",
    "MLP",
    "MultiHeadAttentionBlock",
    "SelfAttentivePooling",
    "SequencePooling",
    "TargetAttention",
    "TimeBlockEmbedding",
    "UserEmbedding",
    "check_user_ids",
    "masked_softmax",
    "reverse_gradient",
    "time_block_index",
]

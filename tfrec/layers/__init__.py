"""Reusable Keras 2 layers shared by the models: attention block, target attention, time-block
embedding, MLP, masked pooling, the trained user embedding, self-attentive pooling (ADAPT eq. 2-4)
the gradient reversal layer (ADAPT's DUAL) and M5's multi-scenario and subsidiary layers (scenario
indicator, Split Mixture-of-Experts with eq. 5's disagreement loss, CGC / PLE, SIN, the
raw-metadata CG embedding of §5.3.1). Every layer
is registered as
`tfrec>ClassName`.

Conventions: sequences are right-padded (oldest first) with `<bool>[batch, seq]` masks, True =
real item; padded positions never influence a result and all-padded rows give finite values.
"""

from tfrec.layers.attention import MultiHeadAttentionBlock, masked_softmax
from tfrec.layers.augru import AUGRU
from tfrec.layers.attentive_pooling import SelfAttentivePooling
from tfrec.layers.gradient_reversal import GradientReversal, reverse_gradient
from tfrec.layers.metadata_embedding import MetadataEmbedding
from tfrec.layers.mlp import MLP
from tfrec.layers.ple import CustomizedGateControl, ProgressiveLayeredExtraction
from tfrec.layers.pooling import SequencePooling
from tfrec.layers.scenario_indicator import ScenarioIndicator, check_scenario_ids
from tfrec.layers.split_moe import SplitMixtureOfExperts, disagreement_loss
from tfrec.layers.subsidiary_intensity import SubsidiaryIntensity, subsidiary_features
from tfrec.layers.target_attention import TargetAttention
from tfrec.layers.time_block import TimeBlockEmbedding, time_block_index
from tfrec.layers.user_embedding import UserEmbedding, check_user_ids

__all__ = [
    "AUGRU",
    "CustomizedGateControl",
    "GradientReversal",
    "MLP",
    "MetadataEmbedding",
    "MultiHeadAttentionBlock",
    "ProgressiveLayeredExtraction",
    "ScenarioIndicator",
    "SelfAttentivePooling",
    "SequencePooling",
    "SplitMixtureOfExperts",
    "SubsidiaryIntensity",
    "TargetAttention",
    "TimeBlockEmbedding",
    "UserEmbedding",
    "check_scenario_ids",
    "check_user_ids",
    "disagreement_loss",
    "masked_softmax",
    "reverse_gradient",
    "subsidiary_features",
    "time_block_index",
]

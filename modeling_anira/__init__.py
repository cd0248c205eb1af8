"""ANIRA as a Transformers model. Importing this package registers it with the Auto classes.

    >>> import modeling_anira
    >>> from transformers import AutoConfig, AutoModelForCausalLM
    >>> model = AutoModelForCausalLM.from_config(AutoConfig.for_model("anira", depth_mode="online"))
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .cache_anira import AniraCache
from .configuration_anira import AniraConfig
from .depth_batching import DepthBatcher, DepthBatchResult
from .depth_control import DEPTH_CONTROLLERS, DepthReport, EarlyDepth, FixedDepth, OnlineDepth
from .generation_anira import AniraGenerateBeamOutput, AniraGenerateOutput, AniraGenerationMixin, DepthStreamer
from .modeling_anira import (
    AniraCausalLMOutput,
    AniraForCausalLM,
    AniraModel,
    AniraModelOutput,
    AniraPreTrainedModel,
)

AutoConfig.register("anira", AniraConfig, exist_ok=True)
AutoModel.register(AniraConfig, AniraModel, exist_ok=True)
AutoModelForCausalLM.register(AniraConfig, AniraForCausalLM, exist_ok=True)

# save_pretrained writes auto_map and copies the modeling files next to the weights, so a saved folder
# loads with trust_remote_code=True in a process that never imported this package.
AniraConfig.register_for_auto_class()
AniraModel.register_for_auto_class("AutoModel")
AniraForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "AniraCache",
    "AniraCausalLMOutput",
    "AniraConfig",
    "AniraForCausalLM",
    "AniraGenerateBeamOutput",
    "AniraGenerateOutput",
    "AniraGenerationMixin",
    "AniraModel",
    "AniraModelOutput",
    "AniraPreTrainedModel",
    "DEPTH_CONTROLLERS",
    "DepthBatchResult",
    "DepthBatcher",
    "DepthReport",
    "DepthStreamer",
    "EarlyDepth",
    "FixedDepth",
    "OnlineDepth",
]

"""transformers' common model tests wired to AniraModel / AniraForCausalLM, as Llama's test file wires Llama.

Not a test module of this repository: `run_transformers_common_tests.py` copies it, as `test_modeling_anira.py`,
next to the mixins it copies from a transformers checkout, and runs it once per depth mode (ANIRA_DEPTH_MODE).
"""

import os
import unittest

import torch
from transformers.testing_utils import require_torch, torch_device

from modeling_anira import AniraConfig, AniraForCausalLM, AniraModel

from . import test_modeling_common
from .generation.test_utils import GenerationTesterMixin
from .test_configuration_common import ConfigTester
from .test_modeling_common import ModelTesterMixin, ids_tensor, random_attention_mask

DEPTH_MODE = os.environ.get("ANIRA_DEPTH_MODE", "online")

# The mixins tell a base model from a head model by transformers' tables of built-in class names (a base model has
# no loss to train; a causal LM gets labels): list anira there as a built-in model is listed, in the mixins' copy
# of the tables only (transformers' own auto mappings are untouched; `import modeling_anira` registers the classes).
for table, name in (("MODEL_MAPPING_NAMES", "AniraModel"), ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "AniraForCausalLM")):
    setattr(test_modeling_common, table, {**getattr(test_modeling_common, table), "anira": name})


class AniraModelTester:
    """A tiny config: P prelude, C core layers looped up to max_depth D times, K coda layers. What the mixins call
    `num_hidden_layers` (attention maps, the cache's length) is `config.num_hidden_layers` = P + C x D + K; the
    hidden states are the embeddings, each prelude layer's output, the state after each iteration and each coda
    layer's output (1 + P + D + K)."""

    def __init__(self, parent, batch_size=13, seq_length=7, vocab_size=99, hidden_size=32, num_prelude_layers=1,
                 num_core_layers=1, num_coda_layers=1, max_depth=3, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=37, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2):
        self.parent = parent
        self.batch_size, self.seq_length, self.vocab_size = batch_size, seq_length, vocab_size
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.num_prelude_layers, self.num_core_layers, self.num_coda_layers = num_prelude_layers, num_core_layers, num_coda_layers
        self.max_depth = max_depth
        self.num_attention_heads, self.num_key_value_heads = num_attention_heads, num_key_value_heads
        self.max_position_embeddings = max_position_embeddings
        self.pad_token_id, self.bos_token_id, self.eos_token_id = pad_token_id, bos_token_id, eos_token_id
        self.is_training = True
        self.num_hidden_layers = num_prelude_layers + num_core_layers * max_depth + num_coda_layers
        self.expected_num_hidden_layers = 1 + num_prelude_layers + max_depth + num_coda_layers

    def get_config(self) -> AniraConfig:
        return AniraConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_prelude_layers=self.num_prelude_layers, num_core_layers=self.num_core_layers,
            num_coda_layers=self.num_coda_layers, max_depth=self.max_depth, depth_mode=DEPTH_MODE,
            depth_init_bias=0.0, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, max_position_embeddings=self.max_position_embeddings,
            pad_token_id=self.pad_token_id, bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        input_mask = random_attention_mask([self.batch_size, self.seq_length])
        labels = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        return self.get_config(), input_ids, input_mask, labels

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, input_mask, _ = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "attention_mask": input_mask}

    def create_and_check_model(self, config, input_ids, input_mask, labels):
        model = AniraModel(config).to(torch_device).eval()
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))
        self.parent.assertEqual(result.depths.shape, (self.batch_size, self.seq_length))

    def create_and_check_for_causal_lm(self, config, input_ids, input_mask, labels):
        model = AniraForCausalLM(config).to(torch_device).eval()
        result = model(input_ids, attention_mask=input_mask, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.vocab_size))
        self.parent.assertTrue(torch.isfinite(result.loss))


@require_torch
class AniraModelTest(ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (AniraModel, AniraForCausalLM)
    pipeline_model_mapping = {"feature-extraction": AniraModel, "text-generation": AniraForCausalLM}

    def setUp(self):
        self.model_tester = AniraModelTester(self)
        self.config_tester = ConfigTester(self, config_class=AniraConfig, hidden_size=64, num_attention_heads=4)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_causal_lm(self):
        self.model_tester.create_and_check_for_causal_lm(*self.model_tester.prepare_config_and_inputs())

"""AniraConfig: every invalid value raises a ValueError that names the field; valid configs round-trip."""

import pytest
from transformers import AutoConfig

from modeling_anira import AniraConfig


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(max_depth=0), "max_depth"),
        (dict(max_depth=2.5), "max_depth"),
        (dict(min_depth=0), "min_depth"),
        (dict(min_depth=5, max_depth=4), "min_depth"),
        (dict(depth_mode="sometimes"), "depth_mode"),
        (dict(injection="multiply"), "injection"),
        (dict(halting_objective="vibes"), "halting_objective"),
        (dict(router_sampling="softmax"), "router_sampling"),
        (dict(halting_threshold=0.0), "halting_threshold"),
        (dict(halting_threshold=1.0), "halting_threshold"),
        (dict(halting_threshold=-0.3), "halting_threshold"),
        (dict(hidden_size=100, num_attention_heads=3), "num_attention_heads"),
        (dict(num_attention_heads=4, num_key_value_heads=3), "num_key_value_heads"),
        (dict(num_core_layers=0), "num_core_layers"),
        (dict(num_prelude_layers=-1), "num_prelude_layers"),
        (dict(num_coda_layers=-1), "num_coda_layers"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(gumbel_temperature=0.0), "gumbel_temperature"),
        (dict(compute_penalty=-0.1), "compute_penalty"),
        (dict(act_epsilon=1.5), "act_epsilon"),
        (dict(halting_objective="pondernet", pondernet_prior_depth=20.0), "pondernet_prior_depth"),
        (dict(attention_dropout=1.0), "attention_dropout"),
        (dict(rms_norm_eps=0.0), "rms_norm_eps"),
        (dict(pad_token_id=500, vocab_size=100), "pad_token_id"),
        (dict(head_dim=7), "head_dim"),
        # float fields given None or strings, booleans given as strings, NaN / inf
        (dict(halting_threshold=None), "halting_threshold"),
        (dict(compute_penalty="0.1"), "compute_penalty"),
        (dict(rms_norm_eps=None), "rms_norm_eps"),
        (dict(initializer_range="small"), "initializer_range"),
        (dict(depth_init_bias=None), "depth_init_bias"),
        (dict(gumbel_temperature=True), "gumbel_temperature"),
        (dict(compute_penalty=float("nan")), "compute_penalty"),
        (dict(depth_init_bias=float("inf")), "depth_init_bias"),
        (dict(rms_norm_eps=float("inf")), "rms_norm_eps"),
        (dict(act_epsilon=float("nan")), "act_epsilon"),
        (dict(tie_word_embeddings="false"), "tie_word_embeddings"),
        (dict(use_cache="true"), "use_cache"),
        (dict(attention_bias=1), "attention_bias"),
        (dict(mlp_bias=None), "mlp_bias"),
        # unknown names (a KeyError deep inside the model before)
        (dict(hidden_act="swishy"), "hidden_act"),
        (dict(rope_parameters={"rope_type": "spiral", "rope_theta": 10000.0}), "rope_type"),
        (dict(rope_parameters={"rope_type": "linear", "rope_theta": 10000.0}), "factor"),
        (dict(rope_parameters={"rope_type": "default", "rope_theta": float("nan")}), "rope_theta"),
        # special tokens outside the vocabulary
        (dict(vocab_size=100, eos_token_id=100), "eos_token_id"),
        (dict(vocab_size=100, eos_token_id=[2, 150]), "eos_token_id"),
        (dict(bos_token_id=-1), "bos_token_id"),
        (dict(pad_token_id="0"), "pad_token_id"),
        # a depth budget that would hang instead of failing
        (dict(max_depth=10**9), "max_depth"),
        # layer counts that would hang while the model allocates its layers
        (dict(num_core_layers=10**6), "num_core_layers"),
        (dict(num_prelude_layers=10**6), "num_prelude_layers"),
        (dict(num_coda_layers=2000), "num_coda_layers"),
    ],
)
def test_invalid_value_raises_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        AniraConfig(**overrides)


@pytest.mark.parametrize(
    "field, value",
    [("max_depth", 0), ("max_depth", 5000), ("compute_penalty", None), ("compute_penalty", float("nan")),
     ("halting_threshold", "0.5"), ("tie_word_embeddings", "false"), ("hidden_act", "nope"), ("depth_mode", "late"),
     ("pad_token_id", 10**6), ("rope_parameters", {"rope_type": "spiral"})],
)
def test_setting_an_invalid_value_on_an_existing_config_raises_and_keeps_the_old_one(field, value):
    config = AniraConfig()
    before = getattr(config, field)
    with pytest.raises(ValueError, match=field if field != "rope_parameters" else "rope_type"):
        setattr(config, field, value)
    assert getattr(config, field) == before


def test_fields_that_move_together_can_be_set_one_by_one_and_update_checks_the_whole():
    config = AniraConfig(min_depth=1, max_depth=4)
    config.min_depth = 6  # min_depth > max_depth for a moment
    config.max_depth = 8
    assert (config.min_depth, config.max_depth) == (6, 8)
    with pytest.raises(ValueError, match="min_depth"):
        config.update({"max_depth": 5})
    with pytest.raises(ValueError, match="min_depth"):
        AniraConfig(max_depth=8).update_from_string("min_depth=9")


def test_a_model_refuses_a_config_whose_fields_no_longer_agree():
    from modeling_anira import AniraForCausalLM

    config = AniraConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=40)
    config.num_attention_heads = 3  # a valid integer on its own, but it does not divide hidden_size
    with pytest.raises(ValueError, match="num_attention_heads"):
        AniraForCausalLM(config)


def test_unknown_key_in_a_saved_config_is_warned_about(tmp_path):
    AniraConfig().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(path.read_text().replace('"max_depth": 8', '"max_dept": 12'))
    with pytest.warns(UserWarning, match="max_dept"):
        loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.max_depth == 8


def test_saved_and_shipped_configs_load_without_warnings(tmp_path):
    import warnings
    from pathlib import Path

    AniraConfig(depth_mode="early", rope_parameters={"rope_type": "yarn", "factor": 2.0}).save_pretrained(tmp_path)
    folders = [tmp_path] + sorted(p.parent for p in (Path(__file__).parents[1] / "hub_configs").glob("*/config.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a warning fails the test
        loaded = [AutoConfig.from_pretrained(folder) for folder in folders]
    assert len(loaded) == 13 and all(isinstance(config, AniraConfig) for config in loaded)  # 12 named folders + the saved one


def test_num_hidden_layers_counts_layer_applications_at_full_depth():
    config = AniraConfig(num_prelude_layers=2, num_core_layers=3, num_coda_layers=1, max_depth=4)
    assert config.num_hidden_layers == 2 + 3 * 4 + 1


def test_num_hidden_layers_is_derived_so_early_exit_drafting_is_a_clear_error():
    """Setting num_hidden_layers (what generate(assistant_early_exit=k) does to draft with k layers) names the
    fields that make it and the drafting that works; setting the value it already has is allowed."""
    import torch

    from conftest import tiny_model

    config = AniraConfig(num_prelude_layers=2, num_core_layers=3, num_coda_layers=1, max_depth=4)
    config.num_hidden_layers = 15
    with pytest.raises(ValueError, match="derived .* = 15.* cannot be set to 2"):
        config.num_hidden_layers = 2
    model = tiny_model(depth_mode="online")
    with pytest.raises(ValueError, match="assistant_model= or prompt_lookup_num_tokens="):
        model.generate(torch.randint(3, 40, (1, 5)), max_new_tokens=3, assistant_early_exit=2, pad_token_id=0)
    assert model.config.num_hidden_layers == 12


def test_config_round_trips_through_auto_config(tmp_path):
    config = AniraConfig(depth_mode="early", max_depth=6, min_depth=2, injection="concat", compute_penalty=0.05)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AniraConfig)
    for key in ("depth_mode", "max_depth", "min_depth", "injection", "compute_penalty", "head_dim"):
        assert getattr(loaded, key) == getattr(config, key)


def test_saved_config_with_bad_value_fails_to_load(tmp_path):
    AniraConfig().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(path.read_text().replace('"depth_mode": "online"', '"depth_mode": "late"'))
    with pytest.raises(ValueError, match="depth_mode"):
        AutoConfig.from_pretrained(tmp_path)


def test_layer_counts_are_bounded_on_an_existing_config_too():
    from modeling_anira.configuration_anira import MAX_LAYERS_LIMIT

    config = AniraConfig()
    with pytest.raises(ValueError, match=r"num_core_layers must be an integer in \[1, 1024\], got 1000000"):
        config.num_core_layers = 10**6
    assert config.num_core_layers == 2
    config.num_core_layers = MAX_LAYERS_LIMIT  # the bound itself is allowed
    assert MAX_LAYERS_LIMIT == 1024


@pytest.mark.parametrize("how", ["made", "set", "update"])
def test_rope_parameters_without_rope_theta_get_the_default_base_as_llama_does(how):
    from transformers import LlamaConfig

    from modeling_anira import AniraForCausalLM

    sizes = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=40)
    if how == "made":
        config = AniraConfig(rope_parameters={"rope_type": "default"}, **sizes)
    else:
        config = AniraConfig(rope_parameters={"rope_type": "default", "rope_theta": 500.0}, **sizes)
        if how == "set":
            config.rope_parameters = {"rope_type": "default"}
        else:
            config.update({"rope_parameters": {"rope_type": "default"}})
    llama = LlamaConfig(rope_parameters={"rope_type": "default"})
    assert config.rope_parameters == llama.rope_parameters == {"rope_type": "default", "rope_theta": 10000.0}
    model = AniraForCausalLM(config)  # a KeyError('rope_theta') before
    assert model.model.rotary_emb.inv_freq[1].item() == pytest.approx(10000.0 ** (-2 / config.head_dim))

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
    ],
)
def test_invalid_value_raises_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        AniraConfig(**overrides)


def test_num_hidden_layers_counts_layer_applications_at_full_depth():
    config = AniraConfig(num_prelude_layers=2, num_core_layers=3, num_coda_layers=1, max_depth=4)
    assert config.num_hidden_layers == 2 + 3 * 4 + 1


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

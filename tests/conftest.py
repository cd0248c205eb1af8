import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

import modeling_anira  # noqa: E402,F401  (registers the Auto classes)
from modeling_anira import AniraConfig, AniraForCausalLM  # noqa: E402

# One thread: the test tensors are tiny, and with several threads a loaded 2-core machine spends most of its
# time in thread synchronisation (measured: 23x slower per training step).
torch.set_num_threads(1)


def tiny_config(**overrides) -> AniraConfig:
    """A model small enough for a unit test; controllers start undecided so depths vary."""
    values = dict(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_prelude_layers=1,
        num_core_layers=2,
        num_coda_layers=1,
        max_depth=5,
        depth_mode="online",
        depth_init_bias=0.0,
        max_position_embeddings=64,
    )
    values.update(overrides)
    return AniraConfig(**values)


def tiny_model(dtype=torch.float64, seed: int = 0, recurrence: str = "dense", **overrides) -> AniraForCausalLM:
    """A float64 model in eval mode; `recurrence="dense"` runs the reference path even in eval. Tests of the
    inference paths pass `recurrence` explicitly (generation tests run both: test_generation.path)."""
    torch.manual_seed(seed)
    model = AniraForCausalLM(tiny_config(**overrides)).to(dtype).eval()
    model.model.recurrence = recurrence
    controller = model.model.depth_controller
    # Large random controller weights, so that tokens really get different depths in the tests.
    for name in ("router", "halting_head"):
        if hasattr(controller, name):
            torch.nn.init.normal_(getattr(controller, name).weight, std=2.0)
    return model


@pytest.fixture
def make_model():
    return tiny_model


def load_script(name: str):
    """An `examples/<name>.py` script as a module (its `main(argv)` is what tests call)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

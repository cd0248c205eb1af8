"""`--compile_layers` (anira_study.trainer.compile_layers): the layer pieces and RMSNorms compiled for training steps
give eager's loss and gradients (float64, within rounding), and evaluation runs the eager methods."""

from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from anira_study.arguments import ModelArguments
from anira_study.trainer import compile_layers, load_model_and_tokenizer
from modeling_anira.modeling_anira import AniraAttention, AniraDecoderLayer


def loss_and_grads(model, ids, labels):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    return out.loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def check_equal_to_eager(recurrence: str, **config):
    eager = tiny_model(recurrence=recurrence, **config).train()
    compiled = tiny_model(recurrence=recurrence, **config).train()
    compile_layers(compiled)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 40, (3, 11), generator=generator)
    labels = ids.clone()
    labels[:, :5] = -100
    torch._dynamo.reset()  # compiled code is cached per function: start afresh, so that the count below sees it
    frames = torch._dynamo.utils.counters["frames"]["total"]
    loss, grads = loss_and_grads(eager, ids, labels)
    compiled_loss, compiled_grads = loss_and_grads(compiled, ids, labels)
    assert torch._dynamo.utils.counters["frames"]["total"] > frames, "the training step ran no compiled frame"
    assert torch.allclose(compiled_loss, loss, rtol=1e-12, atol=0)
    assert compiled_grads.keys() == grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(compiled_grads[name], grad, rtol=1e-9, atol=1e-12), name
    frames = torch._dynamo.utils.counters["frames"]["total"]
    with torch.no_grad():
        assert torch.equal(compiled.eval()(input_ids=ids).logits, eager.eval()(input_ids=ids).logits)
    assert torch._dynamo.utils.counters["frames"]["total"] == frames, "evaluation should run the eager methods"


def test_compiled_layers_train_as_eager_online_fast_path():
    check_equal_to_eager("fast", depth_mode="online", iteration_loss_weight=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("recurrence", ["fast", "dense"])
@pytest.mark.parametrize("config", [dict(depth_mode="fixed"),
                                    dict(depth_mode="early", router_sampling="argmax", iteration_loss_weight=0.5),
                                    dict(depth_mode="online", halting_objective="act")])
def test_compiled_layers_train_as_eager(recurrence, config):
    check_equal_to_eager(recurrence, **config)


def test_the_flag_swaps_every_layer_piece_and_norm_and_nothing_without_it():
    args = dict(model_name_or_path=str(Path(__file__).resolve().parents[1] / "hub_configs" / "anira-o-depo"), from_scratch=True)
    plain, _ = load_model_and_tokenizer(ModelArguments(**args), "depo")
    model, _ = load_model_and_tokenizer(ModelArguments(**args, compile_layers=True), "depo")
    layers = [m for m in model.modules() if isinstance(m, AniraDecoderLayer)]
    assert len(layers) == 3
    for layer in layers:
        assert {"forward", "after_attention", "project_rows", "project_selected", "finish_rows"} <= set(vars(layer))
    for attention in (m for m in model.modules() if isinstance(m, AniraAttention)):
        assert {"project_query", "project_key_value"} <= set(vars(attention))
    norms = [m for m in model.modules() if type(m).__name__ == "AniraRMSNorm"]
    assert norms and all("forward" in vars(m) for m in norms)
    assert not any(name in vars(m) for m in plain.modules() for name in ("forward", "after_attention", "project_query"))


def test_the_training_fast_path_runs_its_layers_through_the_compiled_methods(monkeypatch):
    """The fast path's sparse iterations and the iteration loss's readouts call each core layer through
    `project_rows` or `project_selected`, then `finish_rows` (each one graph under --compile_layers): every query
    projection outside a dense layer forward is made inside one of them."""
    calls = dict.fromkeys(("project_rows", "project_selected", "finish_rows", "forward", "project_query"), 0)

    def counting(cls, name):
        eager = getattr(cls, name)

        def call(self, *args, **kwargs):
            calls[name] += 1
            return eager(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, call)

    for name in ("project_rows", "project_selected", "finish_rows", "forward"):
        counting(AniraDecoderLayer, name)
    counting(AniraAttention, "project_query")
    model = tiny_model(recurrence="fast", depth_mode="online", iteration_loss_weight=0.5).train()
    ids = torch.randint(3, 40, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # padding: no iteration computes every token, so the core runs the sparse iterations
    model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    assert calls["project_rows"] > 0 and calls["project_selected"] > 0
    assert calls["finish_rows"] == calls["project_rows"] + calls["project_selected"]
    assert calls["project_query"] == calls["project_rows"] + calls["project_selected"] + calls["forward"]

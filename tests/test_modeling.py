"""AniraForCausalLM: the recurrence, the three depth modes, the loss and the HF plumbing (dense reference path)."""

import warnings

import pytest
import torch

from conftest import tiny_config, tiny_model
from modeling_anira import AniraCache, AniraForCausalLM

MODES = ["fixed", "early", "online"]


def random_ids(batch: int, seq: int, vocab: int = 40, seed: int = 1) -> torch.LongTensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, seq), generator=generator)


def count_core_calls(model: AniraForCausalLM) -> list[int]:
    calls = []
    for layer in model.model.core:
        layer.register_forward_hook(lambda module, args, kwargs_or_out, *rest: calls.append(1), with_kwargs=False)
    return calls


# ------------------------------------------------------------------------------------------ depth modes


def test_fixed_mode_runs_every_token_exactly_max_depth_iterations():
    model = tiny_model(depth_mode="fixed", max_depth=4)
    calls = count_core_calls(model)
    out = model(random_ids(2, 9))
    assert (out.depths == 4).all()
    assert len(calls) == 4 * model.config.num_core_layers
    assert torch.equal(out.depth_probs.argmax(-1), torch.full_like(out.depths, 3))


def test_early_mode_eval_depth_is_router_argmax():
    model = tiny_model(depth_mode="early", max_depth=6, min_depth=2)
    ids = random_ids(3, 11)
    out = model(ids, output_hidden_states=True)
    prelude_states = out.hidden_states[1 + model.config.num_prelude_layers - 1]
    controller = model.model.depth_controller
    logits = controller.router(controller.norm(prelude_states))
    expected = logits.argmax(-1) + 2  # depths min_depth..max_depth
    assert torch.equal(out.depths, expected)
    assert out.depths.unique().numel() > 1, "the test must exercise several depths"
    assert (out.depth_probs[..., :1] == 0).all(), "no probability below min_depth"
    torch.testing.assert_close(out.depth_probs.sum(-1), torch.ones_like(out.expected_depth))


def test_early_mode_training_draws_hard_one_hot_with_gradient_to_router():
    model = tiny_model(depth_mode="early", max_depth=5).train()
    ids = random_ids(2, 9)
    out = model(ids, labels=ids)
    assert ((out.depths >= 1) & (out.depths <= 5)).all()
    out.lm_loss.backward()
    assert model.model.depth_controller.router.weight.grad.abs().sum() > 0, "LM loss must reach the router"


@pytest.mark.parametrize("min_depth", [1, 2])
def test_online_mode_halts_at_first_iteration_reaching_threshold(min_depth):
    model = tiny_model(depth_mode="online", max_depth=6, min_depth=min_depth, halting_threshold=0.5)
    out = model(random_ids(3, 12))
    lam = out.halting_probs  # lambda at each iteration a token ran
    depths = out.depths
    assert depths.unique().numel() > 2, "the test must exercise several depths"
    for b, s in torch.cartesian_prod(torch.arange(3), torch.arange(12)).tolist():
        d = int(depths[b, s])
        assert min_depth <= d <= 6
        ran = lam[b, s, :d]
        assert (lam[b, s, d:] == 0).all()
        for t in range(min_depth, d):  # iterations t (1-based) < d: not halted yet
            assert ran[t - 1] < 0.5
        if d < 6:
            assert ran[d - 1] >= 0.5
    # the halting distribution is a distribution over depths, zero below min_depth
    torch.testing.assert_close(out.depth_probs.sum(-1), torch.ones_like(out.expected_depth))
    assert (out.depth_probs[..., : min_depth - 1] == 0).all()


@pytest.mark.parametrize("objective", ["act", "pondernet"])
def test_optional_halting_objectives_train_and_report(objective):
    model = tiny_model(depth_mode="online", halting_objective=objective, max_depth=5).train()
    ids = random_ids(2, 8)
    out = model(ids, labels=ids)
    assert torch.isfinite(out.loss) and torch.isfinite(out.compute_loss)
    assert ((out.depths >= 1) & (out.depths <= 5)).all()
    torch.testing.assert_close(out.depth_probs.sum(-1), torch.ones_like(out.expected_depth))
    out.loss.backward()
    assert model.model.depth_controller.halting_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_depth_budget_can_be_raised_at_inference(mode):
    model = tiny_model(depth_mode=mode, max_depth=3, halting_threshold=0.99)
    out = model(random_ids(1, 6), max_depth=7)
    assert out.depths.max() > 3
    assert out.depth_probs.shape[-1] == 7


def test_early_mode_refuses_a_raised_depth_budget():
    model = tiny_model(depth_mode="early", max_depth=3)
    with pytest.raises(ValueError, match="early"):
        model(random_ids(1, 4), max_depth=5)


def test_loop_stops_when_no_token_is_active():
    model = tiny_model(depth_mode="online", max_depth=8)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, 30.0)  # everyone halts at once
    calls = count_core_calls(model)
    out = model(random_ids(2, 5))
    assert (out.depths == 1).all()
    assert len(calls) == model.config.num_core_layers


# ---------------------------------------------------------------------------------- frozen-token semantics


@pytest.mark.parametrize("mode", ["early", "online"])
def test_halted_token_state_is_unchanged_by_later_iterations(mode):
    model = tiny_model(depth_mode=mode, max_depth=6)
    out = model(random_ids(2, 10), output_hidden_states=True)
    first = 1 + model.config.num_prelude_layers  # hidden_states: embeddings, prelude..., iterations..., coda...
    ran = out.depths.max().item()
    iterations = torch.stack(out.hidden_states[first : first + ran], dim=2)  # [B, S, T, H]
    assert out.depths.min() < ran, "some token must halt before others"
    for b in range(2):
        for s in range(10):
            d = int(out.depths[b, s])
            frozen = iterations[b, s, d - 1]
            for t in range(d, ran):
                assert torch.equal(iterations[b, s, t], frozen)


@pytest.mark.parametrize("mode", ["early", "online"])
def test_halted_token_serves_keys_values_of_its_frozen_state(mode):
    model = tiny_model(depth_mode=mode, max_depth=6)
    ids = random_ids(1, 10)
    out = model(ids, use_cache=True, output_hidden_states=True)
    cache: AniraCache = out.cache
    first = 1 + model.config.num_prelude_layers
    ran = out.depths.max().item()
    positions = torch.arange(10).unsqueeze(0)
    cos_sin = model.model.rotary_emb(out.hidden_states[0], positions)
    checked = 0
    for s in range(10):
        d = int(out.depths[0, s])
        frozen = out.hidden_states[first + d - 1][:, s : s + 1]
        for index, layer in enumerate(model.model.core):
            key, value = layer.key_value(frozen, tuple(x[:, s : s + 1] for x in cos_sin))
            for t in range(d + 1, cache.iterations + 1):  # every later slot, also the one past the loop's end
                slot = cache.layers[cache.core_slot(t, index)]
                torch.testing.assert_close(slot.keys[:, :, s : s + 1], key, rtol=0, atol=1e-12)
                torch.testing.assert_close(slot.values[:, :, s : s + 1], value, rtol=0, atol=1e-12)
                checked += 1
    assert checked > 0 and cache.iterations == ran + 1


# -------------------------------------------------------------------------------- causality and padding


@pytest.mark.parametrize("mode", MODES)
def test_changing_a_token_changes_nothing_before_it(mode):
    model = tiny_model(depth_mode=mode)
    ids = random_ids(1, 12)
    changed = ids.clone()
    j = 7
    changed[0, j] = (ids[0, j] + 5) % 37 + 3
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a.logits[:, :j], b.logits[:, :j], rtol=0, atol=1e-12)
    assert torch.equal(a.depths[:, :j], b.depths[:, :j])
    assert not torch.equal(a.logits[:, j:], b.logits[:, j:])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_left_padded_batch_equals_each_sequence_alone(mode, attn_implementation):
    model = tiny_model(depth_mode=mode)
    model.config._attn_implementation = attn_implementation
    lengths = [9, 5, 7]
    seqs = [random_ids(1, n, seed=n)[0] for n in lengths]
    width = max(lengths)
    ids = torch.full((3, width), model.config.pad_token_id)
    mask = torch.zeros(3, width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = seq
        mask[row, width - len(seq) :] = 1
    batch = model(ids, attention_mask=mask)
    for row, seq in enumerate(seqs):
        alone = model(seq.unsqueeze(0))
        n = len(seq)
        torch.testing.assert_close(batch.logits[row, width - n :], alone.logits[0], rtol=0, atol=1e-10)
        assert torch.equal(batch.depths[row, width - n :], alone.depths[0])
        assert (batch.depths[row, : width - n] == -1).all()


def test_eager_and_sdpa_attention_agree():
    model = tiny_model(depth_mode="online")
    ids = random_ids(2, 9)
    model.config._attn_implementation = "eager"
    eager = model(ids)
    model.config._attn_implementation = "sdpa"
    sdpa = model(ids)
    torch.testing.assert_close(eager.logits, sdpa.logits, rtol=0, atol=1e-10)
    assert torch.equal(eager.depths, sdpa.depths)


# ------------------------------------------------------------------------------------------------- loss


def lm_batch(n: int, seq: int = 10, seed: int = 3):
    ids = random_ids(n, seq, seed=seed)
    labels = ids.clone()
    labels[:, : seq // 2] = -100  # supervised answer only, as in the tasks
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # one padded row, so real and supervised counts differ between micro-batches
    labels[0, :2] = -100
    return ids, mask, labels


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_gradient_accumulation_equals_one_large_batch_compute_term_included(mode):
    # Online training is deterministic (straight-through), so the two runs see the same depths.
    model = tiny_model(depth_mode=mode, compute_penalty=0.5).train()
    ids, mask, labels = lm_batch(4)

    model.zero_grad()
    big = model(ids, attention_mask=mask, labels=labels)
    big.loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert big.compute_loss > 0

    model.zero_grad()
    num_items = (labels[:, 1:] != -100).sum()  # what the Trainer passes: supervised tokens of all micro-batches
    for part in (slice(0, 1), slice(1, 3), slice(3, 4)):  # uneven micro-batches
        out = model(ids[part], attention_mask=mask[part], labels=labels[part], num_items_in_batch=num_items)
        out.loss.backward()
    for name, grad in reference.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-9, atol=1e-12, msg=name)
    if mode == "online":
        assert reference["model.depth_controller.halting_head.bias"].abs() > 0, "compute term must have a gradient"


def test_loss_is_lm_loss_plus_weighted_compute_loss():
    model = tiny_model(depth_mode="online", compute_penalty=0.3)
    ids, mask, labels = lm_batch(2)
    out = model(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.loss, out.lm_loss + 0.3 * out.compute_loss)
    real = mask.bool()
    expected = (out.expected_depth[real] / model.config.max_depth).sum() / (labels[:, 1:] != -100).sum()
    torch.testing.assert_close(out.compute_loss, expected)


# ------------------------------------------------------------------------------------------ parameters


def test_core_parameters_do_not_depend_on_max_depth():
    for mode in MODES:
        shallow = dict(AniraForCausalLM(tiny_config(depth_mode=mode, max_depth=2)).named_parameters())
        deep = dict(AniraForCausalLM(tiny_config(depth_mode=mode, max_depth=9)).named_parameters())
        assert shallow.keys() == deep.keys()
        differing = {n for n in shallow if shallow[n].shape != deep[n].shape}
        assert differing == ({"model.depth_controller.router.weight", "model.depth_controller.router.bias"}
                             if mode == "early" else set())


def test_controllers_start_at_max_depth():
    for mode in ("early", "online"):
        model = AniraForCausalLM(tiny_config(depth_mode=mode, depth_init_bias=3.0)).eval()
        assert (model(random_ids(2, 8)).depths == model.config.max_depth).all()


# ------------------------------------------------------------------------------------------ bad input


def test_out_of_vocabulary_token_id_is_an_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="token id 40"):
        model(torch.tensor([[3, 4, 40]]))


def test_attention_mask_of_wrong_length_is_an_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="attention_mask"):
        model(random_ids(1, 6), attention_mask=torch.ones(1, 5, dtype=torch.long))


# --------------------------------------------------------------------------------- numerics and training


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_and_backward_are_finite(dtype):
    model = tiny_model(dtype=dtype, depth_mode="online").train()
    ids, mask, labels = lm_batch(2)
    out = model(ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradient_checkpointing_gives_the_same_gradients():
    ids, mask, labels = lm_batch(2)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(depth_mode="online").train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, checkpointed)


@pytest.mark.parametrize("mode", MODES)
def test_a_few_hundred_steps_lower_the_loss(mode):
    """Learn `next = previous + 1 (mod 20)` on random starts: a task that needs attention to one token."""
    torch.manual_seed(0)
    model = AniraForCausalLM(tiny_config(depth_mode=mode, vocab_size=24, max_depth=3, compute_penalty=0.01)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(150):
        start = torch.randint(0, 20, (16, 1))
        ids = (start + torch.arange(10)) % 20 + 3
        out = model(ids, labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.lm_loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.1 * first, (first, last)


# ------------------------------------------------------------------------- gradients of every objective


@pytest.mark.parametrize("mode, objective", [("fixed", None), ("early", None), ("online", "straight_through"),
                                             ("online", "act"), ("online", "pondernet")])
def test_language_modelling_loss_alone_reaches_the_controller(mode, objective):
    """Every objective passes the LM-loss gradient to its controller (the compute loss alone would only teach
    it to stop sooner); fixed mode has no controller parameters at all."""
    options = dict(halting_objective=objective) if objective else {}
    model = tiny_model(depth_mode=mode, max_depth=5, **options).train()
    ids = random_ids(2, 9)
    out = model(ids, labels=ids)
    out.lm_loss.backward()
    controller = list(model.model.depth_controller.named_parameters())
    if mode == "fixed":
        assert controller == []
        return
    assert out.depths.unique().numel() > 1, "the test must exercise several depths"
    for name, parameter in controller:
        if name.endswith("weight") and parameter.dim() == 2:  # the router / halting head
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------- HF output conventions


def test_shift_labels_give_the_same_losses_as_labels():
    """Sequence/context parallelism passes labels already shifted (`shift_labels`): both losses use them, and
    count supervised tokens the same way."""
    model = tiny_model(depth_mode="online", compute_penalty=0.3)
    ids, mask, labels = lm_batch(2)
    reference = model(ids, attention_mask=mask, labels=labels)
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    out = model(ids, attention_mask=mask, shift_labels=shifted)
    assert out.loss is not None
    torch.testing.assert_close(out.lm_loss, reference.lm_loss)
    torch.testing.assert_close(out.compute_loss, reference.compute_loss)
    fewer = shifted.clone()
    fewer[:, -3:] = -100  # fewer supervised tokens: a larger compute loss per supervised token
    assert model(ids, attention_mask=mask, shift_labels=fewer).compute_loss > out.compute_loss


def test_labels_that_are_all_ignored_give_a_finite_compute_loss():
    model = tiny_model(depth_mode="online")
    ids = random_ids(2, 6)
    out = model(ids, labels=torch.full_like(ids, -100))
    assert torch.isfinite(out.compute_loss) and out.compute_loss > 0


def test_return_dict_false_returns_tuples_as_llama():
    model = tiny_model(depth_mode="online")
    ids = random_ids(2, 6)
    out = model(ids, labels=ids)
    as_tuple = model(ids, labels=ids, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], out.loss) and torch.equal(as_tuple[1], out.logits)
    base = model.model(ids, return_dict=False)
    assert isinstance(base, tuple) and torch.equal(base[0], model.model(ids).last_hidden_state)
    model.config.return_dict = False
    assert isinstance(model(ids), tuple) and isinstance(model.model(ids), tuple)


def test_generate_works_with_a_config_that_returns_tuples():
    model = tiny_model(depth_mode="online")
    model.config.return_dict = False
    ids = random_ids(1, 5)
    out = model.generate(ids, max_new_tokens=3, num_beams=2, return_dict_in_generate=True, eos_token_id=None,
                         pad_token_id=0)  # beam search: the depths come from one more forward
    assert out.depths.shape == out.sequences.shape


@pytest.mark.parametrize("recurrence", ["dense", "fast"])
@pytest.mark.parametrize("mode", MODES)
def test_batching_equivalence_of_every_output(mode, recurrence):
    """transformers' test_batching_equivalence: each row of a batch gives what it gives alone, for every output,
    hidden states and attention maps included, although the loop stops at the deepest token of what it runs."""
    model = tiny_model(depth_mode=mode, attn_implementation="eager", recurrence=recurrence, max_depth=6)
    if mode == "online":
        torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, 2.0)  # shallower, varied rows
    ids = random_ids(3, 8, seed=5)
    kwargs = dict(output_hidden_states=True, output_attentions=recurrence == "dense", use_cache=False)
    batch = model(ids, **kwargs)
    config = model.config
    assert len(batch.hidden_states) == 1 + config.num_prelude_layers + 6 + config.num_coda_layers
    if recurrence == "dense":
        assert len(batch.attentions) == config.num_prelude_layers + config.num_core_layers * 6 + config.num_coda_layers
    deepest = [int(row.max()) for row in batch.depths]
    if mode != "fixed":
        assert len(set(deepest)) > 1, "rows must stop at different iterations"
    for row in range(3):
        alone = model(ids[row : row + 1], **kwargs)
        for key in ("logits", "depths", "depth_probs", "expected_depth", "hidden_states", "attentions"):
            mine, theirs = getattr(batch, key), getattr(alone, key)
            if mine is None:
                assert theirs is None, key
                continue
            pairs = zip(mine, theirs, strict=True) if isinstance(mine, tuple) else [(mine, theirs)]
            for a, b in pairs:
                torch.testing.assert_close(a[row : row + 1], b, rtol=1e-10, atol=1e-12, msg=key)


def test_hidden_states_and_attentions_follow_the_budget_with_frozen_states_and_zero_rows():
    model = tiny_model(depth_mode="online", attn_implementation="eager", max_depth=4)
    out = model(random_ids(2, 7), output_hidden_states=True, output_attentions=True, max_depth=9)
    config, first = model.config, 1 + model.config.num_prelude_layers
    assert len(out.hidden_states) == first + 9 + config.num_coda_layers
    assert len(out.attentions) == config.num_prelude_layers + config.num_core_layers * 9 + config.num_coda_layers
    for t in range(1, 10):
        ran = out.depths >= t  # tokens that ran iteration t
        state = out.hidden_states[first + t - 1]
        frozen = torch.stack([out.hidden_states[first + int(d) - 1][b, s] for b, row in enumerate(out.depths)
                              for s, d in enumerate(row)]).view_as(state)
        assert torch.equal(state[~ran], frozen[~ran]), "a token that did not run iteration t holds its frozen state"
        for l in range(config.num_core_layers):
            maps = out.attentions[config.num_prelude_layers + (t - 1) * config.num_core_layers + l]
            assert (maps.transpose(1, 2)[~ran] == 0).all(), "zero rows for tokens that did not run"
            torch.testing.assert_close(maps.transpose(1, 2)[ran].sum(-1), torch.ones_like(maps.transpose(1, 2)[ran].sum(-1)))


def test_the_lm_declares_output_attentions_and_hidden_states_and_passes_them_through():
    """transformers' SDPA/eager equivalence test skips a class whose forward does not name output_attentions."""
    import inspect

    from modeling_anira import AniraForCausalLM

    parameters = inspect.signature(AniraForCausalLM.forward).parameters
    assert {"output_attentions", "output_hidden_states"} <= set(parameters)
    model = tiny_model(depth_mode="online", attn_implementation="eager")
    ids = random_ids(2, 7)
    base = model.model(ids, output_attentions=True, output_hidden_states=True)
    out = model(ids, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == len(base.attentions) and len(out.hidden_states) == len(base.hidden_states)
    for a, b in zip(out.attentions + out.hidden_states, base.attentions + base.hidden_states, strict=True):
        assert torch.equal(a, b)
    plain = model(ids, output_attentions=False, output_hidden_states=False)
    assert plain.attentions is None and plain.hidden_states is None
    model.config.output_attentions = True  # None falls back to the config, as in Llama
    assert len(model(ids).attentions) == len(base.attentions)
    assert model(ids, output_attentions=False).attentions is None


def test_output_attentions_on_an_sdpa_model_warns_and_runs_that_call_eagerly():
    model = tiny_model(depth_mode="online", attn_implementation="sdpa")
    ids = random_ids(2, 7)
    with pytest.warns(UserWarning, match="eager"):
        out = model(ids, output_attentions=True)
    assert model.config._attn_implementation == "sdpa", "only that call runs eagerly"
    model.config._attn_implementation = "eager"
    eager = model(ids, output_attentions=True)
    for a, b in zip(out.attentions, eager.attentions, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.logits, eager.logits, rtol=0, atol=1e-10)


def test_fixed_mode_exports_and_compiles_with_the_vocabulary_check_kept_in_eager_runs():
    model = tiny_model(dtype=torch.float32, depth_mode="fixed", max_depth=3, recurrence="fast")
    ids = random_ids(2, 7)
    reference = model(ids, use_cache=False).logits
    exported = torch.export.export(model, (ids,), kwargs=dict(use_cache=False))
    torch.testing.assert_close(exported.module()(ids, use_cache=False).logits, reference, rtol=1e-5, atol=1e-6)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(ids).logits, reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="token id 40"):
        model(torch.tensor([[3, 4, 40]]))


@pytest.mark.parametrize("mode", ["early", "online"])
def test_compiled_early_and_online_models_compile_once_and_give_the_eager_outputs(mode):
    """torch.compile(model) leaves the depth loop eager (its iterations and gathering follow the tokens' depths) and
    compiles the rest: ten calls with inputs of one shape whose tokens take different depths compile no new graph
    after the first two calls (where every depth-dependent value would recompile until the limit), and give the
    eager outputs."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(dtype=torch.float32, depth_mode=mode, recurrence="fast")
    compiled = torch.compile(model, backend="eager")
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[0, :2] = 0
    depths = set()
    with torch.no_grad():
        for call in range(10):
            ids = torch.randint(0, 40, (2, 7), generator=generator)
            out, reference = compiled(ids, attention_mask=mask), model(ids, attention_mask=mask)
            if call == 1:
                graphs = counters["stats"]["unique_graphs"]
            assert torch.equal(out.depths, reference.depths)
            torch.testing.assert_close(out.logits, reference.logits, rtol=0, atol=0)
            assert len(out.cache.layers) == len(reference.cache.layers)
            depths.add(tuple(out.depths.flatten().tolist()))
    assert len(depths) == 10, "the test needs calls whose tokens take other depths"
    assert counters["stats"]["unique_graphs"] == graphs


# ------------------------------------------------------------------------------------------------- RoPE


ROPE_TYPES = {
    "default": {},
    "linear": {"factor": 2.0},
    "dynamic": {"factor": 2.0},
    "yarn": {"factor": 4.0, "original_max_position_embeddings": 16},
    "longrope": {"short_factor": [1.0] * 4, "long_factor": [1.0, 2.0, 3.0, 4.0], "original_max_position_embeddings": 8},
    "llama3": {"factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
    "proportional": {"factor": 1.0},
}


@pytest.mark.parametrize("rope_type", sorted(ROPE_TYPES))
def test_rotary_embedding_matches_llama_for_every_rope_type(rope_type):
    """cos/sin equal Llama's for every rope type, past max_position_embeddings too, and over a sequence of calls
    (dynamic NTK rescales for a long input and returns to the original frequencies for a short one)."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from modeling_anira.modeling_anira import AniraRotaryEmbedding

    rope = {"rope_type": rope_type, "rope_theta": 10000.0, **ROPE_TYPES[rope_type]}
    sizes = dict(hidden_size=32, num_attention_heads=4, max_position_embeddings=16)
    ours = AniraRotaryEmbedding(tiny_config(rope_parameters=dict(rope), **sizes))
    llama = LlamaRotaryEmbedding(LlamaConfig(rope_parameters=dict(rope), num_key_value_heads=2, **sizes))
    x = torch.zeros(1, dtype=torch.float32)
    for length in (40, 10, 64, 16):
        positions = torch.arange(length).unsqueeze(0)
        for a, b in zip(ours(x, positions), llama(x, positions), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("rope_type", ["linear", "dynamic", "yarn"])
def test_scaled_rope_accepts_inputs_longer_than_max_position_embeddings(rope_type):
    def scaled_model():
        return tiny_model(max_position_embeddings=16, rope_parameters={"rope_type": rope_type, "rope_theta": 10000.0,
                                                                       **ROPE_TYPES[rope_type]})

    ids = random_ids(1, 30)
    out = scaled_model()(ids)
    assert out.logits.shape == (1, 30, 40)
    short = scaled_model()(ids[:, :16]).logits  # a fresh model: no long input seen yet
    if rope_type == "dynamic":  # NTK scaling follows the longest input seen, so the first 16 positions change
        assert not torch.allclose(out.logits[:, 1:16], short[:, 1:16])
    else:
        torch.testing.assert_close(out.logits[:, :16], short, rtol=0, atol=1e-10)


@pytest.mark.parametrize("rope", [{}, {"rope_type": "linear", "factor": 1.0}, {"rope_type": "proportional", "factor": 1.0}])
def test_rope_without_scaling_takes_positions_past_max_position_embeddings_as_llama_does(rope):
    """A longer input (or position ids past the limit) runs, with a warning that the rotary embedding extrapolates
    there (its frequencies equal Llama's at every position: the test above); earlier positions are unchanged."""
    model = tiny_model(max_position_embeddings=16, rope_parameters={"rope_theta": 10000.0, **rope})
    ids = random_ids(1, 20)
    with pytest.warns(UserWarning, match="Position 19 is past max_position_embeddings=16"):
        long = model(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = model(ids[:, :16])
    torch.testing.assert_close(long.logits[:, :16], short.logits, rtol=0, atol=1e-10)
    with pytest.warns(UserWarning, match="Position 64 is past"):
        model(ids[:, :4], position_ids=torch.tensor([[0, 1, 2, 64]]))


# ------------------------------------------------------------------------------------ more bad input


@pytest.mark.parametrize(
    "inputs, message",
    [
        (dict(input_ids=torch.tensor([3, 4, 5])), "batch dimension"),
        (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), "empty"),
        (dict(input_ids=torch.zeros(0, 4, dtype=torch.long)), "empty"),
        (dict(input_ids=random_ids(2, 4), attention_mask=torch.ones(3, 4, dtype=torch.long)), "attention_mask"),
        (dict(input_ids=random_ids(2, 4), attention_mask=torch.full((2, 4), 2)), "0 .padding. and 1"),
        (dict(input_ids=random_ids(2, 4), attention_mask=torch.tensor([[1.0, 0.5, 1.0, 1.0]] * 2)), "0 .padding. and 1"),
        (dict(input_ids=random_ids(2, 4), labels=random_ids(2, 5)), "labels"),
        (dict(input_ids=random_ids(2, 4), labels=random_ids(4, 2)), "labels"),
        (dict(input_ids=random_ids(2, 4), shift_labels=random_ids(2, 3)), "shift_labels"),
        (dict(input_ids=random_ids(2, 4), position_ids=torch.tensor([[-1, 0, 1, 2]] * 2)), "position_ids"),
        (dict(input_ids=random_ids(2, 4), position_ids=torch.arange(5)[None]), "position_ids"),
        (dict(inputs_embeds=torch.zeros(1, 4, 7, dtype=torch.float64)), "hidden_size"),
    ],
)
def test_malformed_inputs_are_clear_errors(inputs, message):
    model = tiny_model(depth_mode="online")
    with pytest.raises(ValueError, match=message):
        model(**inputs)


@pytest.mark.parametrize("recurrence", ["dense", "fast"])
@pytest.mark.parametrize("mode", MODES)
def test_an_all_padding_batch_has_a_defined_result(mode, recurrence):
    model = tiny_model(depth_mode=mode, recurrence=recurrence)
    ids = torch.zeros(2, 5, dtype=torch.long)
    out = model(ids, attention_mask=torch.zeros_like(ids), labels=torch.full_like(ids, -100), use_cache=True)
    assert (out.depths == -1).all()
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.compute_loss)
    assert out.depth_probs.shape == (2, 5, model.config.max_depth)


# ------------------------------------------------------------------------------------------------- FSDP

FSDP_WORKER = '''
import copy, json, sys
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
import modeling_anira  # noqa: F401
from modeling_anira import AniraConfig, AniraForCausalLM

wrap, report = json.loads(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo")
torch.manual_seed(0)
config = AniraConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_attention_heads=4, max_depth=4,
                     depth_mode="online", depth_init_bias=0.0, max_position_embeddings=64)
model = AniraForCausalLM(config).double().train()
reference = copy.deepcopy(model)
for module in list(model.modules()):  # what accelerate's FSDP2 does with transformer_layer_cls_to_wrap
    if type(module).__name__ in wrap:
        fully_shard(module)
fully_shard(model)
ids = torch.randint(3, 40, (2, 9), generator=torch.Generator().manual_seed(1))
model(ids, labels=ids).loss.backward()  # the same batch on both ranks: the averaged gradient is the reference's
reference(ids, labels=ids).loss.backward()
grads = max((p.grad.full_tensor() - r.grad).abs().max().item() for p, r in zip(model.parameters(), reference.parameters()))
local, full = sum(p.to_local().numel() for p in model.parameters()), sum(p.numel() for p in model.parameters())
model.eval(), reference.eval()
with torch.no_grad():  # inference on the sharded model (with its cache), as a probe during training runs it
    logits = (model(ids).logits - reference(ids).logits).abs().max().item()
json.dump({"local": local, "full": full, "grad_error": grads, "logit_error": logits}, open(report + str(dist.get_rank()), "w"))
dist.destroy_process_group()
'''


def readme_fsdp_arguments() -> list[str]:
    """The FSDP flags of the torchrun command in docs/training.md (a shell command over lines joined by backslashes)."""
    import shlex
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "torchrun" in line and "--fsdp" in line)
    command = lines[index]
    while command.rstrip().endswith("\\"):
        index += 1
        command = command.rstrip()[:-1] + " " + lines[index]
    tokens = shlex.split(command, comments=True)
    return tokens[tokens.index("--fsdp") :]


def test_the_documented_fsdp_command_uses_the_current_form():
    """transformers 5.24 reports the string form (`--fsdp "full_shard auto_wrap"`) as deprecated: docs/training.md's
    command must parse without that warning, into FSDP2 wrapping the decoder layers."""
    from transformers import HfArgumentParser, TrainingArguments
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    with CaptureLogger(logging.get_logger("transformers.training_args")) as captured:
        (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
            ["--output_dir", "unused", *readme_fsdp_arguments()])
    assert "deprecated" not in captured.out
    assert args.fsdp is True and args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "AniraDecoderLayer"


def test_fsdp_shards_the_model_over_two_cpu_processes(tmp_path):
    """2 gloo processes shard the model with FSDP2 as docs/training.md's fsdp_config asks (each rank holds about half of
    every parameter); training through the weight-tied core gives the unsharded gradient, and inference works."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from transformers import HfArgumentParser, TrainingArguments

    (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), *readme_fsdp_arguments()])
    wrap = args.fsdp_config["transformer_layer_cls_to_wrap"]
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "worker.py").write_text(FSDP_WORKER)
    with socket.socket() as probe:  # a free port, so parallel test runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
               str(tmp_path / "worker.py"), json.dumps(wrap), str(tmp_path / "rank")]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}").read_text()) for rank in (0, 1)]
    full = ranks[0]["full"]
    assert sum(r["local"] for r in ranks) == full and all(0.4 * full < r["local"] < 0.6 * full for r in ranks)
    assert all(r["grad_error"] < 1e-12 and r["logit_error"] < 1e-12 for r in ranks)

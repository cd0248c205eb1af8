"""Padding-free training (anira_study.data.PackedAnswerCollator): samples packed into shared rows, position ids
restarting per sample, give exactly the losses, gradients and depths of the same samples right-padded, for
every depth mode, on both recurrence paths and both attention kernels (float64)."""

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model
from anira_study.data import AnswerCollator, PackedAnswerCollator, make_collator
from modeling_anira import AniraForCausalLM, depth_control

VARIANTS = [
    dict(depth_mode="fixed"),
    dict(depth_mode="early"),  # Gumbel samples: made a function of the router's logits below
    dict(depth_mode="early", router_gradient="next"),
    dict(depth_mode="early", router_sampling="argmax"),
    dict(depth_mode="online"),
    dict(depth_mode="online", halting_objective="act"),
    dict(depth_mode="online", halting_objective="pondernet"),
    dict(depth_mode="online", min_depth=2, num_core_layers=1, injection="concat"),
    dict(depth_mode="online", iteration_loss_weight=0.5),
    dict(depth_mode="early", router_sampling="argmax", iteration_loss_weight=0.5),
]


def answer_rows(lengths, seed: int = 0) -> list[dict]:
    """Rows as the task datasets give them: a prompt, then an answer whose tokens are the only labels."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        ids = torch.randint(3, 40, (n,), generator=generator).tolist()
        answer = max(1, n // 3)
        rows.append({"input_ids": ids, "labels": [-100] * (n - answer) + ids[n - answer:]})
    return rows


def test_packing_places_every_sample_once_with_restarting_positions():
    rows = answer_rows([9, 3, 7, 2, 5, 9, 4])
    batch = PackedAnswerCollator(pad_token_id=0)(rows)
    ids, positions, mask, labels = batch["input_ids"], batch["position_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape[1] == 9 and ids.shape[0] == 5  # 39 tokens in rows of 9: first-fit decreasing needs 5
    found = []
    for r in range(ids.shape[0]):
        starts = [p for p in range(ids.shape[1]) if mask[r, p] and positions[r, p] == 0]
        ends = starts[1:] + [int(mask[r].sum())]
        assert int(mask[r].sum()) == sum(e - s for s, e in zip(starts, ends)), "real tokens come first in a row"
        for s, e in zip(starts, ends):
            assert positions[r, s:e].tolist() == list(range(e - s))
            assert labels[r, s] == -100
            found.append(ids[r, s:e].tolist())
        tail = mask[r] == 0
        assert (labels[r, tail] == -100).all() and (ids[r, tail] == 0).all()
        if tail.any():  # the padded tail keeps counting from the row's last sample
            first_pad = int(mask[r].sum())
            assert positions[r, first_pad] == positions[r, first_pad - 1] + 1
    assert sorted(found) == sorted(row["input_ids"] for row in rows)


def test_a_packed_sample_carries_its_own_labels_and_rows_of_any_sequence_type_pack_alike():
    rows = answer_rows([9, 3, 7, 2, 5, 9, 4], seed=1)
    batch = PackedAnswerCollator(pad_token_id=0, pack_length=12)(rows)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    for row in rows:  # each sample's labels after its first token are the row's, wherever it was packed
        n = len(row["input_ids"])
        at = [(r, p) for r in range(ids.shape[0]) for p in range(ids.shape[1] - n + 1)
              if ids[r, p:p + n].tolist() == row["input_ids"] and bool(mask[r, p:p + n].all())]
        assert any(labels[r, p + 1:p + n].tolist() == row["labels"][1:] for r, p in at)
    for convert in (torch.tensor, tuple):  # tensors (a torch-formatted dataset) and tuples give the same batch
        again = PackedAnswerCollator(0, pack_length=12)([{k: convert(v) for k, v in row.items()} for row in rows])
        assert all(torch.equal(again[k], batch[k]) and again[k].dtype == torch.long for k in batch)
    unlabelled = PackedAnswerCollator(0, pack_length=12)([{"input_ids": row["input_ids"]} for row in rows])
    # without labels every token after a sample's first is a target
    assert torch.equal(unlabelled["labels"] != -100, (batch["attention_mask"] == 1) & (batch["position_ids"] != 0))


def test_packing_refuses_a_pack_length_shorter_than_a_sample_and_an_empty_row():
    with pytest.raises(ValueError, match="pack_length 4 is shorter than a sample of 9 tokens"):
        PackedAnswerCollator(0, pack_length=4)(answer_rows([9, 3]))
    with pytest.raises(ValueError, match="no input_ids"):
        PackedAnswerCollator(0)([{"input_ids": [], "labels": []}])


def test_the_training_collator_packs_by_default():
    assert isinstance(make_collator(0, padding_free=True), PackedAnswerCollator)
    assert isinstance(make_collator(0, padding_free=False), AnswerCollator)
    from anira_study.arguments import DataArguments

    assert DataArguments().padding_free is True


def logit_gumbel(logits, tau=1.0, hard=False, **kwargs):
    """Gumbel-softmax with 'noise' that is a function of each token's logits: the same sample for the same token
    whatever its place in the batch, so that packed and padded layouts draw alike."""
    soft = ((logits + torch.sin(1e3 * logits)) / tau).softmax(-1)
    index = soft.argmax(-1)
    return F.one_hot(index, logits.shape[-1]).to(soft.dtype) - soft.detach() + soft


def float64_lm_loss(logits, labels=None, vocab_size=None, num_items_in_batch=None, shift_labels=None, **kwargs):
    """transformers' causal LM loss without its upcast to float32, whose rounding would hide a difference
    between the layouts (the two sum the same terms in another order)."""
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=-100)[..., 1:]
    loss = F.cross_entropy(logits.reshape(-1, vocab_size), shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
    count = (shift_labels != -100).sum() if num_items_in_batch is None else num_items_in_batch
    return loss / count


def train_forward(model, batch: dict, recurrence: str):
    model.train()
    model.model.recurrence = recurrence
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


def sample_depths(batch: dict, depths: torch.Tensor, packed: bool) -> list[list[int]]:
    """Each sample's per-token depths, samples sorted by their token ids (a layout-free order)."""
    samples = []
    for r in range(depths.shape[0]):
        mask = batch["attention_mask"][r].bool()
        if not packed:
            samples.append((batch["input_ids"][r, mask].tolist(), depths[r, mask].tolist()))
            continue
        starts = [p for p in range(mask.sum()) if batch["position_ids"][r, p] == 0] + [int(mask.sum())]
        for s, e in zip(starts, starts[1:]):
            samples.append((batch["input_ids"][r, s:e].tolist(), depths[r, s:e].tolist()))
    return [d for _, d in sorted(samples)]


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("recurrence", ["dense", "fast"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_a_packed_batch_gives_the_padded_losses_gradients_and_depths_in_float64(
        monkeypatch, variant, recurrence, attn_implementation):
    monkeypatch.setattr(depth_control.F, "gumbel_softmax", logit_gumbel)
    monkeypatch.setattr(AniraForCausalLM, "loss_function", property(lambda self: float64_lm_loss))
    model = tiny_model(attn_implementation=attn_implementation, compute_penalty=0.3, **variant)
    rows = answer_rows([11, 4, 7, 3, 12, 6, 5, 9])
    padded = AnswerCollator(0)(rows)
    packed = PackedAnswerCollator(0)(rows)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    padded_out, padded_grads = train_forward(model, padded, recurrence)
    packed_out, packed_grads = train_forward(model, packed, recurrence)
    assert sample_depths(packed, packed_out.depths, True) == sample_depths(padded, padded_out.depths, False)
    if variant["depth_mode"] != "fixed":
        assert padded_out.depths[padded["attention_mask"].bool()].unique().numel() > 1, "depths must vary"
    assert (packed_out.depths[packed["attention_mask"] == 0] == -1).all()
    for name in ("loss", "lm_loss", "compute_loss", "iteration_loss"):
        expected = getattr(padded_out, name)
        if expected is None:
            assert getattr(packed_out, name) is None
            continue
        torch.testing.assert_close(getattr(packed_out, name), expected, rtol=1e-12, atol=1e-13, msg=name)
    assert variant.get("iteration_loss_weight", 0) == 0 or packed_out.iteration_loss is not None
    assert packed_grads.keys() == padded_grads.keys()
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-10, atol=1e-12, msg=name)


def test_samples_of_a_packed_row_do_not_see_each_other():
    """Changing one sample changes nothing in the other samples of its row (the model reads the restarting
    position ids as sample boundaries, also with the padded tail's attention mask)."""
    model = tiny_model(depth_mode="online")
    rows = answer_rows([6, 5, 4, 3])
    batch = PackedAnswerCollator(0, pack_length=12)(rows)
    assert batch["input_ids"].shape[0] == 2 and (batch["attention_mask"] == 0).any()
    changed = {k: v.clone() for k, v in batch.items()}
    first_row_starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    changed["input_ids"][0, first_row_starts[0]:first_row_starts[1]] = 7  # rewrite the row's first sample
    with torch.no_grad():
        a, b = model(**batch).logits, model(**changed).logits
    later = slice(first_row_starts[1], int(batch["attention_mask"][0].sum()))
    torch.testing.assert_close(a[0, later], b[0, later], rtol=0, atol=0)
    assert not torch.equal(a[0, :first_row_starts[1]], b[0, :first_row_starts[1]])


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_padding_inside_a_row_starts_no_sample(mode):
    """A hole in the attention mask, with the position ids generate gives (0 at padding, counting real tokens), is
    padding, not a sample boundary: the tokens after it still see those before it. The row gives the logits and
    depths of the same tokens without position ids, and padding-free (transformers'
    test_eager_padding_matches_padding_free_with_position_ids, whose random masks have holes)."""
    model = tiny_model(depth_mode=mode, recurrence="fast")
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 40, (3, 8), generator=generator)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1, 1, 1], [1, 1, 0, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1, 1, 1]])
    ids = ids.masked_fill(mask == 0, 0)
    positions = (mask.cumsum(-1) - 1) * mask
    free_positions = torch.cat([torch.arange(n) for n in mask.sum(-1).tolist()]).unsqueeze(0)
    with torch.no_grad():
        given = model(ids, attention_mask=mask, position_ids=positions, use_cache=False)
        plain = model(ids, attention_mask=mask, use_cache=False)
        free = model(ids[mask.bool()].unsqueeze(0), position_ids=free_positions, use_cache=False)
    real = mask.bool()
    torch.testing.assert_close(given.logits[real], plain.logits[real], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(given.logits[real], free.logits[0], rtol=1e-12, atol=1e-12)
    assert torch.equal(given.depths[real], free.depths[0]) and torch.equal(given.depths, plain.depths)
    if mode != "fixed":
        assert given.depths[real].unique().numel() > 1, "depths must vary"


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_packed_training_mask_is_transformers_mask(implementation, dtype):
    """The packed training batch's 4D mask, built directly, equals what create_causal_mask builds with the packed
    samples' mask function, element for element (padded tails included)."""
    from transformers.masking_utils import create_causal_mask, packed_sequence_mask_function

    from modeling_anira.modeling_anira import packed_sample_ids, packed_training_mask

    model = tiny_model(depth_mode="fixed")
    model.config._attn_implementation = implementation
    for seed in range(3):
        batch = PackedAnswerCollator(pad_token_id=0)(answer_rows([9, 3, 7, 2, 5, 9, 4, 1, 6, 8, 2], seed=seed))
        mask, positions = batch["attention_mask"], batch["position_ids"]
        assert (mask == 0).any(), "the batch should have a padded tail"
        samples = packed_sample_ids(mask, positions, None, 0, mask.shape[0])
        assert samples is not None
        embeds = torch.zeros(*mask.shape, model.config.hidden_size, dtype=dtype)
        expected = create_causal_mask(config=model.config, inputs_embeds=embeds, attention_mask=mask, cache=None,
                                      position_ids=positions, and_mask_function=packed_sequence_mask_function(samples))
        built = packed_training_mask(mask, samples, implementation, dtype)
        assert built.dtype == expected.dtype and built.shape == expected.shape
        assert torch.equal(built, expected)

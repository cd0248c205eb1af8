"""Depth-wise batched decoding (depth_batching.py): each sequence gets what generate() gives it alone."""

import pytest
import torch
from transformers import LogitsProcessorList, MaxLengthCriteria, StoppingCriteriaList, TopKLogitsWarper

from conftest import tiny_model
from modeling_anira import AniraGenerateOutput, DepthStreamer
from modeling_anira import DepthBatcher
from test_generation import NO_EOS, left_padded, tiny_tokenizer

MODES = ["fixed", "early", "online"]
# No token twice: greedy continuations of a random model otherwise loop on one token, at one depth; these take
# several depths within each sequence, so later tokens read earlier tokens' frozen keys/values. Token 2 (the config's
# EOS, after which generate() reports depth -1 even with eos_token_id=None) is suppressed.
VARIED = dict(no_repeat_ngram_size=1, suppress_tokens=[2], **NO_EOS)


def alone(model, prompt: torch.Tensor, logits: bool = False, **options):
    """generate() on one unpadded prompt: its sequence and depths (and its logits, [new tokens, vocab])."""
    out = model.generate(prompt[None], attention_mask=torch.ones_like(prompt)[None], return_dict_in_generate=True,
                         output_logits=logits, **options)
    if logits:
        return out.sequences[0], out.depths[0], torch.cat(out.logits)
    return out.sequences[0], out.depths[0]


def unpadded(mask, row: int, generated: int) -> torch.Tensor:
    """The positions of row `row` of a left-padded batch's output that are not padding."""
    return torch.cat([mask[row].bool(), torch.ones(generated, dtype=torch.bool)])


@pytest.mark.parametrize("mode", MODES)
def test_depth_batched_greedy_gives_each_sequence_the_tokens_and_depths_of_generate_alone(mode):
    model = tiny_model(depth_mode=mode, recurrence="fast")
    ids, mask = left_padded(3, seq=7)
    options = dict(max_new_tokens=6, do_sample=False, **VARIED)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, depth_batching=True, **options)
    assert isinstance(out, AniraGenerateOutput) and out.sequences.shape == out.depths.shape == (3, 7 + 6)
    for row in range(3):
        keep = unpadded(mask, row, 6)
        sequence, depths = alone(model, ids[row][mask[row].bool()], **options)
        assert torch.equal(out.sequences[row][keep], sequence)
        assert torch.equal(out.depths[row][keep], depths)
        assert (out.depths[row][~keep] == -1).all(), "-1 at padding"
    if mode != "fixed":  # a sequence's later token deeper than an earlier one: it reads that one's frozen keys/values
        generated = out.depths[:, 7:-1]
        assert (generated[:, 1:] > generated[:, :-1]).any(), "the test must exercise several generated depths"


@pytest.mark.parametrize("mode, attention", [("early", "sdpa"), ("online", "sdpa"), ("online", "eager")])
def test_rows_advance_on_their_own(mode, attention):
    """Rows at different iterations of different sequences share core passes, one row per iteration a token ran;
    so the batch needs fewer passes than the lockstep loop, whose every step runs to its deepest token."""
    model = tiny_model(depth_mode=mode, recurrence="fast", attn_implementation=attention)
    ids, mask = left_padded(3, seq=7)
    batcher = DepthBatcher(model, max_batch_size=3, max_new_tokens=8, output_logits=True, **VARIED)
    for row in range(3):
        batcher.add(ids[row][mask[row].bool()])
    results = sorted(batcher.run(), key=lambda r: r.request_id)
    for row, result in enumerate(results):  # the logits too: generate() alone's, to rounding
        sequence, depths, logits = alone(model, ids[row][mask[row].bool()], logits=True, max_new_tokens=8, **VARIED)
        assert torch.equal(result.sequence, sequence) and torch.equal(result.depths, depths)
        torch.testing.assert_close(result.logits, logits, rtol=1e-6, atol=1e-6)
    decoded = torch.stack([r.depths[-8:-1] for r in results])  # the 7 processed generated tokens of each row
    assert (decoded[:, 1:] > decoded[:, :-1]).any(), "later tokens deeper than earlier ones (frozen keys/values read)"
    assert batcher.core_rows == int(decoded.sum()), "one core row per iteration a token ran"
    assert batcher.mixed_passes > 0
    assert batcher.ticks < int(decoded.max(0).values.sum()) + 1  # + 1: the prompts' first tokens enter together


def test_finished_sequences_leave_and_an_eos_ends_each_as_alone():
    model = tiny_model(depth_mode="online", recurrence="fast")
    ids, mask = left_padded(3, seq=7)
    distinct = dict(max_new_tokens=8, no_repeat_ngram_size=1)  # no token twice: the continuations do not loop
    free = model.generate(ids, attention_mask=mask, depth_batching=True, **distinct, **NO_EOS)
    eos = int(free[1, 7 + 2])  # row 1's third token plays EOS: row 1 stops there, the others where they meet it
    options = dict(eos_token_id=eos, pad_token_id=0, **distinct)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, depth_batching=True, **options)
    for row in range(3):
        sequence, depths = alone(model, ids[row][mask[row].bool()], **options)
        start, length = 7 - int(mask[row].sum()), sequence.numel()
        assert torch.equal(out.sequences[row, start : start + length], sequence)
        assert torch.equal(out.depths[row, start : start + length], depths)
        assert (out.sequences[row, start + length :] == 0).all(), "after its EOS a row is filled with the pad token"
        assert (out.depths[row, start + length :] == -1).all()
    assert out.sequences[1, 7 + 2] == eos and out.sequences.shape[1] > 7 + 3, "row 1 stopped, another went on"


def test_continuous_batching_takes_requests_while_running_and_reuses_freed_rows():
    model = tiny_model(depth_mode="early", recurrence="fast")
    ids, mask = left_padded(3, seq=7, seed=9)
    prompts = [ids[row][mask[row].bool()] for row in range(3)] + [torch.tensor([5, 17, 23, 8])]
    lengths = [3, 6, 2, 5]
    batcher = DepthBatcher(model, max_batch_size=2, **NO_EOS)
    results = {}
    first = [batcher.add(prompts[i], max_new_tokens=lengths[i]) for i in range(2)]
    for _ in range(3):  # run a few ticks, then two more requests arrive
        results.update({r.request_id: r for r in batcher.step()})
    later = [batcher.add(prompts[i], max_new_tokens=lengths[i]) for i in range(2, 4)]
    assert len(batcher.requests) <= 2
    results.update({r.request_id: r for r in batcher.run()})
    assert sorted(results) == first + later
    for index, request in enumerate(first + later):
        sequence, depths = alone(model, prompts[index], max_new_tokens=lengths[index], **NO_EOS)
        assert torch.equal(results[request].sequence, sequence)
        assert torch.equal(results[request].depths, depths)
        assert results[request].stop_reason == "length"


def test_min_coda_rows_changes_the_schedule_not_the_result():
    model = tiny_model(depth_mode="early", recurrence="fast")
    ids, mask = left_padded(3, seq=7)
    outputs, passes = [], []
    for rows in (1, 3):
        batcher = DepthBatcher(model, max_batch_size=3, max_new_tokens=6, min_coda_rows=rows, **NO_EOS)
        for row in range(3):
            batcher.add(ids[row][mask[row].bool()])
        outputs.append(sorted(((r.request_id, r.sequence.tolist(), r.depths.tolist()) for r in batcher.run())))
        passes.append(batcher.coda_passes)
    assert outputs[0] == outputs[1]
    assert passes[1] < passes[0]


@pytest.mark.parametrize("mode", ["fixed", "online"])
def test_a_raised_depth_budget_and_logits_processors_act_as_in_generate(mode):
    model = tiny_model(depth_mode=mode, max_depth=3, recurrence="fast")
    if mode == "online":
        torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, -2.0)  # some tokens go deep
    ids, mask = left_padded(2, seq=6)
    options = dict(max_new_tokens=5, max_depth=6, repetition_penalty=3.0, no_repeat_ngram_size=2,
                   stopping_criteria=StoppingCriteriaList([MaxLengthCriteria(max_length=9)]), **NO_EOS)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, depth_batching=True, **options)
    for row in range(2):
        sequence, depths = alone(model, ids[row][mask[row].bool()], **options)
        start = 6 - int(mask[row].sum())
        assert torch.equal(out.sequences[row, start : start + sequence.numel()], sequence)
        assert torch.equal(out.depths[row, start : start + depths.numel()], depths)
    assert out.depths.max() > 3, "tokens ran past the trained budget"


def test_sampling_draws_each_sequence_from_its_own_generator():
    """A sequence's sample depends on its generator only, not on the sequences that share its ticks."""
    model = tiny_model(depth_mode="online", recurrence="fast")
    ids, mask = left_padded(3, seq=7)
    prompts = [ids[row][mask[row].bool()] for row in range(3)]
    options = dict(do_sample=True, top_k=10, temperature=1.5, max_new_tokens=6, **NO_EOS)

    def sample(indices, max_batch_size):
        batcher = DepthBatcher(model, max_batch_size=max_batch_size, **options)
        order = {batcher.add(prompts[i], generator=torch.Generator().manual_seed(100 + i)): i for i in indices}
        return {order[r.request_id]: (r.generated.tolist(), r.depths.tolist()) for r in batcher.run()}

    together = sample([0, 1, 2], 3)
    for i in range(3):
        assert sample([i], 1)[i] == together[i]
    assert len({tuple(tokens) for tokens, _ in together.values()}) == 3
    other_seed = DepthBatcher(model, max_batch_size=1, **options)
    other_seed.add(prompts[0], generator=torch.Generator().manual_seed(7))
    assert [r.generated.tolist() for r in other_seed.run()] != [together[0][0]]


def test_generate_stream_yields_each_prompt_as_it_finishes():
    model = tiny_model(depth_mode="online", recurrence="fast")
    prompts = [[5, 9, 11], [7, 3, 30, 12, 4], [21]]
    results = list(model.generate_stream(prompts, max_batch_size=2, max_new_tokens=4, **NO_EOS))
    assert sorted(r.request_id for r in results) == [0, 1, 2]
    for result in results:
        sequence, depths = alone(model, torch.tensor(prompts[result.request_id]), max_new_tokens=4, **NO_EOS)
        assert torch.equal(result.sequence, sequence) and torch.equal(result.depths, depths)


def test_generate_with_depth_batching_samples_in_train_mode_and_restores_it():
    """Sampling through generate(): a seed per row from torch's global generator, so torch.manual_seed repeats it;
    a model in train mode decodes in eval mode, as generate() does."""
    model = tiny_model(depth_mode="early", recurrence="fast")
    ids, mask = left_padded(3, seq=7)
    options = dict(attention_mask=mask, do_sample=True, max_new_tokens=5, depth_batching=True, **NO_EOS)
    torch.manual_seed(3)
    first = model.generate(ids, **options)
    model.train()
    torch.manual_seed(3)
    second = model.generate(ids, **options)
    assert model.training and torch.equal(first, second)
    assert first.shape == (3, 7 + 5) and torch.equal(first[:, :7], ids)


def test_depth_batching_refuses_what_it_does_not_do_naming_it():
    model = tiny_model(depth_mode="online", recurrence="fast")
    ids, mask = left_padded(2)
    with pytest.raises(ValueError, match="num_beams"):
        model.generate(ids, attention_mask=mask, num_beams=2, max_new_tokens=3, depth_batching=True, **NO_EOS)
    with pytest.raises(ValueError, match="stream"):
        model.generate(ids[:1], attention_mask=mask[:1], streamer=DepthStreamer(tiny_tokenizer()), max_new_tokens=3,
                       depth_batching=True, **NO_EOS)
    with pytest.raises(ValueError, match="left-padded"):
        model.generate(ids, attention_mask=mask.flip(-1), max_new_tokens=3, depth_batching=True, **NO_EOS)
    with pytest.raises(ValueError, match="output_logits"):
        model.generate(ids, attention_mask=mask, output_logits=True, return_dict_in_generate=True, max_new_tokens=3,
                       depth_batching=True, **NO_EOS)
    with pytest.raises(ValueError, match="output_scores"):
        model.generate(ids, attention_mask=mask, output_scores=True, return_dict_in_generate=True, max_new_tokens=3,
                       depth_batching=True, **NO_EOS)
    with pytest.raises(ValueError, match="eval"):
        DepthBatcher(model.train())
    with pytest.raises(ValueError, match="prefill_size"):
        DepthBatcher(model.eval(), prefill_size=0)


@pytest.mark.parametrize("prefill_size, passes", [(None, 3), (6, 2)])
def test_queued_prompts_of_one_length_share_a_prefill_and_read_back_at_every_iteration(prefill_size, passes):
    """The prompts of the first queued one's length among the next max_batch_size are prefilled in one forward, and
    each row's cache, loaded from that batch, gives its sequence what generate() gives it alone; also where a
    generated token runs deeper than every prompt token did (it reads the prompt's frozen keys/values at iterations
    the prefill never ran), and where a prompt ends at its first token (it never takes a row)."""
    model = tiny_model(depth_mode="early", recurrence="fast")
    vocab = torch.arange(3, 40)
    shallow = int(vocab[model(input_ids=vocab[:, None]).depths[:, 0].argmin()])  # the shallowest one-token prompt
    prompts = [[shallow], [shallow], [5, 17, 23], [shallow], [9, 30, 12], [11]]  # 0 and 1: a batch that stops early
    lengths = [6, 5, 4, 1, 6, 3]
    batcher = DepthBatcher(model, max_batch_size=3, prefill_size=prefill_size, output_logits=True, **VARIED)
    for prompt, length in zip(prompts, lengths):
        batcher.add(torch.tensor(prompt), max_new_tokens=length)
    results = {r.request_id: r for r in batcher.run()}
    # windows of max_batch_size 3 (by default) by prompt length: [1, 1, 3] -> prompts 0, 1; [3, 1, 3] -> 2, 4;
    # [1, 1] -> 3, 5. One window of 6: [1, 1, 3, 1, 3, 1] -> prompts 0, 1, 3, 5; [3, 3] -> 2, 4
    assert batcher.prefill_passes == passes
    for index, (prompt, length) in enumerate(zip(prompts, lengths)):
        sequence, depths, logits = alone(model, torch.tensor(prompt), logits=True, max_new_tokens=length, **VARIED)
        assert torch.equal(results[index].sequence, sequence) and torch.equal(results[index].depths, depths)
        torch.testing.assert_close(results[index].logits, logits, rtol=1e-6, atol=1e-6)
    assert results[3].generated.numel() == 1 and results[3].stop_reason == "length"
    prompt_depth = int(results[0].depths[0])
    assert prompt_depth + 1 < model.config.max_depth and int(results[0].depths[1:-1].max()) > prompt_depth + 1, \
        "a generated token must run past the iterations its prompt's prefill stored"

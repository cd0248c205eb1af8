"""generate() with per-token depths: alignment with the forward, beams, sampling, budgets, streamer, pipeline."""

import io
import re

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, pipeline

from conftest import tiny_model
from modeling_anira import AniraCache, AniraGenerateBeamOutput, AniraGenerateOutput, DepthStreamer

MODES = ["fixed", "early", "online"]
NO_EOS = dict(eos_token_id=None, pad_token_id=0)  # random weights emit EOS whenever they like: switch it off


def left_padded(batch: int = 3, seq: int = 7, seed: int = 4):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 40, (batch, seq), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(1, batch):
        mask[row, : 2 * row] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.fixture(params=["fast", "dense"])
def path(request) -> str:
    """Generation runs on the fast path (the default in eval mode) and on the dense reference."""
    return request.param


def forward_depths(model, sequences, prompt_mask, **kwargs):
    """The oracle: the dense reference forward on a generated sequence (prompt padding kept, generated tokens
    real), whichever path the model generated with."""
    mask = torch.nn.functional.pad(prompt_mask, (0, sequences.shape[1] - prompt_mask.shape[1]), value=1)
    mask = mask.repeat_interleave(sequences.shape[0] // prompt_mask.shape[0], dim=0)
    recurrence, model.model.recurrence = model.model.recurrence, "dense"
    try:
        return model(sequences, attention_mask=mask, use_cache=False, **kwargs)
    finally:
        model.model.recurrence = recurrence


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_generate_depths_equal_forward_depths_and_logits_equal_recomputation(mode, batch, path):
    model = tiny_model(depth_mode=mode, recurrence=path)
    ids, mask = left_padded(batch)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, return_dict_in_generate=True,
                         output_logits=True, **NO_EOS)
    assert isinstance(out, AniraGenerateOutput)
    assert out.depths.shape == out.sequences.shape
    full = forward_depths(model, out.sequences, mask)
    assert torch.equal(out.depths[:, :-1], full.depths[:, :-1])
    assert (out.depths[:, -1] == -1).all(), "the final generated token was never processed"
    assert (out.depths[:, : ids.shape[1]][mask == 0] == -1).all(), "-1 at padding"
    for step, logits in enumerate(out.logits):  # step s predicts position prompt + s from position prompt + s - 1
        torch.testing.assert_close(logits, full.logits[:, ids.shape[1] - 1 + step].float(), rtol=1e-5, atol=1e-6)
    if mode != "fixed":
        assert out.depths[out.depths > 0].unique().numel() > 1, "the test must exercise several depths"


def test_depths_are_minus_one_from_each_sequences_eos_on(path):
    model = tiny_model(depth_mode="online", recurrence=path)
    ids, mask = left_padded(2)
    torch.manual_seed(0)
    free = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, return_dict_in_generate=True,
                          **NO_EOS)
    generated = free.sequences[0, ids.shape[1] :]
    step = next(i for i in range(2, len(generated)) if generated[i] not in generated[:i])
    eos = int(generated[step])  # a token first sampled at `step` plays EOS in a rerun with the same samples
    torch.manual_seed(0)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, return_dict_in_generate=True,
                         eos_token_id=eos, pad_token_id=0)
    end = ids.shape[1] + step
    assert (out.depths[0, end:] == -1).all()
    assert torch.equal(out.depths[0, :end], free.depths[0, :end])


def test_generate_returns_plain_sequences_without_return_dict(path):
    model = tiny_model(recurrence=path)
    ids, mask = left_padded(2)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=3, **NO_EOS)
    assert torch.is_tensor(out) and out.shape == (2, ids.shape[1] + 3)


@pytest.mark.parametrize("mode", ["early", "online"])
def test_beam_search_reports_the_depths_each_returned_beam_was_generated_with(mode, path):
    """Beam search's depths come from a forward over the returned sequences; they must be the depths the model
    actually ran while generating each returned beam: the prompt's in the first forward, and for each generated
    position those of the running beam it extended (`beam_indices`) in that step's forward."""
    model = tiny_model(depth_mode=mode, recurrence=path)
    ids, mask = left_padded(2)
    steps = []
    hook = model.register_forward_hook(lambda module, args, out: steps.append(out.depths.clone()))
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, num_return_sequences=2,
                         return_dict_in_generate=True, output_scores=True, **NO_EOS)
    hook.remove()
    assert isinstance(out, AniraGenerateBeamOutput)
    prompt, new = ids.shape[1], 5
    assert out.depths.shape == out.sequences.shape == (4, prompt + new)
    ran = torch.full_like(out.depths, -1)  # the final token is never processed
    for row, beams in enumerate(out.beam_indices.tolist()):
        ran[row, :prompt] = steps[0][beams[0]]
        for step in range(1, new):  # step s processed position prompt + s - 1 of the beam it then extended
            ran[row, prompt + step - 1] = steps[step][beams[step], -1]
    assert torch.equal(out.depths, ran)
    assert out.depths[:, prompt:-1].unique().numel() > 1, "the test must exercise several generated depths"
    # One returned sequence per prompt by default.
    greedy_beams = model.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, return_dict_in_generate=True,
                                  **NO_EOS)
    assert greedy_beams.depths.shape[0] == 2


@pytest.mark.parametrize("mode, seed", [("early", 5), ("online", 4)])
def test_beam_search_cache_keeps_depth_record_aligned_with_its_beams(mode, seed, path):
    """At every step the cache's depth record is the running beams' own history (the dense forward's depths on
    their sequences so far), although beams change parents: it fails if `reorder_cache` leaves the record behind."""
    model = tiny_model(depth_mode=mode, recurrence=path)
    ids, mask = left_padded(2, seed=seed)
    seen = []
    prepare = model.prepare_inputs_for_generation

    def recording(input_ids, *args, **kwargs):  # the running beams' sequences, and the record before their forward
        if kwargs.get("cache") is not None and kwargs["cache"].depths is not None:
            seen.append((input_ids.clone(), kwargs["cache"].depths.clone()))
        return prepare(input_ids, *args, **kwargs)

    model.prepare_inputs_for_generation = recording
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, num_return_sequences=3,
                         return_dict_in_generate=True, **NO_EOS)
    assert len(seen) == 4
    for running, record in seen:
        assert torch.equal(record, forward_depths(model, running[:, :-1], mask).depths)
    generated = seen[-1][1][:, ids.shape[1] :]
    assert len({tuple(row) for row in generated.tolist()}) > 1, "beam histories must differ in depth"
    switched = (out.beam_indices[:, 1:-1] != out.beam_indices[:, :-2]) & (out.beam_indices[:, 1:-1] >= 0)
    assert switched.any(), "some beam must change parents"


@pytest.mark.parametrize("mode", MODES)
def test_sampling_with_several_return_sequences_reports_each_ones_depths(mode, path):
    model = tiny_model(depth_mode=mode, recurrence=path)
    ids, mask = left_padded(2)
    torch.manual_seed(0)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=True, num_return_sequences=3,
                         return_dict_in_generate=True, **NO_EOS)
    assert out.sequences.shape[0] == 6
    full = forward_depths(model, out.sequences, mask)
    assert torch.equal(out.depths[:, :-1], full.depths[:, :-1])


def test_generation_without_cache_still_reports_depths(path):
    model = tiny_model(depth_mode="online", recurrence=path)
    ids, mask = left_padded(2)
    cached = model.generate(ids, attention_mask=mask, max_new_tokens=4, return_dict_in_generate=True, **NO_EOS)
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=4, return_dict_in_generate=True,
                           use_cache=False, **NO_EOS)
    assert torch.equal(cached.sequences, plain.sequences)
    assert torch.equal(cached.depths, plain.depths)


def test_online_model_generates_with_a_raised_depth_budget(path):
    model = tiny_model(depth_mode="online", max_depth=3, recurrence=path)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, -4.0)  # most tokens want to go deep
    ids, mask = left_padded(2)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=4, max_depth=7, return_dict_in_generate=True, **NO_EOS)
    assert isinstance(out.cache, AniraCache) and out.cache.max_depth == 7
    assert out.depths.max() > 3, "tokens ran past the trained budget"
    full = forward_depths(model, out.sequences, mask, max_depth=7)
    assert torch.equal(out.depths[:, :-1], full.depths[:, :-1])


def test_continuing_with_a_raised_budget_extends_the_cache(path):
    """The cache has no size: a generation continued from a filled cache with a larger budget adds the
    iteration slots it needs (cache_anira.py), and its new tokens may run past the first budget."""
    model = tiny_model(depth_mode="online", max_depth=3, recurrence=path)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, -4.0)  # most tokens want to go deep
    ids, mask = left_padded(1)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=2, return_dict_in_generate=True, **NO_EOS)
    assert out.cache.iterations == 4
    more = model.generate(out.sequences, cache=out.cache, max_new_tokens=3, max_depth=6, return_dict_in_generate=True,
                          **NO_EOS)
    assert more.cache is out.cache and out.cache.max_depth == 6
    assert more.depths[0, out.sequences.shape[1] : -1].max() > 3


def test_early_model_refuses_a_raised_budget_in_generate(path):
    model = tiny_model(depth_mode="early", max_depth=3, recurrence=path)
    with pytest.raises(ValueError, match="early"):
        model.generate(torch.randint(3, 40, (1, 4)), max_new_tokens=2, max_depth=5, **NO_EOS)


@pytest.mark.parametrize("mode", MODES)
def test_generation_continued_from_its_returned_cache_equals_one_call(mode):
    """transformers' test_generate_continue_from_past_key_values on a left-padded batch: 3 tokens, then 1 more from
    the returned cache, give one 4-token call's sequences, scores, depths and cache (every slot)."""
    model = tiny_model(depth_mode=mode, recurrence="fast")
    ids, mask = left_padded(3)
    options = dict(do_sample=False, return_dict_in_generate=True, output_scores=True, **NO_EOS)
    whole = model.generate(ids, attention_mask=mask, max_new_tokens=4, **options)
    first = model.generate(ids, attention_mask=mask, max_new_tokens=3, **options)
    longer = torch.nn.functional.pad(mask, (0, 3), value=1)
    rest = model.generate(first.sequences, attention_mask=longer, cache=first.cache, max_new_tokens=1, **options)
    assert torch.equal(rest.sequences, whole.sequences)
    assert torch.equal(rest.depths, whole.depths)
    assert len(set(whole.depths[whole.depths > 0].tolist())) > 1 or mode == "fixed", "depths vary"
    for got, expected in zip(first.scores + rest.scores, whole.scores):
        torch.testing.assert_close(got, expected)
    assert len(rest.cache) == len(whole.cache) and len(rest.cache.layers) == len(whole.cache.layers)
    for got, expected in zip(rest.cache.layers, whole.cache.layers):
        torch.testing.assert_close(got.keys, expected.keys)
        torch.testing.assert_close(got.values, expected.values)


def test_cache_implementation_dynamic_is_the_anira_cache_and_the_others_are_clear_errors():
    """`generate(cache_implementation="dynamic")` (transformers' default kind, which its own generation tests pass) is
    ANIRA's cache, not an error about passing both a cache and a cache implementation; the kinds of a fixed layer
    stack are refused naming what works, "paged" (continuous batching) too, instead of failing inside its loop."""
    model = tiny_model(depth_mode="online", recurrence="fast")
    ids, mask = left_padded(2)
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=3, return_dict_in_generate=True, **NO_EOS)
    dynamic = model.generate(ids, attention_mask=mask, max_new_tokens=3, return_dict_in_generate=True,
                             cache_implementation="dynamic", **NO_EOS)
    assert isinstance(dynamic.cache, AniraCache)
    assert torch.equal(dynamic.sequences, plain.sequences) and torch.equal(dynamic.depths, plain.depths)
    model.generation_config.cache_implementation = "dynamic"  # as a saved generation config may carry it
    configured = model.generate(ids, attention_mask=mask, max_new_tokens=3, return_dict_in_generate=True, **NO_EOS)
    assert torch.equal(configured.sequences, plain.sequences)
    batched = model.generate(ids, attention_mask=mask, max_new_tokens=3, depth_batching=True, **NO_EOS)
    assert torch.equal(batched, plain.sequences)
    model.generation_config.cache_implementation = None
    for kind in ("static", "offloaded", "quantized"):
        with pytest.raises(ValueError, match=f"cache_implementation='{kind}' is not available for ANIRA.*'dynamic'"):
            model.generate(ids, attention_mask=mask, max_new_tokens=2, cache_implementation=kind, **NO_EOS)
    with pytest.raises(ValueError, match="'paged'.*generate_stream"):
        model.generate(ids, attention_mask=mask, max_new_tokens=2, cache_implementation="paged", **NO_EOS)


@pytest.mark.parametrize("mode", MODES)
def test_continuous_batching_entry_points_are_clear_errors_naming_what_works(mode):
    """transformers' continuous batching (`generate_batch`, `init_continuous_batching`,
    `continuous_batching_context_manager`) runs the model on a paged cache of a fixed layer stack: unguarded, each
    request logged an error and came back with no token. Each is refused naming itself and ANIRA's ways (no manager is
    built or kept), and the first of those, `generate_stream`, gives those prompts generate()'s greedy tokens."""
    model = tiny_model(depth_mode=mode, recurrence="fast")
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    what_works = r"generate_stream\(prompts.*generate\(inputs, depth_batching=True\).*generate\(inputs\)"
    with pytest.raises(NotImplementedError, match=r"^generate_batch\(\) is transformers' continuous.*" + what_works):
        model.generate_batch(prompts, max_new_tokens=3, **NO_EOS)
    with pytest.raises(NotImplementedError, match=r"^generate_batch\(\)"):
        model.generate_batch([])
    with pytest.raises(NotImplementedError, match=r"^init_continuous_batching\(\) .*" + what_works):
        model.init_continuous_batching()
    with pytest.raises(NotImplementedError, match=r"^continuous_batching_context_manager\(\) .*" + what_works):
        with model.continuous_batching_context_manager():
            pass
    assert getattr(model, "_cached_continuous_batching_manager", None) is None
    streamed = {result.request_id: result.generated.tolist()
                for result in model.generate_stream(prompts, max_new_tokens=3, do_sample=False, **NO_EOS)}
    for index, prompt in enumerate(prompts):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=3, do_sample=False, **NO_EOS)
        assert streamed[index] == alone[0, len(prompt):].tolist()


# ---------------------------------------------------------------------------------- streamer and pipeline


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level: <pad>=0, <bos>=1, <eos>=2, then w3..w39 (the tiny model's 40 ids)."""
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{f"w{i}": i for i in range(3, 40)}, "<unk>": 40}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                        eos_token="<eos>", unk_token="<unk>", padding_side="left")
    return tokenizer


def test_depth_streamer_prints_each_token_with_the_depth_that_produced_it(path):
    model = tiny_model(depth_mode="online", recurrence=path)
    tokenizer = tiny_tokenizer()
    inputs = tokenizer("w5 w9 w11 w20", return_tensors="pt")
    sink = io.StringIO()
    streamer = DepthStreamer(tokenizer, file=sink)
    out = model.generate(**inputs, streamer=streamer, max_new_tokens=5, return_dict_in_generate=True, **NO_EOS)
    texts = [text for text, _ in streamer.tokens]
    assert len(texts) == out.sequences.shape[1] and "".join(texts) == tokenizer.decode(out.sequences[0])
    shown = [depth for _, depth in streamer.tokens]
    assert shown[0] is None and shown[1:] == out.depths[0, :-1].tolist(), "token i shows depths[i - 1]"
    assert sink.getvalue() == "".join(t if d is None else f"{t}[{d}]" for t, d in streamer.tokens) + "\n"
    assert re.sub(r"\[\d+\]", "", sink.getvalue()) == tokenizer.decode(out.sequences[0]) + "\n"


def test_text_generation_pipeline_works(path):
    model = tiny_model(dtype=torch.float32, depth_mode="online", recurrence=path)
    generator = pipeline("text-generation", model=model, tokenizer=tiny_tokenizer())
    result = generator("w5 w9 w11", max_new_tokens=4, do_sample=False, eos_token_id=None)
    assert result[0]["generated_text"].startswith("w5 w9 w11")
    ids = generator("w5 w9 w11", max_new_tokens=4, do_sample=False, eos_token_id=None, return_tensors=True)
    assert len(ids[0]["generated_token_ids"]) == 3 + 4


def test_generate_example_prints_a_heat_map_and_writes_html(tmp_path, capsys):
    import importlib.util

    model = tiny_model(dtype=torch.float32, depth_mode="online")
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer().save_pretrained(tmp_path / "model")
    spec = importlib.util.spec_from_file_location("generate_example", "examples/generate.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--model", str(tmp_path / "model"), "--prompt", "w5 w9 w11", "--max_new_tokens", "4",
                           "--html", str(tmp_path / "depths.html"), "--stream", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "\033[48;5;" in printed and "completion" in printed
    assert len(result["tokens"]) == 3 + 4 and result["depths"][-1] == -1
    page = (tmp_path / "depths.html").read_text()
    assert page.count('class="t"') >= 7 + model.config.max_depth


def test_generate_example_refuses_an_unknown_prompt_symbol_naming_it(tmp_path):
    """Even with a tokenizer that would map it to <unk>, the entry point raises and names the word."""
    import importlib.util

    tiny_model(dtype=torch.float32, depth_mode="online").save_pretrained(tmp_path / "model")
    tiny_tokenizer().save_pretrained(tmp_path / "model")
    spec = importlib.util.spec_from_file_location("generate_example", "examples/generate.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with pytest.raises(ValueError, match="'hello'"):
        example.main(["--model", str(tmp_path / "model"), "--prompt", "w5 hello w11", "--device", "cpu"])


def test_generate_example_shows_word_level_tokens_without_spaces(tmp_path, capsys):
    """The shipped tokenizers decode a token as " symbol" (concatenative decoding); the table shows the symbol."""
    import importlib.util

    from anira_tasks import load_tokenizer

    tokenizer = load_tokenizer("clrs")
    tiny_model(dtype=torch.float32, depth_mode="online", vocab_size=len(tokenizer)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    spec = importlib.util.spec_from_file_location("generate_example", "examples/generate.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--model", str(tmp_path / "model"), "--prompt", "<bos> key : 3 1 2", "--max_new_tokens", "3",
                           "--device", "cpu"])
    assert result["tokens"][:6] == ["<bos>", "key", ":", "3", "1", "2"]


def test_depth_streamer_spaces_word_level_tokens_once(path):
    from anira_tasks import load_tokenizer

    tokenizer = load_tokenizer("depo")  # decodes a token as " symbol", so that decoded pieces concatenate
    model = tiny_model(dtype=torch.float32, depth_mode="online", recurrence=path, vocab_size=len(tokenizer))
    sink = io.StringIO()
    ids = torch.tensor([tokenizer("<bos> v1>v2 v2>v1 <hop=1> v1 <ans>")["input_ids"]])
    streamer = DepthStreamer(tokenizer, file=sink)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), streamer=streamer, max_new_tokens=3, **NO_EOS)
    assert sink.getvalue().startswith("<bos> v1>v2[") and "  " not in sink.getvalue()
    # the stream is the decoded sequence, spaces included: a generated symbol prints as " v2", as decode gives it
    assert re.sub(r"\[\d+\]", "", sink.getvalue()) == tokenizer.decode(out[0]) + "\n"
    generated = out[0, ids.shape[1]:].tolist()
    assert [text for text, _ in streamer.tokens[ids.shape[1]:]] == [tokenizer.decode([i]) for i in generated]
    assert all(text.startswith(" ") for text, _ in streamer.tokens[ids.shape[1]:])
    quiet = DepthStreamer(tokenizer, skip_prompt=True, file=io.StringIO())
    again = model.generate(ids, attention_mask=torch.ones_like(ids), streamer=quiet, max_new_tokens=3, **NO_EOS)
    assert re.sub(r"\[\d+\]", "", quiet.file.getvalue()) == tokenizer.decode(again[0, ids.shape[1]:]) + "\n"


def test_a_batch_the_trained_tokenizer_pads_by_default_answers_as_each_prompt_alone():
    """Prompts of different lengths from the task generator, padded by the shipped tokenizer with its default
    settings (left: a right-padded prompt would be continued after its padding), on a trained model."""
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anira_tasks import generate_sample

    folder = Path(__file__).resolve().parents[1] / "hub_configs" / "anira-o-depo"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    args = json.loads((folder / "recipe.json").read_text())["train_args"]
    params = json.loads(args[args.index("--task_params") + 1])
    prompts = []
    for hops, queries in ((1, 1), (2, 3), (3, 6), (2, 2), (3, 1)):  # a prompt up to its j-th query's <ans>
        pieces = generate_sample("depo", hops, seed=7 + hops + queries, **params).prompt.split("<ans>")
        prompts.append("<ans>".join(pieces[:queries]) + "<ans>")
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the prompts must need padding"
    options = dict(max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    batched = model.generate(**batch, **options)[:, batch["input_ids"].shape[1]:]
    for row, prompt in enumerate(prompts):
        alone = tokenizer(prompt, return_tensors="pt")
        expected = model.generate(**alone, **options)[0, alone["input_ids"].shape[1]:]
        got = batched[row, : expected.shape[0]]
        assert tokenizer.decode(got) == tokenizer.decode(expected), prompt
        assert (batched[row, expected.shape[0]:] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("mode", MODES)
def test_generate_in_train_mode_runs_in_eval_mode_and_restores_the_modes(mode):
    """A training forward draws early-mode depths and applies dropout: greedy generation must not."""
    model = tiny_model(depth_mode=mode, attention_dropout=0.5)
    ids, mask = left_padded()
    options = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, return_dict_in_generate=True, **NO_EOS)
    expected = model.generate(ids, **options)  # eval mode
    model.train()
    model.model.embed_tokens.eval()  # a module the user keeps in eval mode stays so
    first, second = model.generate(ids, **options), model.generate(ids, **options)
    for out in (first, second):
        assert torch.equal(out.sequences, expected.sequences) and torch.equal(out.depths, expected.depths)
    assert model.training and model.model.training and not model.model.embed_tokens.training
    assert all(m.training for m in model.modules() if m is not model.model.embed_tokens)

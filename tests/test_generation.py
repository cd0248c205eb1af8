"""generate() with per-token depths: alignment with the forward, beams, sampling, budgets, streamer, pipeline."""

import io

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


def forward_depths(model, sequences, prompt_mask, **kwargs):
    """The forward's depths on a generated sequence (prompt padding kept, generated tokens real)."""
    mask = torch.nn.functional.pad(prompt_mask, (0, sequences.shape[1] - prompt_mask.shape[1]), value=1)
    mask = mask.repeat_interleave(sequences.shape[0] // prompt_mask.shape[0], dim=0)
    return model(sequences, attention_mask=mask, use_cache=False, **kwargs)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", MODES)
def test_generate_depths_equal_forward_depths_and_logits_equal_recomputation(mode, batch):
    model = tiny_model(depth_mode=mode)
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


def test_depths_are_minus_one_from_each_sequences_eos_on():
    model = tiny_model(depth_mode="online")
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


def test_generate_returns_plain_sequences_without_return_dict():
    model = tiny_model()
    ids, mask = left_padded(2)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=3, **NO_EOS)
    assert torch.is_tensor(out) and out.shape == (2, ids.shape[1] + 3)


@pytest.mark.parametrize("mode", ["early", "online"])
def test_beam_search_runs_and_reports_the_returned_beams_depths(mode):
    model = tiny_model(depth_mode=mode)
    ids, mask = left_padded(2)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, num_return_sequences=2,
                         return_dict_in_generate=True, output_scores=True, **NO_EOS)
    assert isinstance(out, AniraGenerateBeamOutput)
    assert out.depths.shape == out.sequences.shape == (4, ids.shape[1] + 5)
    full = forward_depths(model, out.sequences, mask)
    assert torch.equal(out.depths[:, :-1], full.depths[:, :-1])
    # One returned sequence per prompt by default.
    greedy_beams = model.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, return_dict_in_generate=True,
                                  **NO_EOS)
    assert greedy_beams.depths.shape[0] == 2


def test_beam_search_cache_keeps_depth_record_aligned_with_its_beams():
    model = tiny_model(depth_mode="online")
    ids, mask = left_padded(1)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, num_return_sequences=3,
                         return_dict_in_generate=True, **NO_EOS)
    record = out.cache.depths  # [beams, processed]: the running beams after the last reordering
    assert record.shape == (3, ids.shape[1] + 4)
    # Every running beam's record is the depth record of some beam's prefix under one forward.
    for row in record:
        assert any(torch.equal(row[: ids.shape[1]], d[: ids.shape[1]]) for d in out.depths)


@pytest.mark.parametrize("mode", MODES)
def test_sampling_with_several_return_sequences_reports_each_ones_depths(mode):
    model = tiny_model(depth_mode=mode)
    ids, mask = left_padded(2)
    torch.manual_seed(0)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=True, num_return_sequences=3,
                         return_dict_in_generate=True, **NO_EOS)
    assert out.sequences.shape[0] == 6
    full = forward_depths(model, out.sequences, mask)
    assert torch.equal(out.depths[:, :-1], full.depths[:, :-1])


def test_generation_without_cache_still_reports_depths():
    model = tiny_model(depth_mode="online")
    ids, mask = left_padded(2)
    cached = model.generate(ids, attention_mask=mask, max_new_tokens=4, return_dict_in_generate=True, **NO_EOS)
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=4, return_dict_in_generate=True,
                           use_cache=False, **NO_EOS)
    assert torch.equal(cached.sequences, plain.sequences)
    assert torch.equal(cached.depths, plain.depths)


def test_online_model_generates_with_a_raised_depth_budget():
    model = tiny_model(depth_mode="online", max_depth=3)
    torch.nn.init.constant_(model.model.depth_controller.halting_head.bias, -4.0)  # most tokens want to go deep
    ids, mask = left_padded(2)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=4, max_depth=7, return_dict_in_generate=True, **NO_EOS)
    assert isinstance(out.cache, AniraCache) and out.cache.max_depth == 7
    assert out.depths.max() > 3, "tokens ran past the trained budget"
    full = forward_depths(model, out.sequences, mask, max_depth=7)
    assert torch.equal(out.depths[:, :-1], full.depths[:, :-1])


def test_continuing_with_a_cache_too_small_for_a_raised_budget_is_an_error():
    model = tiny_model(depth_mode="online", max_depth=3)
    ids, mask = left_padded(1)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=2, return_dict_in_generate=True, **NO_EOS)
    with pytest.raises(ValueError, match="max_depth=3.*max_depth=6"):
        model.generate(out.sequences, cache=out.cache, max_new_tokens=2, max_depth=6, **NO_EOS)


def test_early_model_refuses_a_raised_budget_in_generate():
    model = tiny_model(depth_mode="early", max_depth=3)
    with pytest.raises(ValueError, match="early"):
        model.generate(torch.randint(3, 40, (1, 4)), max_new_tokens=2, max_depth=5, **NO_EOS)


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


def test_depth_streamer_prints_each_token_with_the_depth_that_produced_it():
    model = tiny_model(depth_mode="online")
    tokenizer = tiny_tokenizer()
    inputs = tokenizer("w5 w9 w11 w20", return_tensors="pt")
    sink = io.StringIO()
    streamer = DepthStreamer(tokenizer, file=sink)
    out = model.generate(**inputs, streamer=streamer, max_new_tokens=5, return_dict_in_generate=True, **NO_EOS)
    texts = [text for text, _ in streamer.tokens]
    assert texts == [tokenizer.decode([i]) for i in out.sequences[0].tolist()]
    shown = [depth for _, depth in streamer.tokens]
    assert shown[0] is None and shown[1:] == out.depths[0, :-1].tolist(), "token i shows depths[i - 1]"
    assert sink.getvalue().split() == [t if d is None else f"{t}[{d}]" for t, d in streamer.tokens]


def test_text_generation_pipeline_works():
    model = tiny_model(dtype=torch.float32, depth_mode="online")
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

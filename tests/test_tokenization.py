"""Shipped tokenizers: up to date, loadable with no custom code, lossless, strict on unknown symbols."""

import fnmatch
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from transformers import AutoTokenizer

from anira_tasks import TASKS, generate_sample
from anira_tasks import load_tokenizer
from tokenization import FAMILIES, TOKENIZATION_DIR, encode_text, encode_texts
from tokenization.build import build_all, family_vocabulary

ROOT = Path(__file__).resolve().parents[1]
# Largest complexity each task's tokenizer must cover (the documented maxima).
MAX_COMPLEXITY = {"mano": 32, "brevo": 60, "depo": 16, **{name: 64 for name in TASKS if TASKS[name].family == "clrs"}}


def test_shipped_folders_equal_a_fresh_build(tmp_path):
    build_all(tmp_path)
    for family in FAMILIES:
        fresh = sorted(p.name for p in (tmp_path / family).iterdir())
        shipped = sorted(p.name for p in (TOKENIZATION_DIR / family).iterdir())
        assert fresh == shipped, f"tokenization/{family}: run `python -m tokenization.build`"
        for name in fresh:
            assert (tmp_path / family / name).read_bytes() == (TOKENIZATION_DIR / family / name).read_bytes(), (
                f"tokenization/{family}/{name} is out of date: run `python -m tokenization.build`"
            )


def test_shipped_files_are_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tokenization"]
    for family in FAMILIES:
        for path in (TOKENIZATION_DIR / family).iterdir():
            assert any(fnmatch.fnmatch(f"{family}/{path.name}", pattern) for pattern in patterns), path


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_tokenizer_loads_with_special_tokens_set(family):
    tokenizer = AutoTokenizer.from_pretrained(str(ROOT / "tokenization" / family))
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.get_vocab() == {s: i for i, s in enumerate(family_vocabulary(family))}
    assert load_tokenizer(family).get_vocab() == tokenizer.get_vocab()


def test_every_shipped_tokenizer_pads_prompts_on_the_left():
    """A batch of prompts for generate() must end where each answer starts; the training collators pad themselves."""
    folders = [ROOT / "tokenization" / family for family in FAMILIES]
    folders += [folder for folder in sorted((ROOT / "hub_configs").iterdir()) if (folder / "tokenizer_config.json").exists()]
    assert len(folders) == len(FAMILIES) + 12
    for folder in folders:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        assert tokenizer.padding_side == "left", folder.name
        batch = tokenizer(["<bos>", "<bos> <eos> <eos>"], padding=True)  # default settings
        assert batch["attention_mask"][0] == [0, 0, 1] and batch["input_ids"][0][-1] == tokenizer.bos_token_id, folder.name
    for family in FAMILIES:
        assert load_tokenizer(family).padding_side == "left"


@settings(max_examples=60, deadline=None)
@given(task=st.sampled_from(sorted(TASKS)), seed=st.integers(0, 2**62), fraction=st.floats(0, 1))
def test_encode_then_decode_gives_back_the_text(task, seed, fraction):
    minimum = {"mano": 1, "brevo": 3, "depo": 1}.get(task, 2)
    complexity = minimum + round(fraction * (MAX_COMPLEXITY[task] - minimum))
    sample = generate_sample(task, complexity, seed)
    tokenizer = load_tokenizer(task)
    ids = tokenizer(sample.text)["input_ids"]
    assert ids == encode_text(tokenizer, sample.text)
    assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
    assert len(ids) == len(sample.text.split())
    assert tokenizer.decode(ids) == sample.text
    # Concatenative: any piece without <bos> decodes with a leading space, so pieces join back into the text.
    cut = 1 + round(fraction * (len(ids) - 1))
    assert tokenizer.decode(ids[:cut]) + tokenizer.decode(ids[cut:]) == sample.text
    assert tokenizer.decode(ids[cut:]) == "".join(f" {symbol}" for symbol in sample.text.split()[cut:])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_vocabulary_covers_the_largest_sizes(task):
    tokenizer = load_tokenizer(task)
    texts = [generate_sample(task, MAX_COMPLEXITY[task], seed).text for seed in range(20)]
    assert all(len(ids) == len(text.split()) for ids, text in zip(encode_texts(tokenizer, texts), texts))


def test_unknown_symbol_is_an_error_not_unk():
    tokenizer = load_tokenizer("brevo")
    with pytest.raises(ValueError, match="v60"):
        encode_text(tokenizer, "<bos> v1 v60 <query> v1 <ans> v1 <eos>")
    with pytest.raises(ValueError, match="vocabulary"):
        encode_texts(tokenizer, ["<bos> v1", "<bos> 7"])


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_tokenizer_refuses_unknown_words(family):
    """No silent <unk>: the plain AutoTokenizer raises (tokenizers' fixed message), encode_text names the word."""
    tokenizer = AutoTokenizer.from_pretrained(str(ROOT / "tokenization" / family))
    for text in ("<bos> hello world", "hello", "<bos> <eos> hello"):
        with pytest.raises(Exception, match=r"Missing \[UNK\] token"):
            tokenizer(text)
    with pytest.raises(Exception, match=r"Missing \[UNK\] token"):
        tokenizer(["<bos>", "<bos> hello"])
    with pytest.raises(Exception, match=r"Missing \[UNK\] token"):
        tokenizer.encode("<bos> hello")
    with pytest.raises(ValueError, match="'hello'"):
        encode_text(tokenizer, "<bos> hello world")
    assert tokenizer("<bos> <eos>")["input_ids"] == [1, 2]  # known words (special tokens included) still encode


def test_text_generation_pipeline_keeps_words_apart():
    """The pipeline returns prompt + decode(completion ids): the completion must start with a space."""
    import torch
    from transformers import pipeline

    from conftest import tiny_model

    tokenizer = AutoTokenizer.from_pretrained(str(ROOT / "tokenization" / "clrs"))
    model = tiny_model(dtype=torch.float32, vocab_size=len(tokenizer))
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    prompt = "<bos> key : 3 1 2"
    options = dict(max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    text = generator(prompt, **options)[0]["generated_text"]
    ids = generator(prompt, return_tensors=True, **options)[0]["generated_token_ids"]
    new = [t for t in tokenizer.convert_ids_to_tokens(ids[6:]) if t not in tokenizer.all_special_tokens]
    assert text == prompt + "".join(f" {t}" for t in new)  # pipeline drops special tokens of the completion
    assert text.split() == prompt.split() + new
    assert generator(prompt, return_full_text=False, **options)[0]["generated_text"] == "".join(f" {t}" for t in new)
    assert tokenizer.decode(ids) == " ".join(tokenizer.convert_ids_to_tokens(ids))


def test_unknown_task_or_family_raises():
    import tokenization

    with pytest.raises(ValueError, match="task must be one of"):
        load_tokenizer("sudoku")
    with pytest.raises(ValueError, match="family must be one of"):
        tokenization.load_tokenizer("bfs")  # the library side knows families only; anira_tasks maps tasks


def test_missing_or_corrupt_tokenizer_files_are_errors_naming_the_file(tmp_path):
    import shutil

    from tokenization import check_tokenizer_files

    folder = tmp_path / "depo"
    shutil.copytree(TOKENIZATION_DIR / "depo", folder)
    assert check_tokenizer_files(folder) == folder
    cases = [("tokenizer.json", None, r"depo/tokenizer\.json is missing: .* holds no tokenizer"),
             ("tokenizer.json", "{not json", r"depo/tokenizer\.json is corrupt \(Expecting"),
             ("tokenizer.json", '{"model": {"type": "nothing"}}', r"depo/tokenizer\.json is corrupt: not a tokenizers file"),
             ("tokenizer_config.json", '{"pad_token": ', r"depo/tokenizer_config\.json is corrupt"),
             ("special_tokens_map.json", "]", r"depo/special_tokens_map\.json is corrupt")]
    for name, text, message in cases:
        original = (folder / name).read_bytes() if (folder / name).exists() else None
        if text is None:
            (folder / name).unlink()
        else:
            (folder / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            check_tokenizer_files(folder)
        if original is None:
            (folder / name).unlink()
        else:
            (folder / name).write_bytes(original)
    assert check_tokenizer_files(folder) == folder

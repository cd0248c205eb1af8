"""build_dataset_dict: split names and columns, label masks, no train/eval overlap, determinism."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

import anira_tasks.dataset as dataset_module
from anira_tasks import TASKS, TaskSpec, build_dataset_dict, load_tokenizer, score_answer, valid_next_tokens
from anira_tasks.dataset import distinct_prompts, prompt_bucket

ROOT = Path(__file__).resolve().parents[1]
BASE_COLUMNS = {"task", "complexity", "seed", "prompt", "answer", "text", "input_ids", "labels", "answer_start", "answer_length"}
SMALL = dict(num_train=300, num_validation=40, num_test_per_size=15)
SPECS = {
    "mano": TaskSpec("mano", [1, 2, 4], [3], [5, 6], task_params={"modulus": 7}, **SMALL),
    "brevo": TaskSpec("brevo", range(3, 9), (), [10], **SMALL),
    "depo": TaskSpec("depo", [1, 2, 4], [3], [6], task_params={"num_nodes": 6}, **SMALL),
    **{name: TaskSpec(name, [4, 5, 7], [6], [9], **SMALL) for name in TASKS if TASKS[name].family == "clrs"},
}


@pytest.fixture(scope="module", params=sorted(SPECS))
def built(request):
    spec = SPECS[request.param]
    return spec, build_dataset_dict(spec)


def test_splits_are_named_by_what_they_test(built):
    spec, dataset_dict = built
    expected = ["train", "validation", "test_seen"] + ["test_interpolation"] * bool(spec.interpolation_sizes) + ["test_extrapolation"]
    assert list(dataset_dict) == expected
    assert set(dataset_dict["train"]["complexity"]) <= set(spec.train_sizes)
    assert set(dataset_dict["validation"]["complexity"]) <= set(spec.train_sizes)
    assert set(dataset_dict["test_seen"]["complexity"]) == set(spec.train_sizes)
    assert set(dataset_dict["test_extrapolation"]["complexity"]) == set(spec.extrapolation_sizes)
    if spec.interpolation_sizes:
        assert set(dataset_dict["test_interpolation"]["complexity"]) == set(spec.interpolation_sizes)
    assert len(dataset_dict["train"]) == spec.num_train
    for name, split in dataset_dict.items():
        assert f"This split ({name})" in split.info.description and "extrapolation" in split.info.description


def test_columns_are_consistent_and_splits_concatenate(built):
    spec, dataset_dict = built
    annotation_names = set(TASKS[spec.task].generate(list(spec.train_sizes)[0], 0, **spec.task_params).annotations)
    for split in dataset_dict.values():
        assert set(split.column_names) == BASE_COLUMNS | annotation_names
        assert split.features == dataset_dict["train"].features
    assert len(datasets.concatenate_datasets(list(dataset_dict.values()))) == sum(map(len, dataset_dict.values()))


def test_labels_only_on_answers_and_annotations_aligned(built):
    spec, dataset_dict = built
    tokenizer = load_tokenizer(spec.task)
    has_eos = spec.task != "mano"
    annotation_names = set(dataset_dict["train"].column_names) - BASE_COLUMNS
    for split in dataset_dict.values():
        for row in split.select(range(min(len(split), 30))):
            ids, labels, start, length = row["input_ids"], row["labels"], row["answer_start"], row["answer_length"]
            assert ids[0] == tokenizer.bos_token_id and len(labels) == len(ids) == start + length + has_eos
            assert labels[:start] == [-100] * start and labels[start:] == ids[start:]
            assert tokenizer.decode(ids) == row["text"] == f"{row['prompt']} {row['answer']}" + " <eos>" * has_eos
            assert tokenizer.decode(ids[start : start + length]) == " " + row["answer"]  # a piece without <bos>
            assert (ids[-1] == tokenizer.eos_token_id) == has_eos
            assert all(len(row[name]) == length for name in annotation_names)
            assert score_answer(row, row["answer"].split())
            assert all(row["answer"].split()[k] in valid_next_tokens(row, k) for k in range(length))


def test_train_and_evaluation_never_overlap(built):
    _, dataset_dict = built
    train_prompts, train_seeds = set(dataset_dict["train"]["prompt"]), set(dataset_dict["train"]["seed"])
    for name, split in dataset_dict.items():
        if name != "train":
            assert not train_prompts & set(split["prompt"]), name  # no shared question, a fortiori no shared text
            assert not train_seeds & set(split["seed"]), name


def test_depo_solved_queries_are_labelled_only_when_asked():
    params = {"num_nodes": 6, "num_queries": 3}
    for supervise in (False, True):
        spec = TaskSpec("depo", [1, 2], num_train=20, num_validation=5, num_test_per_size=2, task_params=params | {"supervise_all_queries": supervise})
        for row in build_dataset_dict(spec)["train"]:
            symbols = row["text"].split()
            labelled = [i for i, label in enumerate(row["labels"]) if label != -100]
            targets = [i + 1 for i, s in enumerate(symbols) if s == "<ans>"]
            assert labelled == (targets if supervise else targets[-1:]) + [len(symbols) - 1]  # + <eos>
            assert all(row["labels"][i] == row["input_ids"][i] for i in labelled)


def test_tiny_sample_space_gives_fewer_distinct_test_prompts_not_repeats():
    # MANO mod 5 with l = 1 has 75 distinct prompts, of which the test bucket holds ~4: the split says so
    # (a warning, and fewer rows) instead of repeating them until 50 rows look like 50 prompts.
    spec = TaskSpec("mano", [1, 2], (), [3], num_train=2000, num_validation=50, num_test_per_size=50, task_params={"modulus": 5})
    with pytest.warns(UserWarning, match="fewer distinct prompts"):
        dataset_dict = build_dataset_dict(spec)
    seen = dataset_dict["test_seen"]
    ones = [p for p, c in zip(seen["prompt"], seen["complexity"]) if c == 1]
    assert 0 < len(ones) < 50 and len(set(ones)) == len(ones)
    assert not set(dataset_dict["train"]["prompt"]) & set(seen["prompt"])
    assert distinct_prompts(dataset_dict)["test_seen"][1] == len(ones)
    assert seen["complexity"].count(2) == 50  # l = 2 has room for 50


def test_evaluation_splits_hold_distinct_prompts_disjoint_from_train_and_from_each_other(built):
    _, dataset_dict = built
    evaluation = {name: split["prompt"] for name, split in dataset_dict.items() if name != "train"}
    for name, prompts in evaluation.items():
        assert len(set(prompts)) == len(prompts), f"{name} repeats a prompt"
    names = list(evaluation)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not set(evaluation[a]) & set(evaluation[b]), (a, b)
    counts = distinct_prompts(dataset_dict)
    assert sum(counts["test_seen"].values()) == len(dataset_dict["test_seen"])


def test_validation_covers_every_training_size():
    spec = TaskSpec("depo", [1, 2, 3], num_train=50, num_validation=7, num_test_per_size=3, task_params={"num_nodes": 6})
    validation = build_dataset_dict(spec)["validation"]
    assert sorted(validation["complexity"]) == [1] * 7 + [2] * 7 + [3] * 7


def test_prompt_buckets_partition_the_prompt_space():
    buckets = [prompt_bucket(f"<bos> prompt {i}", 0.2) for i in range(20_000)]
    shares = {name: buckets.count(name) / len(buckets) for name in ("train", "validation", "test")}
    assert shares["validation"] == pytest.approx(0.1, abs=0.01) and shares["test"] == pytest.approx(0.1, abs=0.01)
    assert prompt_bucket("<bos> x", 0.2) == prompt_bucket("<bos> x", 0.2)


def test_rows_reproduce_from_task_complexity_and_seed(built):
    spec, dataset_dict = built
    row = dataset_dict["test_seen"][0]
    sample = TASKS[spec.task].generate(row["complexity"], row["seed"], **spec.task_params)
    assert sample.text == row["text"]


def test_brevo_training_sizes_follow_the_inverse_weighting():
    spec = TaskSpec("brevo", range(3, 31), num_train=2000, num_validation=10, num_test_per_size=1)
    counts = {n: 0 for n in range(3, 31)}
    for n in build_dataset_dict(spec)["train"]["complexity"]:
        counts[n] += 1
    assert counts[3] > 2 * counts[30]  # P(3) / P(30) = (30 + sqrt 30) / (3 + sqrt 30) ~ 4.2


FINGERPRINT_SCRIPT = """
import json
from anira_tasks import TaskSpec, build_dataset_dict
spec = TaskSpec("brevo", range(3, 9), (), [10], num_train=300, num_validation=40, num_test_per_size=15)
print(json.dumps({name: split._fingerprint for name, split in build_dataset_dict(spec).items()}))
"""


def test_same_spec_same_fingerprint_in_separate_processes():
    processes = [subprocess.Popen([sys.executable, "-c", FINGERPRINT_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    runs = [json.loads(process.communicate()[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    here = {name: split._fingerprint for name, split in build_dataset_dict(SPECS["brevo"]).items()}
    assert runs[0] == runs[1] == here


def test_result_does_not_depend_on_num_proc(monkeypatch):
    monkeypatch.setattr(dataset_module, "PARALLEL_CHUNK", 100)
    spec = TaskSpec("depo", [1, 2, 3], num_train=500, num_validation=20, num_test_per_size=5)
    serial, parallel = build_dataset_dict(spec, num_proc=1), build_dataset_dict(spec, num_proc=2)
    assert {n: s._fingerprint for n, s in serial.items()} == {n: s._fingerprint for n, s in parallel.items()}


def test_num_proc_below_one_is_refused_by_name():
    spec = TaskSpec("depo", [1, 2], num_train=10, num_validation=2, num_test_per_size=2)
    for bad in (0, -2):
        with pytest.raises(ValueError, match=f"num_proc must be >= 1, got {bad}"):
            build_dataset_dict(spec, num_proc=bad)


def test_training_data_arguments_pass_num_proc_to_the_builder(monkeypatch):
    import anira_study.data as data_module
    from anira_study.arguments import DataArguments

    asked = []
    monkeypatch.setattr(data_module, "build_dataset_dict", lambda spec, num_proc=None: asked.append(num_proc) or {})
    data_module.load_data(DataArguments(task="depo", train_sizes=[1, 2], extrapolation_sizes=[3], num_proc=1))
    data_module.load_data(DataArguments(task="depo", train_sizes=[1, 2], extrapolation_sizes=[3]))
    assert asked == [1, None]  # None: the builder's default, one worker per core (unchanged)


def test_different_seed_gives_different_data():
    a = build_dataset_dict(TaskSpec("depo", [1, 2], num_train=50, num_validation=5, num_test_per_size=2, seed=0))
    b = build_dataset_dict(TaskSpec("depo", [1, 2], num_train=50, num_validation=5, num_test_per_size=2, seed=1))
    assert a["train"]["text"] != b["train"]["text"] and a["train"]._fingerprint != b["train"]._fingerprint


@pytest.mark.parametrize(
    "spec_kwargs, name",
    [
        (dict(task="sudoku", train_sizes=[1]), "task"),
        (dict(task="mano", train_sizes=[]), "train_sizes"),
        (dict(task="mano", train_sizes=[0, 1]), "train_sizes"),
        (dict(task="mano", train_sizes=[1, 1]), "train_sizes"),
        (dict(task="brevo", train_sizes=[3, 70]), "train_sizes"),
        (dict(task="mano", train_sizes=[1, 3], interpolation_sizes=[4]), "interpolation_sizes"),
        (dict(task="mano", train_sizes=[1, 3], interpolation_sizes=[3]), "interpolation_sizes"),
        (dict(task="mano", train_sizes=[1, 3], extrapolation_sizes=[2]), "extrapolation_sizes"),
        (dict(task="mano", train_sizes=[1, 3], extrapolation_sizes=[40]), "extrapolation_sizes"),
        (dict(task="mano", train_sizes=[1], task_params={"modulus": 1}), "modulus"),
        (dict(task="mano", train_sizes=[1], task_params={"num_nodes": 4}), "task_params"),
        (dict(task="depo", train_sizes=[1], task_params={"num_nodes": 61}), "num_nodes"),
        (dict(task="mano", train_sizes=[1], num_train=0), "num_train"),
        (dict(task="mano", train_sizes=[1], num_validation=0), "num_validation"),
        (dict(task="mano", train_sizes=[1], num_test_per_size=0), "num_test_per_size"),
        (dict(task="mano", train_sizes=[1], seed=-1), "seed"),
        (dict(task="mano", train_sizes=[1], heldout_fraction=1.0), "heldout_fraction"),
        (dict(task="mano", train_sizes=[1, 2], train_size_weights=[1.0]), "train_size_weights has 1 values for 2"),
        (dict(task="mano", train_sizes=[1, 2], train_size_weights=[1.0, 0.0]), "train_size_weights must be finite numbers > 0"),
        (dict(task="mano", train_sizes=[1, 2], train_size_weights=[1.0, float("nan")]), "train_size_weights must be finite"),
    ],
)
def test_bad_specs_raise_value_error_naming_the_parameter(spec_kwargs, name):
    with pytest.raises(ValueError, match=name):
        build_dataset_dict(TaskSpec(**spec_kwargs))


def test_make_datasets_script_saves_a_loadable_dataset_with_card(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_datasets", ROOT / "examples" / "make_datasets.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.main(["--task", "bfs", "--train_sizes", "3", "4", "--extrapolation_sizes", "6", "--num_train", "40",
                         "--num_validation", "5", "--num_test_per_size", "4", "--output_dir", str(tmp_path)])
    loaded = datasets.load_from_disk(str(tmp_path))
    assert list(loaded) == ["train", "validation", "test_seen", "test_extrapolation"]
    assert loaded["train"]["text"] == built["train"]["text"]
    card = (tmp_path / "README.md").read_text()
    assert "input size n" in card and "`test_extrapolation`" in card and "answer_node" in card


def test_train_size_weights_set_the_training_mix_and_leave_evaluation_splits_unchanged():
    common = dict(task="brevo", train_sizes=[3, 4, 5, 6], extrapolation_sizes=[7], num_train=2_000, num_validation=16,
                  num_test_per_size=8)
    default = build_dataset_dict(TaskSpec(**common), num_proc=1)
    weighted = build_dataset_dict(TaskSpec(**common, train_size_weights=[1, 1, 2, 4]), num_proc=1)
    counts = Counter(weighted["train"]["complexity"])
    shares = {size: counts[size] / 2_000 for size in (3, 4, 5, 6)}
    # 1:1:2:4 is 0.125 / 0.125 / 0.25 / 0.5; 2,000 draws put each share within 0.035 of it (over 3 standard errors)
    for size, expected in zip((3, 4, 5, 6), (0.125, 0.125, 0.25, 0.5)):
        assert abs(shares[size] - expected) < 0.035, (size, shares)
    # BREVO's own mix gives n = 6 about 0.2 of the rows
    assert abs(Counter(default["train"]["complexity"])[6] / 2_000 - 0.197) < 0.035
    for split in ("validation", "test_seen", "test_extrapolation"):
        assert weighted[split]["prompt"] == default[split]["prompt"], split


def test_a_label_symbol_outside_the_vocabulary_is_an_error_not_unk():
    from anira_tasks import Sample, sample_to_row
    from anira_tasks.dataset import _symbol_ids

    tokenizer = load_tokenizer("depo")
    assert _symbol_ids(tokenizer, ["v3", "<unk>"]) == tokenizer.convert_tokens_to_ids(["v3", "<unk>"])
    with pytest.raises(ValueError, match=r"outside the tokenizer's vocabulary: \['v99>v1'\]"):
        _symbol_ids(tokenizer, ["v3", "v99>v1"])
    sample = Sample("depo", 1, 0, "<bos> v0>v1 v1>v0 <hop=1> v0 <ans> <hop=1> v1 <ans>", "v0", {}, prompt_label_positions=[6],
                    prompt_label_symbols=["v1"])
    with pytest.raises(ValueError, match="1 prompt label symbols need as many ids"):
        sample_to_row(sample, list(range(11)))

"""examples/reproduce.py and anira_study.reproduce: one command retrains a named model and writes its folder."""

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from anira_study.reproduce import load_recipe, training_argv, with_seed

from conftest import load_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_quick_reproduction_writes_a_loadable_folder_and_resumes_instead_of_restarting(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    work = tmp_path / "work"
    summary = load_script("reproduce").main(["anira-o-depo", "--quick", "--work_dir", str(work), "--target", str(tmp_path / "folder")])
    folder = tmp_path / "folder"
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.depth_mode == "online" and len(tokenizer) == model.config.vocab_size
    card = (folder / "README.md").read_text()
    for text in ("## Use it", "## Results on held-out test prompts", "python examples/reproduce.py anira-o-depo",
                 "--seed 2", "--learning_rate 3e-3", "--penalty_gate_accuracy 0.9", "minutes of training on"):
        assert text in card, text
    report = json.loads((folder / "report.json").read_text())
    assert report["steps"] == 30 and report["table"] == summary["table"] and (folder / "training_dynamics.png").exists()
    assert json.loads((folder / "recipe.json").read_text()) == load_recipe(ROOT / "hub_configs/anira-o-depo")
    # an interrupted (here: finished) run resumes from its last checkpoint rather than starting over
    argv = training_argv(load_recipe(ROOT / "hub_configs/anira-o-depo"), work, quick=True)
    assert argv[argv.index("--resume_from_checkpoint") + 1] == "last"


def test_recipes_retrain_from_scratch_and_scale_for_a_gpu():
    recipe = load_recipe(ROOT / "hub_configs/anira-e-depo")
    argv = training_argv(recipe, Path("/nonexistent"), batch_scale=4, cuda=True)
    assert argv[argv.index("--from_scratch") + 1] == "true"
    assert argv[argv.index("--per_device_train_batch_size") + 1] == "256"
    assert float(argv[argv.index("--learning_rate") + 1]) == pytest.approx(0.012)
    assert argv[argv.index("--bf16") + 1] == "true" and "--use_cpu" not in argv
    with pytest.raises(ValueError, match="recipe"):
        load_recipe(ROOT / "hub_configs/anira-o-mano")


def test_another_seed_trains_the_recipe_into_its_own_folder_and_says_so(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(ROOT)
    shipped = (ROOT / "hub_configs/anira-o-depo/README.md").read_text()
    work = tmp_path / "work"
    load_script("reproduce").main(["anira-o-depo", "--quick", "--seed", "5", "--work_dir", str(work)])
    folder = work / "folder"  # the default target of a seed run: never the named folder
    assert (ROOT / "hub_configs/anira-o-depo/README.md").read_text() == shipped
    assert torch.load(work / "training_args.bin", weights_only=False).seed == 5
    train_args = json.loads((folder / "recipe.json").read_text())["train_args"]
    assert train_args[train_args.index("--seed") + 1] == "5"
    card = (folder / "README.md").read_text()
    assert "python examples/reproduce.py anira-o-depo --seed 5 --quick" in card
    assert "Trained with --seed 5 in place of the stored recipe's 2." in card


@pytest.mark.parametrize("seed", [-1, "3", 1.5, True])
def test_a_bad_seed_is_refused_by_name(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        with_seed(load_recipe(ROOT / "hub_configs/anira-o-depo"), seed)

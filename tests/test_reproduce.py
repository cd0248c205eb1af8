"""examples/reproduce.py and anira_study.reproduce: one command retrains a named model and writes its folder."""

import json
import shlex
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from anira_study.reproduce import _comparable, load_recipe, stage_runs, training_argv, with_compile_model, with_seed

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
    stored = load_recipe(ROOT / "hub_configs/anira-o-depo")["train_args"]
    for text in ("## Use it", "## Results on held-out test prompts", "python examples/reproduce.py anira-o-depo",
                 f"--seed {stored[stored.index('--seed') + 1]}", f"--learning_rate {stored[stored.index('--learning_rate') + 1]}",
                 "--penalty_gate_accuracy 0.9", "minutes of training on"):
        assert text in card, text
    report = json.loads((folder / "report.json").read_text())
    assert report["steps"] == 30 and report["table"] == summary["table"] and (folder / "training_dynamics.png").exists()
    assert json.loads((folder / "recipe.json").read_text()) == load_recipe(ROOT / "hub_configs/anira-o-depo")
    # the commit and package version that trained it (the checkout may gain commits meanwhile: an ancestor of HEAD)
    _assert_names_this_checkouts_commit(report)
    assert report["stage_commits"] == [report["training_commit"]] and f"`{report['training_commit'][:12]}`" in card
    # an interrupted (here: finished) run resumes from its last checkpoint rather than starting over
    argv = training_argv(load_recipe(ROOT / "hub_configs/anira-o-depo"), work, quick=True)
    assert argv[argv.index("--resume_from_checkpoint") + 1] == "last"


def _assert_names_this_checkouts_commit(record: dict) -> None:
    import subprocess
    from importlib import metadata

    commit = record["training_commit"]
    assert len(commit) == 40 and isinstance(record["training_commit_dirty"], bool)
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT)
    assert ancestor.returncode == 0, f"{commit} is not a commit of this checkout"
    assert record["package_version"] == metadata.version("anira")


def test_provenance_names_the_checkouts_commit_and_the_package_version():
    from anira_study.reproduce import provenance

    _assert_names_this_checkouts_commit(provenance())


def test_provenance_outside_a_checkout_takes_the_commit_the_environment_names_or_none(monkeypatch):
    """A copy of the tree without .git (sent to another machine to train) names its commit in ANIRA_GIT_COMMIT."""
    import subprocess

    from anira_study.reproduce import COMMIT_ENV, provenance

    def no_git(*args, **kwargs):
        raise OSError("no git here")

    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.delenv(COMMIT_ENV, raising=False)
    assert provenance()["training_commit"] is None and provenance()["training_commit_dirty"] is None
    monkeypatch.setenv(COMMIT_ENV, "c" * 40)
    assert provenance()["training_commit"] == "c" * 40 and provenance()["training_commit_dirty"] is None


def test_cards_say_which_commit_trained_each_stage_or_that_it_was_not_recorded():
    from anira_study.model_cards import stage_commits, training_provenance

    a, b = "a" * 40, "b" * 40
    assert training_provenance({"steps": 10}).startswith("The git commit and the package version that trained these "
                                                         "weights were not recorded at training time")
    one = {"steps": 10, "training_commit": a, "training_commit_dirty": False, "package_version": "0.1.0"}
    assert training_provenance(one) == f"Trained at commit `{a[:12]}` of this repository, package anira 0.1.0."
    staged = {**one, "training_commit": b, "training_commit_dirty": True, "stage_steps": [5, 5, 5],
              "stage_commits": [None, a, b]}
    assert stage_commits(staged) == [None, a, b]
    assert training_provenance(staged) == (f"Trained at an unrecorded commit (stage 1) and commit `{a[:12]}` (stage 2) and "
                                           f"commit `{b[:12]}` (stage 3) of this repository (with uncommitted changes to "
                                           "tracked files), package anira 0.1.0.")
    # one stage trained in pieces (a study run resumed from its checkpoints): each piece's commit and tree, in order
    pieces = {**one, "training_commit": b, "training_commits": [
        {"training_commit": a, "training_commit_dirty": True}, {"training_commit": a, "training_commit_dirty": True},
        {"training_commit": a, "training_commit_dirty": False}, {"training_commit": b, "training_commit_dirty": False}]}
    assert training_provenance(pieces) == (
        f"Trained in 4 pieces, each resumed from the previous one's last checkpoint, at commits `{a[:12]}` (with "
        f"uncommitted changes to tracked files, 2 pieces), `{a[:12]}`, `{b[:12]}` of this repository, package anira 0.1.0.")


def test_recipes_retrain_from_scratch_and_scale_for_a_gpu(tmp_path):
    from anira_study.reproduce import base_config_folder, stage_runs
    from modeling_anira import AniraConfig

    # a recipe of the replicated study: its first stage starts from a config-only folder of the recipe's own config
    # (no weights to load), and it trains in float32 on a GPU too, as the study trains
    recipe = load_recipe(ROOT / "hub_configs/anira-e-depo")
    assert "study" in recipe
    base = base_config_folder(ROOT / "hub_configs", "anira-e-depo", tmp_path / "base-config", recipe)
    assert not any(base.glob("*.safetensors"))
    saved = json.loads(AniraConfig.from_pretrained(base).to_json_string(use_diff=False))
    assert {key: saved[key] for key in recipe["config"]} == recipe["config"]
    [(_, argv)] = stage_runs(recipe, tmp_path / "work", batch_scale=4, cuda=True, base=base)
    assert argv[argv.index("--model_name_or_path") + 1] == str(base)
    stored = recipe["train_args"]  # batch and learning rate scale together (4 x 64, 4 x the recipe's rate)
    assert int(stored[stored.index("--per_device_train_batch_size") + 1]) == 64
    assert argv[argv.index("--per_device_train_batch_size") + 1] == "256"
    assert float(argv[argv.index("--learning_rate") + 1]) == pytest.approx(4 * float(stored[stored.index("--learning_rate") + 1]))
    assert "--bf16" not in argv and "--use_cpu" not in argv
    with pytest.raises(ValueError, match="recipe"):
        load_recipe(ROOT / "hub_configs/anira-o-mano")


def test_a_recipe_without_a_config_retrains_from_scratch_in_bf16_on_a_gpu():
    recipe = {"train_args": ["--model_name_or_path", "hub_configs/anira-e-depo", "--from_scratch", "true",
                             "--per_device_train_batch_size", "64", "--learning_rate", "3e-3"]}
    argv = training_argv(recipe, Path("/nonexistent"), batch_scale=4, cuda=True)
    assert argv[argv.index("--from_scratch") + 1] == "true"
    assert argv[argv.index("--per_device_train_batch_size") + 1] == "256"
    assert argv[argv.index("--bf16") + 1] == "true" and "--use_cpu" not in argv
    assert training_argv(recipe, Path("/nonexistent"))[-2:] == ["--use_cpu", "true"]


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
    stored = load_recipe(ROOT / "hub_configs/anira-o-depo")["train_args"]
    assert f"Trained with --seed 5 in place of the stored recipe's {stored[stored.index('--seed') + 1]}." in card


def test_retraining_takes_the_compiled_forward_by_default_where_it_runs(monkeypatch):
    """reproduce's default: compiled on a CPU with a C++ compiler when every stage's model compiles as one graph;
    eager on a GPU (untested there), without a compiler, for ANIRA-E's router_gradient='next', with --compile_layers."""
    import shutil

    from anira_study.reproduce import default_compile_model
    from modeling_anira import AniraConfig

    recipe = load_recipe(ROOT / "hub_configs/anira-o-depo")
    config = AniraConfig.from_pretrained(ROOT / "hub_configs/anira-o-depo")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert default_compile_model(recipe, config, cuda=False)[0] is True
    assert default_compile_model(recipe, config, cuda=True) == (False, "on a GPU the compiled training forward is untested: eager")
    layers = {**recipe, "train_args": [*recipe["train_args"], "--compile_layers", "true"]}
    assert default_compile_model(layers, config, cuda=False)[0] is False
    early = AniraConfig.from_pretrained(ROOT / "hub_configs/anira-e-depo")
    early.router_gradient = "next"
    compiled, why = default_compile_model(load_recipe(ROOT / "hub_configs/anira-e-depo"), early, cuda=False)
    assert not compiled and "router_gradient='next'" in why
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert default_compile_model(recipe, config, cuda=False) == (False, "no C++ compiler on this machine (inductor needs one): eager")


def test_the_compiled_forward_is_a_switch_of_execution_not_of_the_recipe(tmp_path):
    recipe = load_recipe(ROOT / "hub_configs/anira-o-depo")
    args = recipe["train_args"]
    stored = "--compile_model" in args and args[args.index("--compile_model") + 1] == "true"  # the study's: compiled
    flipped = with_compile_model(recipe, not stored)
    (_, argv), = stage_runs(flipped, tmp_path)
    assert argv.count("--compile_model") == 1 and argv[argv.index("--compile_model") + 1] == str(not stored).lower()
    assert flipped["notes"].startswith(f"Trained with --compile_model {str(not stored).lower()} in place of the stored "
                                       f"recipe's {str(stored).lower()}.")
    assert with_compile_model(recipe, stored).get("notes") == recipe.get("notes")  # the stored recipe's own path: no note
    (_, own), = stage_runs(recipe, tmp_path)
    # a folder trained the other way continues as the recipe's (continue_folder compares commands without it)
    assert _comparable("python examples/train.py " + shlex.join(argv)) == _comparable("python examples/train.py " + shlex.join(own))
    compiled = with_compile_model(recipe, True)
    (_, quick), = stage_runs(compiled, tmp_path, quick=True)
    assert quick[quick.index("--compile_model") + 1] == "false"  # a quick run never compiles
    with pytest.raises(ValueError, match="--quick trains eager"):
        load_script("reproduce").main(["anira-o-depo", "--quick", "--compile_model", "true", "--work_dir", str(tmp_path)])


@pytest.mark.parametrize("seed", [-1, "3", 1.5, True])
def test_a_bad_seed_is_refused_by_name(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        with_seed(load_recipe(ROOT / "hub_configs/anira-o-depo"), seed)


def _staged_hub(tmp_path: Path, name: str = "anira-o-depo") -> Path:
    """A hub folder holding `name`'s configuration with a two-stage recipe (the second continues the first)."""
    import shutil

    hub = tmp_path / "hub"
    shutil.copytree(ROOT / "hub_configs" / name, hub / name, ignore=shutil.ignore_patterns("*.safetensors", "*.png"))
    recipe = load_recipe(hub / name)
    recipe["train_args"] = [str(hub / name) if a == f"hub_configs/{name}" else a for a in recipe["train_args"]]
    recipe["stages"] = [{"train_args": ["--learning_rate", "1e-3", "--warmup_steps", "5"]}]
    (hub / name / "recipe.json").write_text(json.dumps(recipe))
    return hub


def _stage_command(card: str, number: int) -> str:
    """The `train.py` command a card gives for stage `number` of a staged recipe (the line after `# stage <number>`)."""
    lines = card.splitlines()
    return lines[lines.index(f"# stage {number}") + 1]


def test_a_staged_recipe_continues_each_stage_from_the_last_and_reports_them_all(tmp_path, monkeypatch):
    from anira_study.reproduce import stage_runs

    monkeypatch.chdir(ROOT)
    hub, work = _staged_hub(tmp_path), tmp_path / "work"
    runs = stage_runs(load_recipe(hub / "anira-o-depo"), work, quick=True, base=work / "base-config")
    (first, argv1), (second, argv2) = runs
    assert (first, second) == (work / "stage1", work / "stage2")
    assert argv1[argv1.index("--model_name_or_path") + 1] == str(work / "base-config")  # a config-only folder
    assert argv2[argv2.index("--model_name_or_path") + 1] == str(first) and argv2[argv2.index("--from_scratch") + 1] == "false"
    assert argv2[argv2.index("--learning_rate") + 1] == "1e-3" and argv2[argv2.index("--seed") + 1] == argv1[argv1.index("--seed") + 1]
    summary = load_script("reproduce").main(["anira-o-depo", "--quick", "--hub_dir", str(hub), "--work_dir", str(work),
                                             "--target", str(tmp_path / "folder")])
    assert summary["stage_steps"] == [30, 30] and summary["steps"] == 60
    assert all((folder / "model.safetensors").exists() for folder in (first, second))
    card = (tmp_path / "folder" / "README.md").read_text()
    assert "in 2 stages of 30 + 30 steps" in card and "# stage 2" in card and f"--model_name_or_path {first}" not in card
    assert _stage_command(card, 2).startswith("python examples/train.py --model_name_or_path outputs/reproduce/anira-o-depo/stage1 ")
    assert "--from_scratch false" in _stage_command(card, 2)
    # the probe log runs over both stages: the second stage's steps continue the first's
    report = json.loads((tmp_path / "folder" / "report.json").read_text())
    assert report["phases"] and report["steps"] == 60
    # finished stages are not trained again: a rerun only evaluates and rewrites the folder
    mtime = (second / "model.safetensors").stat().st_mtime
    load_script("reproduce").main(["anira-o-depo", "--quick", "--hub_dir", str(hub), "--work_dir", str(work),
                                   "--target", str(tmp_path / "folder")])
    assert (second / "model.safetensors").stat().st_mtime == mtime


@pytest.mark.parametrize("stages, message", [
    ({"train_args": []}, "must be a list"),
    ([{"train_args": ["--max_steps"]}], "'--flag value' pairs"),
    ([{"train_args": ["--max_steps", "--seed"]}], "'--flag value' pairs"),
    ([{"args": ["--max_steps", "10"]}], "'--flag value' pairs"),
    ([{"train_args": ["--seed", "3"]}], "may not set --seed"),
    ([{"train_args": ["--model_name_or_path", "x"]}], "may not set --model_name_or_path"),
])
def test_a_malformed_stage_is_refused_by_name(stages, message):
    from anira_study.reproduce import stage_runs

    recipe = {**load_recipe(ROOT / "hub_configs/anira-o-depo"), "stages": stages}
    with pytest.raises(ValueError, match=message):
        stage_runs(recipe, Path("/nonexistent"))


def test_a_folder_continues_with_the_stage_its_recipe_gained_after_its_checkpoints_are_gone(tmp_path, monkeypatch):
    import shutil

    from anira_study.analysis import read_probe_log
    from anira_study.reproduce import shipped_stages

    monkeypatch.chdir(ROOT)
    name, hub = "anira-o-depo", _staged_hub(tmp_path)
    staged = load_recipe(hub / name)
    one_stage = {k: v for k, v in staged.items() if k != "stages"}
    (hub / name / "recipe.json").write_text(json.dumps(one_stage))
    reproduce = load_script("reproduce").main
    reproduce([name, "--quick", "--hub_dir", str(hub), "--work_dir", str(tmp_path / "old"), "--target", str(hub / name)])
    shipped = json.loads((hub / name / "report.json").read_text())
    assert [r["step"] for r in read_probe_log(hub / name / "training_log.jsonl")][-1] == 30  # the folder keeps its log
    shutil.rmtree(tmp_path / "old")  # the machine that trained it is gone
    (hub / name / "recipe.json").write_text(json.dumps(staged))  # and the recipe gains a stage

    work, folder = tmp_path / "new", tmp_path / "folder"
    summary = reproduce([name, "--quick", "--hub_dir", str(hub), "--work_dir", str(work), "--target", str(folder),
                         "--continue_folder", "true"])
    assert summary["stage_steps"] == [30, 30] and summary["train_seconds"] > shipped["train_seconds"]
    # stage 1 was not retrained: its folder is the shipped model, from which stage 2 started
    assert not (work / "stage1" / "trainer_state.json").exists() and (work / "stage2" / "trainer_state.json").exists()
    assert (work / "stage1" / "model.safetensors").read_bytes() == (hub / name / "model.safetensors").read_bytes()
    steps = [r["step"] for r in read_probe_log(folder / "training_log.jsonl")]
    assert steps[0] <= 30 < steps[-1] == 60  # one log over both stages
    assert summary["continued"] == {"stages": 1, "date": shipped["date"], "machine": shipped["machine"], "log_kept": True}
    card = (folder / "README.md").read_text()
    assert "Stage 1 was trained earlier" in card and "--continue_folder true" in card and "not kept" not in card
    assert _stage_command(card, 2).startswith("python examples/train.py --model_name_or_path outputs/reproduce/anira-o-depo/stage1 ")
    assert "--from_scratch false" in _stage_command(card, 2)

    # a folder written before folders kept their log: the figure and phases say what is missing
    (hub / name / "training_log.jsonl").unlink()
    summary = reproduce([name, "--quick", "--hub_dir", str(hub), "--work_dir", str(tmp_path / "newer"), "--target",
                         str(tmp_path / "folder2"), "--continue_folder", "true"])
    assert summary["continued"]["log_kept"] is False and summary["phases"]["learned_step"] == shipped["phases"]["learned_step"]
    assert min(r["step"] for r in read_probe_log(tmp_path / "folder2" / "training_log.jsonl")) > 30
    assert "probe log of the first 30 steps was not kept" in (tmp_path / "folder2" / "README.md").read_text()
    assert summary["log_missing_until"] == 30 and len(summary["stage_machines"]) == 2

    # continued again (the recipe gains a third stage), from the folder that lacks stage 1's log and whose stage 1
    # ran elsewhere: the lost steps, the learning phase and every stage's machine are carried, not forgotten
    hub2 = tmp_path / "hub2"
    shutil.copytree(tmp_path / "folder2", hub2 / name)
    report2 = json.loads((hub2 / name / "report.json").read_text())
    report2["stage_machines"][0] = "an older CPU"
    (hub2 / name / "report.json").write_text(json.dumps(report2))
    (hub2 / name / "recipe.json").write_text(json.dumps({**staged, "stages": staged["stages"] * 2}))
    summary = reproduce([name, "--quick", "--hub_dir", str(hub2), "--work_dir", str(tmp_path / "newest"), "--target",
                         str(tmp_path / "folder3"), "--continue_folder", "true"])
    assert summary["stage_steps"] == [30, 30, 30] and summary["log_missing_until"] == 30
    assert summary["phases"]["learned_step"] == shipped["phases"]["learned_step"]
    assert summary["stage_machines"] == ["an older CPU", report2["machine"], report2["machine"]]
    card3 = (tmp_path / "folder3" / "README.md").read_text()
    assert f"an older CPU (stage 1) and {report2['machine']} (stages 2-3)" in card3
    assert "probe log of the first 30 steps was not kept" in card3

    # refused by name: nothing left to continue, finished stages of another recipe, no trained model
    with pytest.raises(ValueError, match="nothing to continue"):
        shipped_stages(folder, staged, name, quick=True)
    args = list(one_stage["train_args"])
    args[args.index("--learning_rate") + 1] = "1e-4"
    other = {**staged, "train_args": args}
    with pytest.raises(ValueError, match="other stage commands"):
        shipped_stages(hub / name, other, name, quick=True)
    with pytest.raises(ValueError, match="no trained model"):
        shipped_stages(tmp_path, staged, name, quick=True)


def test_training_machines_names_each_machine_with_its_stages():
    from anira_study.model_cards import log_missing_until, stage_machines, training_machines

    one = {"machine": "A", "steps": 10}
    assert training_machines(one) == "A" and stage_machines(one) == ["A"] and log_missing_until(one) == 0
    # a report written before reports listed each stage's machine: a continued model's earlier stages ran elsewhere
    old = {"machine": "B", "steps": 40, "stage_steps": [10] * 4,
           "continued": {"stages": 3, "machine": "A", "date": "d", "log_kept": False}}
    assert training_machines(old) == "A (stages 1-3) and B (stage 4)" and log_missing_until(old) == 30
    new = {**old, "stage_machines": ["A", "A", "A", "B", "B"], "stage_steps": [10] * 5, "log_missing_until": 30}
    assert training_machines(new) == "A (stages 1-3) and B (stages 4-5)" and log_missing_until(new) == 30


def test_keep_stage_reads_accuracy_first_and_rho_only_on_a_tie():
    from anira_study.reproduce import keep_stage

    nan = float("nan")
    assert keep_stage((0.90, 0.7), (0.91, 0.1)) == (True, "accuracy rose (0.9000 -> 0.9100)")
    assert keep_stage((0.90, 0.1), (0.89, 0.9))[0] is False
    assert keep_stage((0.8958, 0.07), (0.8958, 0.73)) == (True, "accuracy tied (0.8958); rho rose (0.070 -> 0.730)")
    assert keep_stage((0.8958, 0.73), (0.8958, 0.73))[0] is False
    assert keep_stage((0.983, nan), (0.983, nan)) == (False, "accuracy tied (0.9830) and rho is undefined")


def test_keep_stage_with_a_rho_floor_refuses_a_more_accurate_stage_whose_depth_stopped_following_n():
    from anira_study.reproduce import keep_stage

    nan = float("nan")
    assert keep_stage((0.9132, 0.71), (0.93, 0.29), min_rho=0.6) == (False, "rho 0.290 is below the floor 0.60")
    assert keep_stage((0.9132, 0.71), (0.93, 0.65), min_rho=0.6) == (True, "accuracy rose (0.9132 -> 0.9300)")
    assert keep_stage((0.9132, 0.71), (0.90, 0.80), min_rho=0.6)[0] is False  # the floor never keeps on its own
    assert keep_stage((0.983, nan), (0.99, nan), min_rho=0.6) == (True, "accuracy rose (0.9830 -> 0.9900)")


TRAINED = ["anira-e-depo", "anira-o-depo", "anira-fixed-depo", "anira-e-brevo", "anira-o-brevo", "anira-fixed-brevo"]
MACHINE_FIELDS = {"architectures", "auto_map", "transformers_version", "dtype", "torch_dtype", "use_cache", "_name_or_path"}


def _fields(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in MACHINE_FIELDS}


@pytest.mark.parametrize("name", TRAINED)
def test_each_stage_configuration_rebuilt_from_the_recipe_ends_at_the_trained_one(tmp_path, name):
    """The pre-stage configuration plus every stage's overrides, in order, is exactly the trained folder's config."""
    from anira_study.reproduce import base_config_folder, stage_configs
    from modeling_anira import AniraConfig

    recipe = load_recipe(ROOT / "hub_configs" / name)  # a study-shipped folder's recipe holds its own base config
    base = AniraConfig.from_pretrained(base_config_folder(ROOT / "hub_configs", name, tmp_path / "base", recipe))
    configs = stage_configs(recipe, base)
    assert _fields(configs[-1]) == _fields(AniraConfig.from_pretrained(ROOT / "hub_configs" / name))


def test_the_first_stage_trains_from_the_pre_stage_configuration_not_the_trained_folders(tmp_path):
    """build.py's staged anira-e-brevo recipe trains with router_sampling='argmax' from its eighth stage on (the trained
    folder's config.json says so); its first seven stages trained on Gumbel samples. The first stage's command starts
    from the pre-stage configuration. (build.py's RECIPES, not the folder's recipe.json: the folder may hold the study's
    run once it is shipped.)"""
    from anira_study.reproduce import base_config_folder, hub_build, stage_configs, stage_runs
    from modeling_anira import AniraConfig

    recipe = hub_build(ROOT / "hub_configs").RECIPES["anira-e-brevo"]
    base = base_config_folder(ROOT / "hub_configs", "anira-e-brevo", tmp_path / "base")
    runs = stage_runs(recipe, tmp_path / "work", base=base)
    first = runs[0][1]
    assert first[first.index("--model_name_or_path") + 1] == str(base)
    sampling = [c.router_sampling for c in stage_configs(recipe, AniraConfig.from_pretrained(base))]
    assert sampling[:7] == ["gumbel"] * 7 and set(sampling[7:]) == {"argmax"} and len(sampling) == len(runs)

"""Shipping the study's seed 0 as the named models (anira_study.ship, examples/study.py ship, hub_configs/build.py's
study recipes and anira_study.model_cards.study_seeds)."""

import json
from pathlib import Path

import pytest

from anira_study import ship, study


def _flags(argv: list[str]) -> dict[str, list[str]]:
    """`--flag v1 v2 ...` -> {flag: [v1, v2, ...]} (a flag may take several values: --train_sizes 1 2 3 4)."""
    flags, flag = {}, None
    for arg in argv:
        if arg.startswith("--"):
            flag = arg
            flags[flag] = []
        else:
            flags[flag].append(arg)
    return flags


REPRODUCE_BOOKKEEPING = {"--save_strategy", "--save_total_limit", "--use_cpu"}  # checkpoints and device, not the model


@pytest.mark.parametrize("task", ship.HUB_TASKS)
def test_a_shipped_recipe_rebuilds_exactly_the_configuration_and_arguments_the_study_runs(tmp_path, task, monkeypatch):
    """hub_configs/build.py's recipe of a study-shipped folder, run by examples/reproduce.py, trains study.py's
    model_config with study.py's training_args of seed 0 (quick or not), in float32 on a GPU as the study does; a
    searched grid (v6's DEPO) with the candidate its search chose, into the named folders of its task."""
    from test_hub_configs import load_build

    from anira_study import study_search

    if "search" in study.GRIDS[task]:
        last = list(study.SEARCHES[study.GRIDS[task]["search"]]["candidates"])[-1]
        monkeypatch.setattr(study_search, "searched_choice", lambda *args, **kwargs: last)

    from transformers import AutoTokenizer

    from anira_study.reproduce import base_config_folder, stage_configs, stage_runs
    from modeling_anira import AniraConfig

    build = load_build()
    for model, variant in ship.HUB_VARIANTS.items():
        name = f"anira-{variant}-{ship.HUB_TASKS[task]}"
        block = {"protocol_version": study.protocol_version(task), "task": task, "model": model, "seed": 0}
        recipe = build.study_recipe(name, {"study": block})
        assert recipe == json.loads(json.dumps(recipe))  # what recipe.json holds
        base = base_config_folder(build.HUB_CONFIGS_DIR, name, tmp_path / name / "base-config", recipe)
        studys = study.write_model_folder(task, model, tmp_path / name / "study-config")  # what study.py trains from
        rebuilt = [c.to_dict() for c in (AniraConfig.from_pretrained(base), *stage_configs(recipe, AniraConfig.from_pretrained(base)))]
        assert rebuilt[0] == rebuilt[1] == AniraConfig.from_pretrained(studys).to_dict()
        assert AutoTokenizer.from_pretrained(base).get_vocab() == AutoTokenizer.from_pretrained(studys).get_vocab()
        for quick in (False, True):
            (folder, argv), = stage_runs(recipe, tmp_path / name / "work", quick=quick, base=base)
            ran = _flags(study.training_args(task, model, 0, base, folder, quick))
            assert {k: v for k, v in _flags(argv).items() if k not in REPRODUCE_BOOKKEEPING} == ran, (name, quick)
        (_, on_gpu), = stage_runs(recipe, tmp_path / name / "work", cuda=True, base=base)
        assert "--bf16" not in on_gpu  # the study trains in float32 everywhere
    with pytest.raises(ValueError, match="ships as anira-o-"):
        build.study_recipe(f"anira-e-{ship.HUB_TASKS[task]}", {"study": {**block, "model": "anira-o"}})
    with pytest.raises(ValueError, match="protocol v0"):
        build.study_recipe(name, {"study": {**block, "protocol_version": "v0"}})


def test_ship_refuses_naming_every_run_it_lacks_and_touches_nothing(tmp_path):
    from conftest import write_study_run

    hub = tmp_path / "hub"
    (hub / "anira-e-depo").mkdir(parents=True)
    (hub / "anira-e-depo" / "model.safetensors").write_text("older weights")
    write_study_run(tmp_path / "study", "depo", "anira-e", 0, {1: 1.0, 2: 1.0}, {1: 1.0, 2: 2.0}, probe=[])  # no weights
    write_study_run(tmp_path / "study", "depo", "anira-o", 0, {1: 1.0, 2: 1.0}, {1: 1.0, 2: 2.0}, report=False)
    write_study_run(tmp_path / "study", "depo", "fixed-6", 1, {1: 1.0, 2: 1.0}, {1: 6.0, 2: 6.0})  # another seed
    with pytest.raises(ValueError) as refused:
        ship.ship("depo", tmp_path / "study", hub)
    message = str(refused.value)
    assert "anira-o-seed0 has not finished (runs/anira-o-seed0/report.json is missing)" in message
    assert "fixed-6-seed0 has not finished (no line in runs.json)" in message
    assert "anira-e-seed0 has not finished (its folder lacks model.safetensors, config.json)" in message
    assert "python examples/study.py run --task depo" in message
    assert [p.relative_to(hub).as_posix() for p in hub.rglob("*")] == ["anira-e-depo", "anira-e-depo/model.safetensors"]
    with pytest.raises(ValueError, match="not 'mano'"):
        ship.ship("mano", tmp_path / "study", hub)


def test_a_shipped_card_lists_every_seed_of_its_model_and_the_baselines_with_the_pending_ones(tmp_path):
    from conftest import write_study_run

    from anira_study.model_cards import study_seeds

    accuracy = {0: {1: 1.0, 2: 0.9, 3: 0.2}, 1: {1: 0.8, 2: 0.6, 3: 0.1}}
    for seed, gain in ((0, 1.3), (1, 0.9)):
        write_study_run(tmp_path, "depo", "anira-e", seed, accuracy[seed], {1: 1.0, 2: 2.0, 3: 3.0}, rho=0.7 - seed, gain=gain)
    write_study_run(tmp_path, "depo", "fixed-3", 0, {1: 0.5, 2: 0.3}, {1: 3.0, 2: 3.0})
    write_study_run(tmp_path, "depo", "fixed-1", 1, {1: 0.4, 2: 0.2}, {1: 1.0, 2: 1.0}, report=False)
    block = {"protocol": study.PROTOCOL_FILE, "protocol_version": study.protocol_version("depo"), "task": "depo",
             "model": "anira-e", "seed": 0, "run": "anira-e-seed0", "commit": "c" * 40, "quick": False}
    lines = study_seeds("anira-e-depo", {"study": block}, tmp_path)
    text = "\n".join(lines)
    assert "the replicated study's run `anira-e-seed0`" in text and "the commits that trained it" in text
    assert "The grid `depo` has 3 of its 15 runs in; this section adds each as it lands" in text
    assert "seed 0 of anira-e, anira-o, fixed-6 is the model shipped here, whatever the other seeds give" in text
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| seed") and not line.startswith("| model")]
    seeds = rows[:3]
    assert seeds[0] == "| 0 (shipped) | 0.95 | 1.00 / 0.90 | 0.70 [0.60, 0.80] | 1.30 [1.20, 1.40] | F1, F2, depth pays |"
    assert seeds[1] == "| 1 | 0.70 | 0.80 / 0.60 | -0.30 [-0.40, -0.20] | 0.90 [0.80, 1.00] | F2 |"
    assert seeds[2] == "| 2 | pending (no line in runs.json) | - | - | - | - |"
    baselines = {row.split(" | ")[0].strip("| "): row.split(" | ")[1:] for row in rows[3:]}
    assert baselines["anira-e"] == ["adaptive, up to 6", "0.95", "0.70", "pending |"]
    assert baselines["fixed-3"] == ["3", "0.40", "pending", "pending |"]
    assert baselines["fixed-1"] == ["1", "pending", "pending", "pending |"]  # seed 1's report is missing
    with pytest.raises(ValueError, match="holds no finished run of it"):
        study_seeds("anira-e-depo", {"study": {**block, "seed": 2, "run": "anira-e-seed2"}}, tmp_path)
    retrained = "\n".join(study_seeds("anira-e-depo", {"study": {**{k: v for k, v in block.items() if k not in ("run", "commit")},
                                                                 "retrained_with": "python examples/reproduce.py anira-e-depo"}}, tmp_path))
    assert "retrained from the replicated study's recipe" in retrained and "not the study's own run" in retrained
    assert "earlier protocol version" not in text and "never trained on" not in text  # no curriculum in these runs
    report = tmp_path / "depo" / "runs" / "anira-e-seed1" / "report.json"  # seed 1 trained with a size curriculum
    report.write_text(json.dumps(json.loads(report.read_text()) | {"train_args": ["--curriculum_accuracy", "0.8"]}))
    (report.parent / "probe_log.jsonl").write_text(json.dumps({"step": 200, "probe/token_accuracy": 0.5}) + "\n")  # no unlock
    assert ("Seen sizes a run never trained on (its size curriculum never unlocked them, so its accuracy there is that of "
            "a size it never saw): seed 1: 2.") in "\n".join(study_seeds("anira-e-depo", {"study": block}, tmp_path))
    # protocol v8's DEPO grid ships into the same named folders; its card links v1's grid of the same task
    write_study_run(tmp_path, "depo-v8", "anira-e", 0, accuracy[0], {1: 1.0, 2: 2.0, 3: 3.0})
    assert ship.hub_name("depo-v8", "anira-e") == "anira-e-depo"
    v8 = "\n".join(study_seeds("anira-e-depo", {"study": {**block, "task": "depo-v8", "protocol_version": "v8"}}, tmp_path))
    assert "| 0 (shipped) | 0.95 |" in v8 and "| 1 | pending (no line in runs.json)" in v8  # v8's seeds, not v1's
    assert ("earlier protocol version's grid (`depo`, protocol v1): every seed in "
            "[experiments/study/depo/results.md](../../experiments/study/depo/results.md); why the version changed: "
            "[the protocol's versions](../../experiments/study/README.md#the-protocols-versions)") in v8
    with pytest.raises(ValueError, match="not 'depo-v7'"):  # a withdrawn grid ships nothing
        ship.hub_name("depo-v7", "anira-e")


@pytest.mark.slow
def test_ship_copies_seed_0_of_a_quick_grid_into_named_folders_whose_recipe_retrains_it(tmp_path, monkeypatch):
    """End to end on a quick grid (three quick runs, a few minutes): ship, build --check, the card, then
    examples/reproduce.py from the shipped folder's recipe."""
    from conftest import load_script
    from test_hub_configs import ROOT, load_build

    from anira_study.operating_curve import operating_curve_grid
    from anira_study.reproduce import TRAINING_LOG_FILE

    monkeypatch.chdir(ROOT)
    study_dir, hub = tmp_path / "study", tmp_path / "hub"
    with pytest.raises(ValueError, match="anira-e-seed0 has not finished"):
        load_script("study").main(["ship", "--task", "depo", "--quick", "--study_dir", str(study_dir), "--hub_dir", str(hub)])
    for model in ship.HUB_VARIANTS:
        study.train_and_evaluate("depo", model, 0, tmp_path / "work", study_dir, quick=True)
    operating_curve_grid("depo", study_dir, quick=True)  # protocol v3 for the anira-o run: its card shows it
    (hub / "anira-o-depo").mkdir(parents=True)
    (hub / "anira-o-depo" / "old_report.txt").write_text("")  # an older recipe's leftovers go
    folders = load_script("study").main(["ship", "--task", "depo", "--quick", "--study_dir", str(study_dir), "--hub_dir", str(hub)])
    assert sorted(f.name for f in folders) == ["anira-e-depo", "anira-fixed-depo", "anira-o-depo"]
    build = load_build()
    assert build.build_all(hub, check=True, names=[f.name for f in folders], study_dir=study_dir) == []
    assert not (hub / "anira-o-depo" / "old_report.txt").exists()
    for model, folder in zip(ship.HUB_VARIANTS, folders):
        run = study_dir / "depo" / "runs" / f"{model}-seed0"
        assert (folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
        assert (folder / TRAINING_LOG_FILE).read_bytes() == (run / "probe_log.jsonl").read_bytes()
        assert (folder / "training_dynamics.png").stat().st_size > 0
        report = json.loads((folder / "report.json").read_text())
        ran = json.loads((run / "report.json").read_text())
        assert report["report"] == ran["report"] and report["study"]["run"] == f"{model}-seed0"
        assert (report["study"]["protocol_version"], report["study"]["seed"], report["study"]["quick"]) == ("v1", 0, True)
        assert report["study"]["commit"] == ran["training_commits"][-1]["training_commit"]
        assert json.loads((folder / "recipe.json").read_text()) == ship.shipped_recipe("depo", model)
        card = (folder / "README.md").read_text()
        assert "## Over training seeds (the replicated study)" in card and "| 1 | pending (no line in runs.json)" in card
        assert "| fixed-3 | 3 | pending" in card and f"python examples/reproduce.py {folder.name}" in card
        assert ("## At other halting thresholds" in card) == (model == "anira-o")
    # build.py without the study's folder refuses the card rather than print a seed table of another grid
    with pytest.raises(ValueError, match="holds no finished run of it"):
        build.build_all(hub, check=True, names=["anira-e-depo"], study_dir=tmp_path / "elsewhere")
    summary = load_script("reproduce").main(["anira-fixed-depo", "--quick", "--hub_dir", str(hub), "--work_dir",
                                             str(tmp_path / "again"), "--target", str(tmp_path / "again" / "folder")])
    import shlex

    retrained = _flags(shlex.split(summary["train_commands"][0])[2:])  # after "python examples/train.py"
    ran = _flags(json.loads((study_dir / "depo" / "runs" / "fixed-6-seed0" / "report.json").read_text())["train_args"])
    paths = REPRODUCE_BOOKKEEPING | {"--output_dir", "--model_name_or_path"}
    assert {k: v for k, v in retrained.items() if k not in paths} == {k: v for k, v in ran.items() if k not in paths}
    assert summary["study"]["model"] == "fixed-6" and "run" not in summary["study"]
    config = json.loads((tmp_path / "again" / "folder" / "config.json").read_text())
    assert config["max_depth"] == 6 and config["depth_mode"] == "fixed" and config["iteration_loss_weight"] == 0.0


def test_a_run_landing_after_the_ship_rewrites_the_cards_shipped_from_its_grid_only(tmp_path, monkeypatch):
    """refresh_shipped_cards (called when a study run lands in runs.json) rebuilds the named folders shipped from
    that task's grid, and only those: another task's, a staged recipe's and a quick ship's folders are left alone."""
    import anira_study.reproduce as reproduce

    calls = []

    class FakeBuild:
        def build_all(self, hub_dir, names, study_dir):
            calls.append((Path(hub_dir), names, Path(study_dir)))

    monkeypatch.setattr(reproduce, "hub_build", lambda hub_dir: FakeBuild())
    hub = tmp_path / "hub"
    shipped = {"anira-e-depo": {"task": "depo"}, "anira-o-depo": {"task": "depo", "quick": True},
               "anira-e-brevo": {"task": "brevo"}, "anira-fixed-depo": None}
    for name, block in shipped.items():
        (hub / name).mkdir(parents=True)
        (hub / name / "report.json").write_text(json.dumps({"name": name} | ({"study": block} if block else {})))
    assert ship.refresh_shipped_cards("depo", tmp_path / "study", hub) == ["anira-e-depo"]
    assert calls == [(hub, ["anira-e-depo"], tmp_path / "study")]
    assert ship.refresh_shipped_cards("brevo", tmp_path / "study", hub) == ["anira-e-brevo"] and len(calls) == 2
    assert ship.refresh_shipped_cards("mano", tmp_path / "study", hub) == [] and len(calls) == 2  # ships no folders


def test_a_depo_card_says_when_its_prompts_show_solved_queries():
    """A DEPO recipe with several queries sharing k (v1's data) leaks part of the answer: its card's Limitations say so;
    one query per prompt (v7's), the earlier answers hidden (v8's `hidden-curriculum`) and other tasks do not."""
    from anira_study import study
    from anira_study.model_cards import solved_queries_leak
    from anira_study.study_search import candidate_recipe

    v1 = study.GRIDS["depo"]["data"]
    v7 = candidate_recipe("depo-v7", "single-curriculum", "default")[0]
    hidden = candidate_recipe("depo-v8", "hidden-curriculum", "default")[0]  # six queries, the earlier answers hidden
    assert solved_queries_leak(v1) and not solved_queries_leak(study.GRIDS["brevo"]["data"])
    assert not solved_queries_leak(v7) and not solved_queries_leak(hidden)
    for name in ("anira-e-depo", "anira-o-depo", "anira-fixed-depo"):  # as shipped: the statement where the data leaks
        card = (study.REPO / "hub_configs" / name / "README.md").read_text()
        args = json.loads((study.REPO / "hub_configs" / name / "recipe.json").read_text())["train_args"]
        assert ("**Its prompts give part of the answer away.**" in card) == solved_queries_leak(args), name
    assert "give part of the answer away" not in (study.REPO / "hub_configs" / "anira-e-brevo" / "README.md").read_text()


def test_ship_refuses_to_put_an_earlier_protocols_model_over_a_later_ones(tmp_path):
    """The named DEPO folders hold protocol v8's seed 0: shipping v1's DEPO grid again is refused, naming what they
    hold, unless forced; a folder of the same grid, or one the study did not ship, is no obstacle."""
    hub = tmp_path / "hub"
    for model in ship.HUB_VARIANTS:
        (hub / ship.hub_name("depo", model)).mkdir(parents=True)
        study_block = {"task": "depo-v8", "protocol_version": "v8"}
        (hub / ship.hub_name("depo", model) / "report.json").write_text(json.dumps({"study": study_block}))
    with pytest.raises(ValueError, match=r"cannot ship depo \(protocol v1\): anira-e-depo holds depo-v8 \(protocol v8\)"):
        ship.ship("depo", tmp_path / "study", hub)
    assert all((hub / ship.hub_name("depo", m) / "report.json").exists() for m in ship.HUB_VARIANTS)  # untouched
    with pytest.raises(ValueError, match="anira-e-seed0 has not finished"):  # forced: on to the runs it needs
        ship.ship("depo", tmp_path / "study", hub, force=True)
    with pytest.raises(ValueError, match="anira-e-seed0 has not finished"):  # the same grid again: no refusal
        ship.ship("depo-v8", tmp_path / "study", hub)

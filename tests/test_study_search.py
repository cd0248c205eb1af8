"""The study's recipe searches (anira_study.study_search: select_recipe, search_one, run_search; declared in
anira_study.study's SEARCHES) and the grids that take their recipe from them."""

import json

import pytest
from conftest import fake_study_processes

from anira_study import study, study_search


def record(search, study_dir, candidate, variant, exact: dict, quick=False, recipe=None):
    """A search run's line with synthetic validation numbers {seen size: exact match}."""
    return study_search.record_search(search, {
        "candidate": candidate, "variant": variant, "recipe": recipe or study_search._recipe_record(search, candidate, variant),
        "validation": {str(c): {"exact": v, "prompts": 64} for c, v in exact.items()}}, study_dir, quick)


def choose(search, study_dir, winner=None, quick=False):
    """Records every declared run of `search`, `winner` (default the last candidate) the only one above the bar."""
    candidates = list(study.SEARCHES[search]["candidates"])
    winner = winner or candidates[-1]
    for candidate in candidates:
        for variant in study.SEARCHES[search]["variants"]:
            record(search, study_dir, candidate, variant, {1: 1.0, 2: 0.95 if candidate == winner else 0.5}, quick)
    return winner


def test_the_rule_picks_the_first_candidate_over_the_bar_else_the_highest_minimum_ties_to_the_earlier():
    both = lambda a, b: {"marker": a, "no-marker": b}  # noqa: E731
    passing = {"a": both({1: 0.95, 2: 0.5}, {1: 1.0, 2: 1.0}),   # one variant's size below the bar
               "b": both({1: 0.9, 2: 0.92}, {1: 0.91, 2: 0.9}),  # the first at >= 0.9 everywhere
               "c": both({1: 1.0, 2: 1.0}, {1: 1.0, 2: 1.0})}    # better, but declared later
    choice = study_search.select_recipe(passing)
    assert (choice["candidate"], choice["passed"], choice["minimum"]) == ("b", True, 0.9)
    failing = {"a": both({1: 0.3, 2: 0.99}, {1: 0.99, 2: 0.99}),  # minimum 0.3 (its best sizes do not count)
               "b": both({1: 0.6, 2: 0.7}, {1: 0.8, 2: 0.6}),
               "c": both({1: 0.6, 2: 0.89}, {1: 0.65, 2: float("nan")})}  # NaN (no prompt) counts as 0
    choice = study_search.select_recipe(failing)
    assert (choice["candidate"], choice["passed"], choice["minimum"]) == ("b", False, 0.6)
    tie = {"a": both({1: 0.5}, {1: 0.7}), "b": both({1: 0.5}, {1: 0.9})}
    assert study_search.select_recipe(tie)["candidate"] == "a"
    with pytest.raises(ValueError, match="at least one"):
        study_search.select_recipe({})


def test_searches_are_declared_apart_from_the_study_and_keep_mano_23_and_both_markers_reachable():
    assert study.SEARCH_SEED not in study.SEEDS and study.SEARCH_MODEL in study.MODELS
    assert {"mano", "mano-v9", "clrs-topological_sort", "clrs-dfs"} <= set(study.SEARCHES)
    moduli = {c["task_params"]["modulus"] for c in study.SEARCHES["mano"]["candidates"].values()}
    assert 23 in moduli
    markers = {study.GRIDS[g]["variant"]: json.loads(study_search.candidate_recipe("mano", "mod23", study.GRIDS[g]["variant"])[0][3])
               for g in ("mano", "mano-no-marker")}
    assert markers["marker"]["use_length_marker"] is True and markers["no-marker"]["use_length_marker"] is False
    with pytest.raises(ValueError, match="candidates are"):
        study_search.candidate_recipe("mano", "mod99", "marker")


def test_mano_v9_searches_v2s_data_for_60000_steps_in_both_variants_and_withdraws_v2s_grids(tmp_path):
    """Protocol v9: v2's MANO data (100,000 rows, l = 1-4 seen, 5 and 6 unseen, weight decay 0.1) at moduli 11 and 7,
    60,000 steps, both markers; the grids train the seven models of v6 on; v2's grids and search are withdrawn."""
    assert list(study.SEARCHES["mano-v9"]["candidates"]) == ["mod11-60k", "mod7-60k", "mod7-curriculum-60k"]
    for grid, marker in (("mano-v9", True), ("mano-v9-no-marker", False)):
        variant = study.GRIDS[grid]["variant"]
        for candidate, modulus in (("mod11-60k", 11), ("mod7-60k", 7), ("mod7-curriculum-60k", 7)):
            argv = study_search.search_args("mano-v9", candidate, variant, tmp_path / "m", tmp_path / "o")
            assert json.loads(argv[argv.index("--task_params") + 1]) == {"modulus": modulus, "use_length_marker": marker}
            assert argv[argv.index("--max_steps") + 1] == "60000" and argv[argv.index("--weight_decay") + 1] == "0.1"
            assert argv[argv.index("--learning_rate") + 1] == "3e-3" and argv[argv.index("--num_train") + 1] == "100000"
            assert ("--curriculum_accuracy" in argv) == (candidate == "mod7-curriculum-60k")
        assert study.grid_models(grid) == list(study.V6_MODELS) and study.protocol_version(grid) == "v9"
    for withdrawn in ("mano", "mano-no-marker"):
        with pytest.raises(ValueError, match=f"{withdrawn} is withdrawn by protocol v9.*run {withdrawn.replace('mano', 'mano-v9')}"):
            study.check_not_withdrawn(withdrawn)


def test_depo_v6_searches_v1s_data_with_every_seen_k_from_the_first_step_and_its_grid_trains_the_choice(tmp_path):
    """Protocol v6: v1's DEPO data (the same prompts, splits and test prompts), no size curriculum, each candidate its
    own step budget, which the grid trains the chosen recipe for; declared as v6, compiled like every run from v5."""
    v1_data = study.GRIDS["depo"]["data"]
    for candidate, steps, rate in (("mixed", 15_000, "3e-3"), ("mixed-30k", 30_000, "3e-3"), ("mixed-30k-lr1e-3", 30_000, "1e-3")):
        argv = study_search.search_args("depo-v6", candidate, "default", tmp_path / "m", tmp_path / "o")
        for flag in ("--task", "--task_params", "--num_train", "--num_test_per_size", "--task_seed"):
            assert argv[argv.index(flag) + 1] == v1_data[v1_data.index(flag) + 1], flag
        assert argv[argv.index("--train_sizes") + 1:argv.index("--train_sizes") + 5] == ["1", "2", "3", "4"]
        assert "--curriculum_accuracy" not in argv and argv[argv.index("--max_steps") + 1] == str(steps)
        assert argv[argv.index("--learning_rate") + 1] == rate and argv.count("--learning_rate") == 1
        assert argv[argv.index("--compile_model") + 1] == "true" and argv[argv.index("--seed") + 1] == str(study.SEARCH_SEED)
    assert study.protocol_version("depo-v6") == "v6" and study.protocol_version("depo") == "v1"
    with pytest.raises(ValueError, match="depo-v6 grid takes its recipe from a search"):
        study.training_args("depo-v6", "anira-o", 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
    choose("depo-v6", tmp_path, "mixed-30k")
    saved = json.loads(study_search.search_path("depo-v6", tmp_path).read_text())
    assert saved["steps"] == {"mixed": 15_000, "mixed-30k": 30_000, "mixed-30k-lr1e-3": 30_000}
    assert "| mixed-30k | default | 30,000 |" in study_search.format_search("depo-v6", tmp_path)  # declared (no steps recorded)
    argv = study.training_args("depo-v6", "anira-o", 2, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
    assert argv[argv.index("--max_steps") + 1] == "30000" and "--curriculum_accuracy" not in argv
    assert argv[argv.index("--penalty_gate_accuracy") + 1] == "0.9" and argv[argv.index("--seed") + 1] == "2"
    config, _ = study.model_config("depo-v6", "anira-o")
    assert config.max_position_embeddings == 256 and config.depth_mode == "online"


def test_a_searched_grids_run_refuses_to_train_until_its_search_has_chosen_then_trains_the_choice(tmp_path):
    with pytest.raises(ValueError, match=r"mano-v9 grid takes its recipe from a search.*no result.*study.py search --task mano-v9"):
        study.training_args("mano-v9", "anira-o", 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
    record("mano-v9", tmp_path, "mod11-60k", "marker", {1: 1.0, 2: 1.0})
    with pytest.raises(ValueError, match="1 of 6 candidate runs done"):
        study.training_args("mano-v9", "anira-o", 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
    winner = choose("mano-v9", tmp_path, "mod7-60k")
    saved = json.loads(study_search.search_path("mano-v9", tmp_path).read_text())
    assert saved["choice"]["candidate"] == winner and saved["pending"] == [] and len(saved["results"]) == 6
    assert saved["seed"] == study.SEARCH_SEED and "validation" in saved["score"]
    for grid, marker in (("mano-v9", True), ("mano-v9-no-marker", False)):
        argv = study.training_args(grid, "anira-e", 1, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
        params = json.loads(argv[argv.index("--task_params") + 1])
        assert params == {"modulus": 7, "use_length_marker": marker}
        assert argv[argv.index("--weight_decay") + 1] == "0.1" and argv[argv.index("--seed") + 1] == "1"
        assert argv[argv.index("--max_steps") + 1] == "60000"
    # a quick search does not stand for a real one, nor a real one for a quick one
    with pytest.raises(ValueError, match="study.py search --task mano-v9 --quick"):
        study.training_args("mano-v9", "anira-e", 1, tmp_path / "m", tmp_path / "o", quick=True, study_dir=tmp_path)
    # a result recorded for a recipe the code no longer declares is not read: that run is pending again
    stale = study_search._recipe_record("mano-v9", "mod11-60k", "marker") | {"seed": 5}
    record("mano-v9", tmp_path, "mod11-60k", "marker", {1: 1.0, 2: 1.0}, recipe=stale)
    assert study_search.search_state("mano-v9", tmp_path)["pending"] == [("mod11-60k", "marker")]
    with pytest.raises(ValueError, match="5 of 6 candidate runs done"):
        study.training_args("mano-v9", "anira-e", 1, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)


def fake_processes(monkeypatch, study_dir, fail=(), seconds=0.05):
    """subprocess.run standing in for `study.py search-one` (records the candidate's line, the last candidate the only
    one above the bar) and `study.py one`; a search run named in `fail` exits 1 and records nothing. Returns the
    (kind, task, name, start, end) of every process, in start order."""
    import threading
    import time

    events, lock = [], threading.Lock()

    def fake_run(command, env, process):
        kind, task = command[2], command[command.index("--task") + 1]
        if kind == "search-one":
            candidate, variant = command[command.index("--candidate") + 1], command[command.index("--variant") + 1]
            name = f"{candidate}-{variant}"
        else:
            name = f"{command[command.index('--model') + 1]}-seed{command[command.index('--seed') + 1]}"
        start = time.monotonic()
        time.sleep(seconds)
        end = time.monotonic()  # a search run's last act is recording its line: once it is there, others may start
        if kind == "search-one" and name not in fail:
            last = list(study.SEARCHES[task]["candidates"])[-1]
            record(task, study_dir, candidate, variant, {1: 1.0, 2: 0.95 if candidate == last else 0.5})
        with lock:
            events.append((kind, task, name, start, end))
        return 1 if name in fail else 0

    fake_study_processes(monkeypatch, fake_run)
    return events


def test_run_queues_a_searched_grids_search_first_and_its_runs_after_the_choice(tmp_path, monkeypatch, capsys):
    """`run --task depo-v8 depo`: depo-v8's search runs first; depo-v8's runs wait for the search's choice while the
    free process takes depo's; every run of depo-v8 starts after the last search run ended."""
    from conftest import load_script

    events = fake_processes(monkeypatch, tmp_path)
    results = load_script("study").main(["run", "--task", "depo-v8", "depo", "--models", "fixed-1", "--study_dir",
                                         str(tmp_path), "--work_dir", str(tmp_path / "w"), "--processes", "2"])
    assert [(task, seed, code) for task, _, seed, code in results] == [(t, s, 0) for t in ("depo-v8", "depo") for s in (0, 1, 2)]
    search_runs = [e for e in events if e[0] == "search-one"]
    grid_runs = [e for e in events if e[0] == "one" and e[1] == "depo-v8"]
    assert len(search_runs) == len(study.SEARCHES["depo-v8"]["candidates"]) and len(grid_runs) == 3
    assert min(e[3] for e in grid_runs) >= max(e[4] for e in search_runs)  # after the choice
    # while the search's last run trained, the other process took depo's runs (queued after depo-v8's)
    assert any(e[1] == "depo" and e[3] < max(e[4] for e in search_runs) for e in events)
    assert study_search.search_state("depo-v8", tmp_path)["choice"]["candidate"] == "hidden-curriculum"
    assert (tmp_path / "w" / "depo-v8" / "search" / "logs" / "single-curriculum-default.log").exists()
    assert "depo-v8: 3 runs pending (after its search)" in capsys.readouterr().out


def test_a_search_that_fails_leaves_its_grids_runs_unstarted_and_the_command_says_so(tmp_path, monkeypatch, capsys):
    from conftest import load_script

    events = fake_processes(monkeypatch, tmp_path, fail={"mod11-60k-marker"})
    with pytest.raises(SystemExit, match="not started.*mano-v9/fixed-1-seed0.*mano-v9-no-marker/fixed-1-seed0"):
        load_script("study").main(["run", "--task", "mano-v9", "mano-v9-no-marker", "--models", "fixed-1", "--seeds", "0",
                                   "--study_dir", str(tmp_path), "--work_dir", str(tmp_path / "w"), "--processes", "2"])
    # the search ran once for both grids, every declared run but the failed one recorded; no grid run started
    assert sorted(e[2] for e in events) == sorted(f"{c}-{v}" for c in study.SEARCHES["mano-v9"]["candidates"]
                                                  for v in study.SEARCHES["mano-v9"]["variants"])
    assert study_search.search_state("mano-v9", tmp_path)["pending"] == [("mod11-60k", "marker")]
    out = capsys.readouterr().out
    assert "mano-v9 search mod11-60k-marker: FAILED" in out and "mano-v9 fixed-1-seed0: not started" in out


def test_the_search_launches_its_pending_runs_several_at_a_time_and_skips_recorded_ones(tmp_path, monkeypatch):
    import threading
    import time

    import torch

    launched, running, peak, lock = [], [0], [0], threading.Lock()

    def fake_run(command, env, process):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        launched.append(command)
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return 0

    fake_study_processes(monkeypatch, fake_run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    record("clrs-dfs", tmp_path, "n4-7", "default", {4: 0.5})
    state = study_search.run_search("clrs-dfs", tmp_path / "work", tmp_path)
    jobs = [c[c.index("search-one") + 1:c.index("search-one") + 7] for c in launched]
    assert sorted(jobs) == sorted(["--task", "clrs-dfs", "--candidate", name, "--variant", "default"]
                                  for name in ("n3-6", "n3-6-mixed", "n4-7-lr1e-3", "n3-6-lr1e-3"))
    assert 2 <= peak[0] <= 4 and all(c[c.index("--study_dir") + 1] == str(tmp_path) for c in launched)
    assert state["pending"] == [(c, "default") for c in ("n3-6", "n3-6-mixed", "n4-7-lr1e-3", "n3-6-lr1e-3")]
    assert state["choice"] is None  # fake runs record nothing


def test_a_quick_search_run_trains_the_search_model_and_scores_the_validation_split_only(tmp_path, monkeypatch):
    """search_one (what `examples/study.py search` runs per candidate) on one declared candidate, quick: fixed-6 trained
    with the search seed, every scored prompt a validation prompt, and once the search has chosen, `run`'s arguments."""
    from anira_study import evaluation

    scored = []
    real = evaluation.generated_correct

    def spy(model, rows, tokenizer, batch_size=64):
        scored.extend(rows)
        return real(model, rows, tokenizer, batch_size)

    monkeypatch.setattr(evaluation, "generated_correct", spy)
    monkeypatch.setitem(study.SEARCHES, "mano-v9", {**study.SEARCHES["mano-v9"], "variants": {"no-marker": {"use_length_marker": False}},
                                                     "candidates": {"mod7-60k": study.SEARCHES["mano-v9"]["candidates"]["mod7-60k"]}})
    entry = study_search.search_one("mano-v9", "mod7-60k", "no-marker", tmp_path / "work", tmp_path / "study", quick=True)
    from anira_study.evaluation import load_eval_data
    from anira_study.reproduce import QUICK

    folder = tmp_path / "work" / "mano-v9" / "search" / "mod7-60k-no-marker"
    data, sizes = load_eval_data(folder)
    assert {r["prompt"] for r in scored} == set(data["validation"]["prompt"])  # the whole validation split, nothing else
    assert not {r["prompt"] for r in scored} & set(data["test_seen"]["prompt"])
    assert json.loads((folder / "config.json").read_text())["max_depth"] == 6 and entry["steps"] == int(QUICK["--max_steps"])
    argv = entry["train_args"]
    assert argv[argv.index("--seed") + 1] == str(study.SEARCH_SEED)
    assert sorted(int(c) for c in entry["validation"]) == sizes == [1, 2, 3, 4]
    assert all(0.0 <= v["exact"] <= 1.0 and v["prompts"] > 0 for v in entry["validation"].values())
    saved = json.loads(study_search.search_path("mano-v9", tmp_path / "study", quick=True).read_text())
    assert saved["choice"]["candidate"] == "mod7-60k" and saved["quick"] is True  # the only candidate: chosen whatever it scored
    assert "mod7-60k" in study_search.format_search("mano-v9", tmp_path / "study", quick=True)
    argv = study.training_args("mano-v9-no-marker", "anira-o", 0, tmp_path / "m", tmp_path / "o", quick=True,
                               study_dir=tmp_path / "study")
    assert json.loads(argv[argv.index("--task_params") + 1]) == {"modulus": 7, "use_length_marker": False}
    again = study_search.search_one("mano-v9", "mod7-60k", "no-marker", tmp_path / "work", tmp_path / "study", quick=True)
    assert again["train_seconds"] == entry["train_seconds"]  # resumable: a finished run is scored, not trained again


@pytest.mark.slow
def test_a_quick_run_of_a_searched_grid_trains_its_choice_and_records_it(tmp_path):
    """`run --task mano-v9-no-marker --quick` after a (synthetic) quick search: the chosen recipe, evaluated and recorded
    as a DEPO run is."""
    choose("mano-v9", tmp_path / "study", "mod7-60k", quick=True)
    summary = study.train_and_evaluate("mano-v9-no-marker", "anira-e", 0, tmp_path / "work", tmp_path / "study", quick=True)
    argv = summary["train_args"]
    assert json.loads(argv[argv.index("--task_params") + 1]) == {"modulus": 7, "use_length_marker": False}
    runs = json.loads((tmp_path / "study" / "mano-v9-no-marker" / "runs.json").read_text())
    assert [(r["model"], r["seed"]) for r in runs] == [("anira-e", 0)] and summary["train_sizes"] == [1, 2, 3, 4]
    assert set(summary["report"]["test_extrapolation"]["per_complexity"]) == {5, 6}


def _record_one(args):
    study_dir, candidate, variant = args
    record("mano", study_dir, candidate, variant, {1: 0.5})


def test_search_runs_finishing_together_in_separate_processes_all_keep_their_line(tmp_path):
    import multiprocessing

    jobs = [(tmp_path, c, v) for c in study.SEARCHES["mano"]["candidates"] for v in study.SEARCHES["mano"]["variants"]]
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        pool.map(_record_one, jobs)
    saved = json.loads(study_search.search_path("mano", tmp_path).read_text())
    assert len(saved["results"]) == len(jobs) and saved["pending"] == [] and saved["rule"] == study_search.SELECTION_RULE
    assert saved["choice"]["candidate"] == "mod23" and not saved["choice"]["passed"]  # all tied at 0.5: the first


def test_once_a_candidate_passes_after_every_earlier_one_failed_the_later_ones_are_not_needed(tmp_path):
    """Amendment of 2026-12-07: the rule's choice is decided as soon as a candidate passes in every variant and every
    earlier one has failed in some; the later candidates cannot change it and are listed as not needed. Until then
    (an earlier candidate's numbers missing, or a passing candidate missing a variant) nothing is decided."""
    record("mano", tmp_path, "mod11", "marker", {1: 1.0, 2: 1.0})
    record("mano", tmp_path, "mod11", "no-marker", {1: 0.95, 2: 0.9})
    state = study_search.search_state("mano", tmp_path)
    assert state["choice"] is None and state["not_needed"] == []  # mod23, declared first, has no numbers yet
    record("mano", tmp_path, "mod23", "marker", {1: 1.0, 2: 1.0})
    assert study_search.search_state("mano", tmp_path)["choice"] is None  # mod23 could still pass
    saved = record("mano", tmp_path, "mod23", "no-marker", {1: 0.95, 2: 0.85})
    assert saved["choice"]["candidate"] == "mod11" and saved["choice"]["passed"] and saved["pending"] == []
    assert saved["not_needed"] == ["mod7/marker", "mod7/no-marker", "mod7-curriculum/marker", "mod7-curriculum/no-marker"]
    assert "Not trained to the end" in study_search.format_search("mano", tmp_path)
    # the choice is the one select_recipe makes with every candidate's numbers in, whatever the later ones score
    for candidate in ("mod7", "mod7-curriculum"):
        for variant in ("marker", "no-marker"):
            record("mano", tmp_path, candidate, variant, {1: 1.0, 2: 1.0})
    assert study_search.search_state("mano", tmp_path)["choice"]["candidate"] == "mod11"
    argv = study.training_args("mano", "anira-e", 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
    assert json.loads(argv[argv.index("--task_params") + 1])["modulus"] == 11
    # no candidate passing: nothing is decided before every run is in
    for candidate in ("n4-7", "n3-6"):
        record("clrs-dfs", tmp_path, candidate, "default", {4: 0.5})
    state = study_search.search_state("clrs-dfs", tmp_path)
    assert state["choice"] is None and state["not_needed"] == []
    assert state["pending"] == [("n3-6-mixed", "default"), ("n4-7-lr1e-3", "default"), ("n3-6-lr1e-3", "default")]


def test_the_clrs_searches_try_v2s_candidates_at_1e_3_only_after_v2s_own(tmp_path):
    """Amendment of 2026-12-07 (before any CLRS run): each CLRS search declares v2's three candidates, then n4-7 and
    n3-6 at learning rate 1e-3 (otherwise the same); where one of v2's passes the choice is v2's, the new ones never
    trained; where none does, they decide."""
    for search in ("clrs-topological_sort", "clrs-dfs"):
        assert list(study.SEARCHES[search]["candidates"]) == ["n4-7", "n3-6", "n3-6-mixed", "n4-7-lr1e-3", "n3-6-lr1e-3"]
        for candidate, twin in (("n4-7-lr1e-3", "n4-7"), ("n3-6-lr1e-3", "n3-6")):
            argv = study_search.search_args(search, candidate, "default", tmp_path / "m", tmp_path / "o")
            same = study_search.search_args(search, twin, "default", tmp_path / "m", tmp_path / "o")
            assert argv[argv.index("--learning_rate") + 1] == "1e-3" and argv.count("--learning_rate") == 1
            assert same[same.index("--learning_rate") + 1] == "3e-3"
            rest = lambda a: [x for i, x in enumerate(a) if "--learning_rate" not in a[max(i - 1, 0):i + 1]]  # noqa: E731
            assert rest(argv) == rest(same)
    record("clrs-dfs", tmp_path, "n3-6", "default", {3: 0.95, 4: 0.9})
    record("clrs-dfs", tmp_path, "n4-7", "default", {4: 0.5})
    state = study_search.search_state("clrs-dfs", tmp_path)
    assert state["choice"]["candidate"] == "n3-6"
    assert state["not_needed"] == [(c, "default") for c in ("n3-6-mixed", "n4-7-lr1e-3", "n3-6-lr1e-3")]
    for candidate in ("n4-7", "n3-6", "n3-6-mixed"):
        record("clrs-topological_sort", tmp_path, candidate, "default", {4: 0.5})
    record("clrs-topological_sort", tmp_path, "n4-7-lr1e-3", "default", {4: 0.95, 5: 0.92})
    assert study_search.search_state("clrs-topological_sort", tmp_path)["choice"]["candidate"] == "n4-7-lr1e-3"


def test_the_runner_stops_a_search_run_the_choice_no_longer_needs_and_starts_the_grid(tmp_path, monkeypatch, capsys):
    """`run --task depo-v8` with two processes: `single-curriculum` passes while `single-mixed` trains; the runner
    stops `single-mixed`, never starts `hidden-curriculum`, and the grid's runs train `single-curriculum`'s recipe."""
    import time

    launched, stopped = [], {}

    def fake_run(command, env, process):
        kind = command[2]
        name = command[command.index("--candidate") + 1] if kind == "search-one" else command[command.index("--seed") + 1]
        launched.append((kind, name))
        if kind == "search-one" and name == "single-curriculum":
            time.sleep(0.2)
            record("depo-v8", tmp_path, "single-curriculum", "default", {1: 1.0, 2: 0.95, 3: 0.92, 4: 0.9})
        elif kind == "search-one":  # trains until stopped (at most 20 s)
            stopped[name] = process.stopped.wait(20)
            return -15
        return 0

    fake_study_processes(monkeypatch, fake_run)
    start = time.monotonic()
    results = study.run_grids(["depo-v8"], ["fixed-1"], [0, 1, 2], tmp_path / "w", tmp_path, processes=2)
    assert time.monotonic() - start < 10 and stopped == {"single-mixed": True}
    assert ("search-one", "hidden-curriculum") not in launched
    assert [(seed, code) for _, _, seed, code in results] == [(0, 0), (1, 0), (2, 0)]
    saved = json.loads(study_search.search_path("depo-v8", tmp_path).read_text())
    assert saved["choice"]["candidate"] == "single-curriculum"
    assert saved["not_needed"] == ["single-mixed/default", "hidden-curriculum/default"]
    out = capsys.readouterr().out
    assert "single-mixed-default: stopped: no longer needed" in out
    assert "hidden-curriculum-default: not started: no longer needed" in out
    argv = study.training_args("depo-v8", "fixed-1", 0, tmp_path / "m", tmp_path / "o", study_dir=tmp_path)
    assert argv[argv.index("--max_steps") + 1] == "15000" and "--curriculum_accuracy" in argv


def test_every_pending_search_runs_before_the_grids_that_wait_on_searches(tmp_path, monkeypatch):
    """One queue of a ready grid and two searched ones: the ready grid's runs first, then both searches' runs (so the
    second search's choice does not wait for the first grid's long runs), then the searched grids' runs, each once its
    search has chosen; the results come back in the order the grids were named."""
    launched = []

    def fake_run(command, env, process):
        kind, task = command[2], command[command.index("--task") + 1]
        launched.append((kind, task))
        if kind == "search-one":  # every candidate passes: the first decides each search, the rest are not needed
            candidate, variant = (command[command.index(flag) + 1] for flag in ("--candidate", "--variant"))
            record(task, tmp_path, candidate, variant, {1: 1.0, 2: 0.95})
        return 0

    fake_study_processes(monkeypatch, fake_run)
    results = study.run_grids(["mano-v9", "depo", "clrs-dfs"], ["fixed-1"], [0], tmp_path / "w", tmp_path, processes=1)
    assert launched == [("one", "depo"), ("search-one", "mano-v9"), ("search-one", "mano-v9"), ("search-one", "clrs-dfs"),
                        ("one", "mano-v9"), ("one", "clrs-dfs")]
    assert [(task, code) for task, _, _, code in results] == [("mano-v9", 0), ("depo", 0), ("clrs-dfs", 0)]


def test_depo_v8_trains_v7s_data_at_learning_rate_1e_3_and_v6_v7_are_withdrawn(tmp_path):
    """Protocols v7 and v8: DEPO with nothing solved in the prompt (v6's six queries sharing k give the answer away):
    one query per sample at batch 128, or six with the earlier answers hidden at batch 64 (v8's third candidate), the
    curriculum candidates unlocking on whole answers; v8 at learning rate 1e-3 for 15,000 steps. v6 and v7 are refused
    by `run`, `search`, `one` and `search-one`, naming what replaced them."""
    from anira_tasks import generate_sample

    for candidate, queries, batch, curriculum in (("single-curriculum", 1, "128", True), ("single-mixed", 1, "128", False),
                                                  ("hidden-curriculum", 6, "64", True)):
        argv = study_search.search_args("depo-v8", candidate, "default", tmp_path / "m", tmp_path / "o")
        params = json.loads(argv[argv.index("--task_params") + 1])
        assert params["num_queries"] == queries and argv[argv.index("--max_steps") + 1] == "15000"
        assert argv[argv.index("--per_device_train_batch_size") + 1] == batch and argv[argv.index("--learning_rate") + 1] == "1e-3"
        assert argv.count("--per_device_train_batch_size") == 1 and argv.count("--learning_rate") == 1
        assert ("--curriculum_accuracy" in argv) == curriculum
        if curriculum:
            assert argv[argv.index("--curriculum_metric") + 1] == "answer_exact"
        sample = generate_sample("depo", 4, seed=3, **params)
        symbols = sample.prompt.split()
        assert symbols.count("<ans>") == queries and symbols[-1] == "<ans>"  # the asked query last
        assert len(symbols) == 1 + 8 + queries * (4 + 2)  # edges and questions only: no answer written in the prompt
        v7 = study_search.search_args("depo-v7", candidate if queries == 1 else "single-curriculum-60k", "default",
                                      tmp_path / "m", tmp_path / "o")
        assert v7[v7.index("--learning_rate") + 1] == "3e-3"
    assert study.protocol_version("depo-v8") == "v8" and study.grid_models("depo-v8") == study.grid_models("depo-v7")
    for withdrawn, by, replacement in (("depo-v6", "v7", "depo_leak.*run depo-v7"), ("depo-v7", "v8", "learning_rate.*run depo-v8")):
        with pytest.raises(ValueError, match=f"{withdrawn} is withdrawn by protocol {by}.*{replacement}"):
            study.run_grids([withdrawn], ["fixed-1"], [0], tmp_path / "w", tmp_path)
        with pytest.raises(ValueError, match=f"{withdrawn} is withdrawn"):
            study_search.run_search(withdrawn, tmp_path / "w", tmp_path)
        with pytest.raises(ValueError, match=f"{withdrawn} is withdrawn"):  # one run alone (`study.py one`, `search-one`)
            study.train_and_evaluate(withdrawn, "fixed-1", 0, tmp_path / "w", tmp_path)
        with pytest.raises(ValueError, match=f"{withdrawn} is withdrawn"):
            study_search.search_one(withdrawn, next(iter(study.SEARCHES[withdrawn]["candidates"])), "default", tmp_path / "w", tmp_path)


def test_a_grid_whose_search_chose_below_the_bar_waits_for_a_protocol_decision(tmp_path, monkeypatch, capsys):
    """Amendment of 2026-12-07: when no candidate reaches the bar, the rule still chooses (the highest minimum), but the
    grid's runs start only once a protocol version has accepted that choice (`study.RUN_BELOW_BAR`); the queue goes on
    with the other grids meanwhile."""
    launched = []

    def fake_run(command, env, process):
        kind, task = command[2], command[command.index("--task") + 1]
        launched.append((kind, task))
        if kind == "search-one":
            candidate = command[command.index("--candidate") + 1]
            record(task, tmp_path, candidate, "default", {1: 0.6, 2: 0.3})
        return 0

    fake_study_processes(monkeypatch, fake_run)
    results = study.run_grids(["depo-v8", "depo"], ["fixed-1"], [0, 1], tmp_path / "w", tmp_path, processes=2)
    assert [(task, code) for task, _, _, code in results] == [("depo-v8", None)] * 2 + [("depo", 0)] * 2
    assert launched.count(("search-one", "depo-v8")) == 3 and ("one", "depo-v8") not in launched
    assert "anira" not in capsys.readouterr().out.split("below the bar")[0][-60:]  # the message names the grid's run
    assert study_search.search_state("depo-v8", tmp_path)["choice"]["passed"] is False
    assert "below the bar" in study.waits_for_decision("depo-v8", tmp_path)
    out = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: out.append(" ".join(map(str, a))))
    study.run_grids(["depo-v8"], ["fixed-1"], [0], tmp_path / "w", tmp_path, processes=1)  # chosen already: not queued
    assert any("depo-v8: not started: its search chose single-curriculum below the bar" in line for line in out)
    assert ("one", "depo-v8") not in launched
    monkeypatch.setitem(study.RUN_BELOW_BAR, "depo-v8", ("v8", 0.4))  # accepted above a floor it does not reach
    assert "below v8's floor for running there (minimum 0.30 < 0.4)" in study.waits_for_decision("depo-v8", tmp_path)
    study.run_grids(["depo-v8"], ["fixed-1"], [0], tmp_path / "w", tmp_path, processes=1)
    assert ("one", "depo-v8") not in launched
    monkeypatch.setitem(study.RUN_BELOW_BAR, "depo-v8", ("v8", 0.3))
    assert study.waits_for_decision("depo-v8", tmp_path) is None
    study.run_grids(["depo-v8"], ["fixed-1"], [0], tmp_path / "w", tmp_path, processes=1)
    assert ("one", "depo-v8") in launched


def test_the_learning_rate_diagnostics_train_a_search_run_with_only_the_named_changes(tmp_path):
    """experiments/learning_rate/diagnose.py: the search run's arguments, with the sizes, steps, seed, task parameters
    and depth asked for, and the flags after `--` taking the candidate's place (argparse keeps a repeated flag's last)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("diagnose", study.REPO / "experiments" / "learning_rate" / "diagnose.py")
    diagnose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagnose)
    base = study_search.search_args("depo-v7", "single-mixed", "default", tmp_path / "d" / "config", tmp_path / "d")
    argv = diagnose.diagnostic_argv("depo-v7", "single-mixed", "default", "fixed-6", 3000, tmp_path / "d", sizes=[1],
                                    max_depth=2, seed=7, task_params={"num_queries": 6}, extra=["--learning_rate", "1e-3"])
    changed = {"--train_sizes": ["1"], "--max_steps": ["3000"], "--seed": ["7"]}
    assert argv[argv.index("--train_sizes") + 1:argv.index("--extrapolation_sizes")] == ["1"]
    assert all(argv[argv.index(flag) + 1] == value[0] for flag, value in changed.items())
    assert json.loads(argv[argv.index("--task_params") + 1]) == {**json.loads(base[base.index("--task_params") + 1]), "num_queries": 6}
    assert argv[-4:] == ["--config_overrides", "max_depth=2", "--learning_rate", "1e-3"]
    unchanged = [(flag, base[i + 1]) for i, flag in enumerate(base) if flag.startswith("--")
                 and flag not in (*changed, "--task_params", "--model_name_or_path", "--output_dir")]
    assert all(argv[argv.index(flag) + 1] == value for flag, value in unchanged)  # the candidate's, where not named
    from transformers import HfArgumentParser, TrainingArguments

    from anira_study.arguments import DataArguments, ModelArguments, OutputArguments, ScheduleArguments

    parsed = HfArgumentParser((ModelArguments, DataArguments, ScheduleArguments, TrainingArguments, OutputArguments)
                              ).parse_args_into_dataclasses(args=argv)
    assert parsed[3].learning_rate == 1e-3 and parsed[3].max_steps == 3000  # what trains: the flag after `--`

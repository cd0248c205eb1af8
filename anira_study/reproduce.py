"""Retrain a named model from scratch with the recipe stored beside it, and write its folder.

    python examples/reproduce.py anira-o-depo                  # train (or resume), evaluate, write hub_configs/anira-o-depo
    python examples/reproduce.py anira-o-depo --quick          # the same pipeline in a couple of minutes (for tests)
    python examples/reproduce.py anira-o-depo --seed 0         # the recipe with another training seed, into outputs/

A recipe (`hub_configs/<name>/recipe.json`, written by `hub_configs/build.py`) is the list of
`examples/train.py` arguments that made the model, so reproducing a model *is* running `train.py` with
them: seed, data, sizes, steps, batch, learning rate and penalty schedule included. `reproduce`:

1. trains into `work_dir` (default `outputs/reproduce/<name>`), saving a checkpoint every
   `checkpoint_steps`; run it again after an interruption and it resumes from the last checkpoint;
2. on a GPU, trains in bf16 (`batch_scale` multiplies the batch and, linearly, the learning rate: 1 by
   default, so the recipe is the same everywhere);
3. evaluates the result on the test splits (read once, here), and for tasks with per-token execution
   annotations also splits depth variance between static and execution-state features;
4. writes the folder: weights (`model.safetensors`), config, generation config, tokenizer, the model
   card with the results table, the exact command and the machine, `report.json`, the recipe, and the
   training-dynamics figure.

A recipe may have **stages** (`"stages": [{"train_args": [...]}, ...]`): a model trained longer than one
session of its machine allows is trained in pieces, each a full `train.py` run that starts from the previous
stage's weights with a fresh optimizer and learning-rate schedule (a warm restart). A stage lists only the
`--flag value` pairs it changes (steps, learning rate, warm-up, training rows); everything else, seed included,
is the first stage's. Stage k trains in `work_dir/stage<k>`, so an interruption costs one checkpoint in any
stage; the card shows every stage's command, and the training-dynamics figure runs over all of them.

A folder carries its training's probe log (`training_log.jsonl`, steps counted over all stages) beside the
report, so the record of a model does not live only on the machine that trained it. `continue_folder` uses that:
when a recipe gains a stage after its model shipped and the earlier stages' checkpoints are gone (a new machine,
a cleared disk), the stages the folder's report lists as finished are taken from the folder (its weights start
the next stage; its log and wall time are carried over) instead of being retrained; only the new stages train.
The report records the machine of every stage (`stage_machines`), the git commit and package version that trained the
weights (`training_commit`, `training_commit_dirty`, `package_version`; each stage's commit in `stage_commits`), and how
many first steps the log lacks
(`log_missing_until`: a folder continued from one that kept no log), so a folder continued twice still names every
machine and still shades the lost steps. It refuses a folder whose finished stages were trained with other
arguments than the recipe's. Retraining from
scratch (the default) gives the same model, with the whole log; the card says which of the two made it.

`seed` trains the recipe with another training seed (the model's initialisation and the order of the training
data; the task data, so every split, stays the same): a shipped model is one run, and whether its findings
survive another seed is a question every study should ask (`experiments/seeds/`). Such a run never
writes the named folder unless `target` says so: by default it goes to
`outputs/reproduce/<name>-seed<seed>/folder`, with the changed seed in its recipe, card and command.
"""

import json
import math
import platform
import shlex
import shutil
import time
from pathlib import Path

RECIPE_FILE = "recipe.json"
REPORT_FILE = "report.json"
TRAINING_LOG_FILE = "training_log.jsonl"
PROVENANCE_FILE = "provenance.json"  # in a stage's training folder: the commit and package version that trained it
QUICK = {"--max_steps": "30", "--num_train": "1000", "--num_test_per_size": "10", "--probe_steps": "15", "--save_steps": "15",
         "--num_validation": "16", "--probe_per_size": "16", "--compile_model": "false"}  # minutes: no compilation


def load_recipe(folder: Path) -> dict:
    path = Path(folder) / RECIPE_FILE
    if not path.exists():
        raise ValueError(f"{folder} has no {RECIPE_FILE}: it is not a named model with a stored recipe")
    return json.loads(path.read_text())


def _set(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with `flag value` replaced (or appended)."""
    if flag in argv:
        argv = list(argv)
        argv[argv.index(flag) + 1] = value
        return argv
    return [*argv, flag, value]


def _get(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def with_seed(recipe: dict, seed: int) -> dict:
    """The recipe with the training seed `seed` in place of its own (said in its notes)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    recipe = dict(recipe)
    stored = _get(recipe["train_args"], "--seed")
    recipe["train_args"] = _set(recipe["train_args"], "--seed", str(seed))
    change = f"Trained with --seed {seed} in place of the stored recipe's {stored}."
    recipe["notes"] = f"{change} {recipe['notes']}" if recipe.get("notes") else change
    return recipe


def with_compile_model(recipe: dict, compile_model: bool) -> dict:
    """The recipe trained with the compiled training forward (`compile_model` True) or the eager one, whatever it
    stored: how it executes, not what it computes (equal within float rounding; docs/training.md). Said in its notes."""
    recipe, value = dict(recipe), str(compile_model).lower()
    stored = _get(recipe["train_args"], "--compile_model") or "false"
    recipe["train_args"] = _set(recipe["train_args"], "--compile_model", value)
    if stored != value:
        change = f"Trained with --compile_model {value} in place of the stored recipe's {stored}."
        recipe["notes"] = f"{change} {recipe['notes']}" if recipe.get("notes") else change
    return recipe


def default_compile_model(recipe: dict, base_config, cuda: bool) -> tuple[bool, str]:
    """Whether a retraining takes the compiled training forward when neither the caller nor `--quick` decides, and why:
    yes on a CPU with a C++ compiler (inductor builds its kernels with one) when every stage's model compiles as one
    graph and the recipe asks for no `--compile_layers`; the eager forward otherwise, and on a GPU, where the compiled
    path has not been run yet (`ANIRA_TEST_DEVICE=cuda pytest tests/test_compile_model.py` checks it there)."""
    import os
    import shutil

    from .trainer import whole_forward_problem

    if cuda:
        return False, "on a GPU the compiled training forward is untested: eager"
    if _get(recipe["train_args"], "--compile_layers") == "true":
        return False, "the recipe compiles its layers (--compile_layers): eager forward"
    problems = [p for p in map(whole_forward_problem, stage_configs(recipe, base_config)) if p]
    if problems:
        return False, f"its model does not compile as one graph ({problems[0]}): eager"
    if not any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "c++", "clang++") if c):
        return False, "no C++ compiler on this machine (inductor needs one): eager"
    return True, "compiled: every stage's model compiles as one graph and a C++ compiler is here"


# A continuation stage always starts from the previous stage's weights with the first stage's seed.
STAGE_FIXED_FLAGS = ("--model_name_or_path", "--from_scratch", "--output_dir", "--resume_from_checkpoint", "--seed")


def stage_overrides(recipe: dict) -> list[list[str]]:
    """The `--flag value` pairs each stage changes: `[]` for the first stage, then one list per entry of the
    recipe's `stages`. Malformed stages are refused by name."""
    stages = recipe.get("stages", [])
    if not isinstance(stages, list):
        raise ValueError(f"recipe 'stages' must be a list of {{'train_args': [...]}}, got {stages!r}")
    overrides = [[]]
    for number, stage in enumerate(stages, 2):
        args = stage.get("train_args") if isinstance(stage, dict) else None
        if (not isinstance(args, list) or not args or len(args) % 2 or not all(isinstance(a, str) for a in args)
                or not all(a.startswith("--") for a in args[::2]) or any(a.startswith("--") for a in args[1::2])):
            raise ValueError(f"recipe stage {number}: 'train_args' must be a non-empty list of '--flag value' pairs, got {args!r}")
        fixed = sorted(set(args[::2]) & set(STAGE_FIXED_FLAGS))
        if fixed:
            raise ValueError(f"recipe stage {number} may not set {', '.join(fixed)}: a stage continues the previous "
                             "stage's weights with the first stage's seed")
        overrides.append(args)
    return overrides


def keep_stage(before: tuple[float, float], after: tuple[float, float],
               min_rho: float | None = None) -> tuple[bool, str]:
    """Whether a continuation stage is kept, and why: `before` and `after` are (probe accuracy at the largest
    seen size, rho(depth, complexity)) on the validation split, rho NaN when the depth is constant. Kept when the
    accuracy rose; on a tie (the same count of answer tokens right), when rho rose; a fixed-depth model's tie is
    not kept. With `min_rho`, an adaptive model's stage whose rho is below it is not kept whatever its accuracy
    (both targets at once). `experiments/brevo_accuracy/keep_rule.py` measures the pairs and says why
    accuracy comes first and when the tie-break and `min_rho` were added."""
    (accuracy_before, rho_before), (accuracy_after, rho_after) = before, after
    if min_rho is not None and not math.isnan(rho_after) and rho_after < min_rho:
        return False, f"rho {rho_after:.3f} is below the floor {min_rho:.2f}"
    if accuracy_after != accuracy_before:
        verb = "rose" if accuracy_after > accuracy_before else "fell"
        return accuracy_after > accuracy_before, f"accuracy {verb} ({accuracy_before:.4f} -> {accuracy_after:.4f})"
    if math.isnan(rho_before) or math.isnan(rho_after):
        return False, f"accuracy tied ({accuracy_after:.4f}) and rho is undefined"
    verb = "rose" if rho_after > rho_before else "did not rise"
    return rho_after > rho_before, f"accuracy tied ({accuracy_after:.4f}); rho {verb} ({rho_before:.3f} -> {rho_after:.3f})"


def hub_build(hub_dir: str | Path):
    """`hub_dir/build.py` as a module (the repository's `hub_configs/build.py` for a folder without one: a copy of
    some named folders elsewhere is described by it)."""
    import importlib.util

    script = Path(hub_dir) / "build.py"
    if not script.exists():
        script = Path(__file__).resolve().parents[1] / "hub_configs" / "build.py"
    spec = importlib.util.spec_from_file_location("anira_hub_build", script)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


def base_config_folder(hub_dir: str | Path, name: str, folder: Path, recipe: dict | None = None) -> Path:
    """A config-only folder (config and tokenizer) holding the named model's configuration before any stage of its
    recipe: the recipe's own `config` where it has one (the replicated study's recipes), else `hub_configs/build.py`'s
    `build_config`, what an untrained named folder holds. A trained folder's own config.json is the *last* stage's
    (a later stage's `--config_overrides` are saved in it), so the first stage must not start from it."""
    from anira_tasks import load_tokenizer
    from modeling_anira import AniraConfig

    _, variant, family = name.split("-", 2)
    tokenizer = load_tokenizer(family)
    folder.mkdir(parents=True, exist_ok=True)
    if recipe is not None and "config" in recipe:
        AniraConfig(**recipe["config"]).save_pretrained(folder)
    else:
        hub_build(hub_dir).build_config(variant, family, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def stage_configs(recipe: dict, base_config) -> list:
    """The configuration each stage of `recipe` trains: the base configuration with the `--config_overrides` and
    `--compute_penalty` of the first stage, then of every later stage in turn (a stage starts from the previous
    stage's saved config). The last one is what the trained folder's config.json holds (tested)."""
    import copy

    from .trainer import apply_config_overrides

    configs, config = [], copy.deepcopy(base_config)
    for number, pairs in enumerate(stage_overrides(recipe)):
        args = recipe["train_args"] if number == 0 else pairs
        config = apply_config_overrides(copy.deepcopy(config), _get(args, "--config_overrides"))
        if _get(args, "--compute_penalty") is not None:
            config.compute_penalty = float(_get(args, "--compute_penalty"))
        configs.append(config)
    return configs


def stage_runs(recipe: dict, work_dir: Path, quick: bool = False, batch_scale: int = 1, cuda: bool = False,
               base: Path | None = None) -> list[tuple[Path, list[str]]]:
    """One (training folder, `examples/train.py` arguments) per stage of the recipe, in order. A one-stage
    recipe trains in `work_dir` itself; stage k of a staged one in `work_dir/stage<k>`, from stage k-1's weights.
    `base`: the config-only folder the first stage starts from (`base_config_folder`) in place of the recipe's
    `--model_name_or_path`."""
    overrides = stage_overrides(recipe)
    if base is not None:
        recipe = {**recipe, "train_args": _set(recipe["train_args"], "--model_name_or_path", str(base))}
    if len(overrides) == 1:
        return [(work_dir, training_argv(recipe, work_dir, quick, batch_scale, cuda))]
    runs, previous = [], None
    for number, pairs in enumerate(overrides, 1):
        args = list(recipe["train_args"])
        for flag, value in zip(pairs[::2], pairs[1::2]):
            args = _set(args, flag, value)
        if previous is not None:
            args = _set(_set(args, "--model_name_or_path", str(previous)), "--from_scratch", "false")
        folder = work_dir / f"stage{number}"
        runs.append((folder, training_argv(recipe, folder, quick, batch_scale, cuda, train_args=args)))
        previous = folder
    return runs


def training_argv(recipe: dict, work_dir: Path, quick: bool = False, batch_scale: int = 1, cuda: bool = False,
                  train_args: list[str] | None = None) -> list[str]:
    """The `examples/train.py` arguments of one reproduction run (of the recipe's first stage unless
    `train_args` gives another stage's)."""
    argv = list(recipe["train_args"] if train_args is None else train_args)
    if quick:
        for flag, value in QUICK.items():
            argv = _set(argv, flag, value)
    if batch_scale != 1:
        argv = _set(argv, "--per_device_train_batch_size", str(int(_get(argv, "--per_device_train_batch_size") or 8) * batch_scale))
        argv = _set(argv, "--learning_rate", str(float(_get(argv, "--learning_rate") or 5e-5) * batch_scale))
    argv = _set(argv, "--output_dir", str(work_dir))
    argv = _set(argv, "--save_strategy", "steps")
    argv = _set(argv, "--save_total_limit", "2")
    if _get(argv, "--save_steps") is None:
        argv = _set(argv, "--save_steps", str(recipe.get("checkpoint_steps", 1000)))
    if cuda and recipe.get("bf16_on_gpu", True):  # the study's recipes train in float32 everywhere
        argv = _set(argv, "--bf16", "true")
    elif not cuda:
        argv = _set(argv, "--use_cpu", "true")
    if any(work_dir.glob("checkpoint-*")):
        argv = _set(argv, "--resume_from_checkpoint", "last")
    return argv


def finished_steps(work_dir: Path, max_steps: int) -> int | None:
    """The step count of a run in `work_dir` that already reached `max_steps` (its final weights are saved),
    else None. Resuming a finished run from its last checkpoint would take one more optimizer step."""
    state_file = work_dir / "trainer_state.json"
    if not (work_dir / "model.safetensors").exists() or not state_file.exists():
        return None
    steps = json.loads(state_file.read_text())["global_step"]
    return steps if steps >= max_steps else None


def _comparable(command: str) -> list[str]:
    """A stage's `train.py` command without what depends on the machine or the work folder (a one-stage model
    trained in `work_dir`, its first stage as part of a staged recipe in `work_dir/stage1`)."""
    argv = shlex.split(command)[2:]  # drop "python examples/train.py"
    dropped = {"--output_dir", "--use_cpu", "--bf16", "--resume_from_checkpoint", "--compile_model"}  # compiled: the same model
    kept, skipping = [], False
    for arg in argv:  # a flag may take several values (--train_sizes 3 4 5 6)
        skipping = arg in dropped if arg.startswith("--") else skipping
        if not skipping:
            kept.append(arg)
    return kept


def canonical_commands(recipe: dict, name: str, quick: bool = False, batch_scale: int = 1, cuda: bool = False) -> list[str]:
    """The `train.py` command of every stage as a card prints it: training in `outputs/reproduce/<name>`."""
    return ["python examples/train.py " + shlex.join(argv)
            for _, argv in stage_runs(recipe, Path("outputs/reproduce") / name, quick, batch_scale, cuda)]


def shipped_stages(folder: Path, recipe: dict, name: str, quick: bool = False, batch_scale: int = 1) -> dict:
    """What `continue_folder` takes from a named folder: the number of recipe stages its model finished, their
    step counts and wall time, their probe log (None if the folder has none) and the report's phases, date and
    machine. Refuses, by name, a folder without a trained model, one that already has every stage, and one whose
    finished stages ran other commands than the recipe's (continuing it would not be this recipe's model)."""
    from .analysis import read_probe_log
    from .model_cards import log_missing_until, stage_commits, stage_machines

    report_path = folder / REPORT_FILE
    if not (folder / "model.safetensors").exists() or not report_path.exists():
        raise ValueError(f"{folder} holds no trained model (model.safetensors and {REPORT_FILE}) to continue")
    report = json.loads(report_path.read_text())
    done = report.get("stage_steps", [report["steps"]])
    total = len(stage_overrides(recipe))
    if len(done) >= total:
        raise ValueError(f"{folder} already holds all {total} stage(s) of its recipe: nothing to continue "
                         "(add a stage to the recipe first)")
    shipped = [_comparable(c) for c in report.get("train_commands") or [report.get("train_command", "")]]
    expected = [_comparable(c) for c in canonical_commands(recipe, name, quick, batch_scale)]
    if shipped[:len(done)] != expected[:len(done)]:
        raise ValueError(f"{folder}'s model was trained with other stage commands than the first {len(done)} of its "
                         "recipe: continuing it would not reproduce the recipe; retrain it from scratch")
    log = folder / TRAINING_LOG_FILE
    # a folder written before folders kept their log has none: its stages' steps are all missing from the log
    missing = log_missing_until(report) if log.exists() else sum(done)
    return {"stages": len(done), "stage_steps": done, "train_seconds": report["train_seconds"],
            "probe_log": read_probe_log(log) if log.exists() else [], "log_missing_until": missing,
            "phases": report.get("phases") or {}, "date": report["date"], "machine": report["machine"],
            "stage_machines": stage_machines(report), "stage_commits": stage_commits(report)}


def carried_phases(earlier: dict, records: list[dict]) -> dict:
    """The training phases of a continued model whose earlier stages' log is gone: the learning phase from the
    earlier report, the end of training (final depth and accuracy, peak rho) from the new stages' log."""
    from .analysis import training_phases

    later = training_phases(records)
    if not earlier or not later:
        return earlier or later
    phases = {**earlier, "final_depth": later["final_depth"], "final_accuracy": later["final_accuracy"],
              "max_depth_seen": max(earlier["max_depth_seen"], later["max_depth_seen"]),
              "depth_reduction": earlier["depth_when_learned"] - later["final_depth"]}
    peak = earlier.get("peak_depth_spearman")
    if peak is None or math.isnan(peak) or later["peak_depth_spearman"] > peak:
        phases.update(peak_depth_spearman=later["peak_depth_spearman"], peak_depth_spearman_step=later["peak_depth_spearman_step"])
    return phases


COMMIT_ENV = "ANIRA_GIT_COMMIT"  # a copy of the tree without its .git (a remote machine) names its commit here


def provenance() -> dict:
    """What trains now: the git commit of this checkout, whether its tracked files have uncommitted changes, and the
    installed package's version (None when it is not installed). Outside a checkout, the commit `ANIRA_GIT_COMMIT`
    names (a copy of the tree sent to another machine), with "dirty" unknown (None); None when it names none."""
    import os
    import subprocess
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                                    text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = os.environ.get(COMMIT_ENV) or None, None
    try:
        version = metadata.version("anira")
    except metadata.PackageNotFoundError:
        version = None
    return {"training_commit": commit, "training_commit_dirty": dirty, "package_version": version}


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), torch {torch.__version__}"
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        name = f"{models[0]} ({len(models)} cores)" if models else name
    return f"{name} CPU, {torch.get_num_threads()} torch thread per training process, torch {torch.__version__}"


def reproduce(name: str, hub_dir: str | Path = "hub_configs", work_dir: str | Path | None = None, target: str | Path | None = None,
              quick: bool = False, batch_scale: int = 1, seed: int | None = None, continue_folder: bool = False,
              compile_model: bool | None = None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .analysis import FEATURE_GROUPS, depth_feature_importance, read_probe_log, training_phases
    from .evaluation import EVAL_SPLITS, evaluation_report, format_table, load_eval_data
    from .figures import plot_training_dynamics
    from .model_cards import trained_model_card
    from .trainer import PROBE_LOG_FILE, train_from_argv

    folder = Path(hub_dir) / name
    recipe = load_recipe(folder)
    run_name = name + ("" if seed is None else f"-seed{seed}") + ("-quick" if quick else "")
    if seed is not None:
        recipe = with_seed(recipe, seed)
    if compile_model is not None and quick:
        raise ValueError("--quick trains eager (a few minutes, which compiling would take longer than): drop "
                         "--compile_model or --quick")
    work_dir = Path(work_dir or Path("outputs/reproduce") / run_name)
    target = Path(target or (work_dir / "folder" if quick or seed is not None else folder))
    cuda = torch.cuda.is_available()
    base = base_config_folder(hub_dir, name, work_dir / "base-config", recipe)  # not the trained folder's (last stage's) config
    if compile_model is None and not quick:  # the faster path by default where it runs; --compile_model false for eager
        from modeling_anira import AniraConfig

        compile_model, why = default_compile_model(recipe, AniraConfig.from_pretrained(base), cuda)
        print(f"[reproduce] training forward: {why}", flush=True)
    if compile_model is not None:
        recipe = with_compile_model(recipe, compile_model)
    runs = stage_runs(recipe, work_dir, quick, batch_scale, cuda, base)
    stage_steps, seconds, probe_log, trained_by = [], 0.0, [], []
    now = provenance()  # taken before training: the checkout may change while it runs
    earlier = shipped_stages(folder, recipe, name, quick, batch_scale) if continue_folder else None
    if earlier:  # the folder's model is the last finished stage: the next stage starts from a copy of it
        stage_steps, seconds, probe_log = list(earlier["stage_steps"]), earlier["train_seconds"], earlier["probe_log"]
        start_from = runs[earlier["stages"] - 1][0]
        if not (start_from / "model.safetensors").exists():
            shutil.copytree(folder, start_from, dirs_exist_ok=True)
        runs_to_train = runs[earlier["stages"]:]
    else:
        runs_to_train = runs
    for folder_k, argv in runs_to_train:  # train each stage, or resume it, or skip it when it is finished
        times_file = folder_k / "wall_times.json"  # wall time over every call (a resumed run adds its part)
        times = json.loads(times_file.read_text()) if times_file.exists() else []
        steps = finished_steps(folder_k, int(_get(argv, "--max_steps")))
        if steps is None:
            start = time.time()
            steps = train_from_argv(argv).state.global_step
            times.append(time.time() - start)
            times_file.write_text(json.dumps(times))
            (folder_k / PROVENANCE_FILE).write_text(json.dumps(now))  # the call that finished this stage
        stage_file = folder_k / PROVENANCE_FILE  # absent: a stage finished before runs recorded it
        trained_by.append(json.loads(stage_file.read_text()) if stage_file.exists() else dict.fromkeys(now))
        # one figure over all stages: a stage's steps continue the previous stage's count
        probe_log += [{**record, "step": record["step"] + sum(stage_steps)} for record in read_probe_log(folder_k / PROBE_LOG_FILE)]
        stage_steps.append(steps)
        seconds += sum(times)
    work_dir = runs[-1][0]  # the last stage's folder holds the model and the task data
    model = AutoModelForCausalLM.from_pretrained(work_dir).to("cuda" if cuda else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(work_dir)
    data, train_sizes = load_eval_data(work_dir)
    task = data["train"][0]["task"]
    report = evaluation_report(model, data, tokenizer, generate=True, keep_records=task in FEATURE_GROUPS)
    importance = importance_within = None
    if task in FEATURE_GROUPS and model.config.depth_mode != "fixed":
        records = [r for split in EVAL_SPLITS if split in report for r in report[split].pop("records")]
        importance = depth_feature_importance(records, FEATURE_GROUPS[task])
        importance_within = depth_feature_importance(records, FEATURE_GROUPS[task], within_prompt=True)
    else:
        for split in EVAL_SPLITS:
            report.get(split, {}).pop("records", None)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    stage_starts = [sum(stage_steps[:k]) for k in range(1, len(stage_steps))]
    missing = earlier["log_missing_until"] if earlier else 0  # steps whose probe log an earlier folder did not keep
    phases = carried_phases(earlier["phases"], probe_log) if missing else training_phases(probe_log)
    plot_training_dynamics({name: probe_log}, target / "training_dynamics.png", {name: stage_starts},
                           log_missing_until={name: missing} if missing else None, phases={name: phases})
    with open(target / TRAINING_LOG_FILE, "w") as log:
        log.writelines(json.dumps(record) + "\n" for record in probe_log)
    command = "python examples/reproduce.py " + name + ("" if seed is None else f" --seed {seed}") + (" --quick" if quick else "")
    summary = {
        "name": name, "task": task, "train_sizes": train_sizes, "steps": sum(stage_steps), "stage_steps": stage_steps,
        "train_seconds": seconds, "machine": machine(), "command": command,
        "stage_machines": (earlier["stage_machines"] if earlier else []) + [machine()] * len(runs_to_train),
        **trained_by[-1],  # the commit and package version of the final weights' stage
        "stage_commits": (earlier["stage_commits"] if earlier else []) + [p["training_commit"] for p in trained_by],
        "log_missing_until": missing,
        "train_commands": canonical_commands(recipe, name, quick, batch_scale, cuda),
        "parameters": sum(p.numel() for p in model.parameters()), "table": format_table({name: report}),
        "phases": phases, "importance": importance,
        "importance_within_prompt": importance_within, "report": report,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if "study" in recipe:  # retrained from the replicated study's recipe (not the study's own run: no "run")
        summary["study"] = {**recipe["study"], "seed": int(_get(recipe["train_args"], "--seed")), "quick": quick,
                            "retrained_with": command}
    if earlier:
        summary["continued"] = {"stages": earlier["stages"], "date": earlier["date"], "machine": earlier["machine"],
                                "log_kept": not missing}
    (target / REPORT_FILE).write_text(json.dumps(summary, indent=2))
    (target / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
    (target / "README.md").write_text(trained_model_card(name, model.config, recipe, summary))
    print(summary["table"])
    print(f"wrote {target}")
    return summary

"""Shipping the replicated study's runs as the named models (experiments/study/PROTOCOL.md): "The model shipped in
hub_configs/anira-{e,o,fixed}-{depo,brevo} after this study is seed 0 of anira-e, anira-o and fixed-6, whatever the
other seeds give; its card reports every seed's numbers beside its own."

    python examples/study.py ship --task depo      # once seed 0 of the three has finished

`ship` copies each run's weights, config, generation config, report and probe log into the named folder, draws its
training-dynamics figure, and records in its report.json that the folder is the study's run (a `study` block:
protocol version, run, seed, commit). hub_configs/build.py then writes the rest: for such a folder the recipe is
`shipped_recipe` (one stage: the study's `examples/train.py` arguments of that run and its model config, so
`python examples/reproduce.py <name>` retrains it) and the card adds every seed of the model and the compute-matched
baselines from the study's runs.json (`anira_study.model_cards.study_seeds`).
"""

import json
import shlex
import shutil
import time
from pathlib import Path

from . import study

HUB_VARIANTS = {"anira-e": "e", "anira-o": "o", "fixed-6": "fixed"}  # the study's shipped models: hub_configs/anira-<v>-<task>
# grid -> the task suffix of the named folders it ships into (protocol v8's DEPO grid replaces v1's seed 0 there;
# v6 and v7, withdrawn, ship nothing)
HUB_TASKS = {"depo": "depo", "brevo": "brevo", "depo-v8": "depo", "mano-v9": "mano",  # withdrawn grids ship nothing
             "clrs-topological_sort": "clrs"}  # the -clrs folders' task; clrs-dfs ships no named folder
EARLIER_GRIDS = {"depo-v8": ("depo",)}  # grids of an earlier protocol version whose runs a card links beside its own
BASELINES = ("fixed-3", "fixed-1")  # the compute-matched baselines a shipped card reports beside its model
CONFIG_MACHINE_FIELDS = ("transformers_version", "_name_or_path", "model_type")


def hub_name(task: str, model: str) -> str:
    if task not in HUB_TASKS:
        raise ValueError(f"the study ships into hub_configs for {', '.join(HUB_TASKS)}, not {task!r}")
    if model not in HUB_VARIANTS:
        raise ValueError(f"the study ships {', '.join(HUB_VARIANTS)} in hub_configs, not {model!r}")
    return f"anira-{HUB_VARIANTS[model]}-{HUB_TASKS[task]}"


def shipped_recipe(task: str, model: str, seed: int = study.SHIPPED_SEED) -> dict:
    """The recipe of a study-shipped named folder (hub_configs/build.py writes it into recipe.json): one stage, exactly
    the `examples/train.py` arguments of the study's run (`study.training_args`, the output folder aside), starting from
    the config-only folder of `study.model_config` (`config`), which `examples/reproduce.py` writes into
    `<work_dir>/base-config`; trained in float32 on a GPU too, as the study trains."""
    from anira_tasks import TASKS, generate_sample

    name = hub_name(task, model)
    config, _ = study.model_config(task, model)
    argv = study.training_args(task, model, seed, Path("outputs/reproduce") / name / "base-config", Path("unused"))
    at = argv.index("--output_dir")
    del argv[at:at + 2]  # the work folder is reproduce's
    task_name = argv[argv.index("--task") + 1]
    params = json.loads(argv[argv.index("--task_params") + 1]) if "--task_params" in argv else {}
    smallest = int(argv[argv.index("--train_sizes") + 1])
    return {
        "study": {"protocol": study.PROTOCOL_FILE, "protocol_version": study.protocol_version(task), "task": task, "model": model,
                  "seed": seed},
        "knob": TASKS[task_name].knob,
        "example_prompt": generate_sample(task_name, smallest, seed=0, **params).prompt,
        "checkpoint_steps": int(argv[argv.index("--save_steps") + 1]),
        "bf16_on_gpu": False,
        "config": {k: v for k, v in json.loads(config.to_json_string(use_diff=False)).items() if k not in CONFIG_MACHINE_FIELDS},
        "train_args": argv,
        "notes": f"The replicated study's recipe of {model} ({study.PROTOCOL_FILE}, protocol {study.protocol_version(task)}): one "
                 "stage from a fresh initialisation, the same data, steps and schedule as every model of the grid, nothing "
                 "decided by results. --model_name_or_path is a config-only folder holding this recipe's `config`, which "
                 f"`examples/reproduce.py` writes before training. The study ships seed {seed}, declared before any run.",
    }


def _parameters(weights_file: Path) -> int:
    from safetensors import safe_open

    count = 0
    with safe_open(weights_file, "pt") as weights:  # tied weights are saved once, as parameters() counts them
        for key in weights.keys():
            size = 1
            for dim in weights.get_slice(key).get_shape():
                size *= dim
            count += size
    return count


def ship(task: str, study_dir: Path = study.STUDY_DIR, hub_dir: str | Path = study.REPO / "hub_configs",
         quick: bool = False, force: bool = False) -> list[Path]:
    """Copies seed 0 of anira-e, anira-o and fixed-6 into `hub_dir/anira-{e,o,fixed}-<task>` (each folder replaced
    whole) and has hub_configs/build.py write their code, tokenizer, recipe and card. Refuses, touching nothing, while
    any of the three has not finished, naming each and why, and (unless `force`) where a folder holds another grid's
    model of a later protocol version (`ship --task depo` would put v1's DEPO back over v8's). Returns the folders
    written."""
    from .analysis import read_probe_log, training_phases
    from .figures import plot_training_dynamics
    from .reproduce import TRAINING_LOG_FILE, hub_build
    from .trainer import PROBE_LOG_FILE

    hub_name(task, next(iter(HUB_VARIANTS)))  # a task without named folders is refused by name
    study_dir, hub_dir, seed = Path(study_dir), Path(hub_dir), study.SHIPPED_SEED
    newer = [f"{name} holds {held['task']} (protocol {held['protocol_version']})"
             for name, held in ((hub_name(task, m), _shipped_from(hub_dir / hub_name(task, m))) for m in HUB_VARIANTS)
             if held and held.get("task") != task
             and _version(held.get("protocol_version")) > _version(study.protocol_version(task))]
    if newer and not force:
        raise ValueError(f"cannot ship {task} (protocol {study.protocol_version(task)}): {'; '.join(newer)}, a later "
                         "protocol's model; pass force to replace it anyway (`study.py ship --force`)")
    folders, missing = study.grid_state(task, study_dir, None, quick, seeds=(seed,))
    missing = [m for m in missing if m["model"] in HUB_VARIANTS]
    for model in HUB_VARIANTS:
        folder = folders.get((model, seed))
        lacking = [f for f in ("model.safetensors", "config.json", PROBE_LOG_FILE) if folder and not (folder / f).exists()]
        if lacking:
            missing.append({"run": study.run_name(model, seed), "why": f"its folder lacks {', '.join(lacking)}"})
    if missing:
        raise ValueError(f"cannot ship {task}: the protocol ships seed {seed} of {', '.join(HUB_VARIANTS)}, and "
                         + "; ".join(f"{m['run']} has not finished ({m['why']})" for m in missing)
                         + f" in {study_dir / task}{' (quick runs)' if quick else ''}. Run "
                         f"`python examples/study.py run --task {task}{' --quick' if quick else ''}` first.")
    shipped = []
    for model in HUB_VARIANTS:
        source, name = folders[(model, seed)], hub_name(task, model)
        target = hub_dir / name
        if target.exists():
            shutil.rmtree(target)  # an older recipe's training outputs go with it; build.py writes the rest
        target.mkdir(parents=True)
        for file in ("model.safetensors", "config.json", "generation_config.json"):
            if (source / file).exists():
                shutil.copyfile(source / file, target / file)
        shutil.copyfile(source / PROBE_LOG_FILE, target / TRAINING_LOG_FILE)
        run = json.loads((source / "report.json").read_text())
        log = read_probe_log(source / PROBE_LOG_FILE)
        phases = training_phases(log)
        plot_training_dynamics({name: log}, target / "training_dynamics.png", phases={name: phases})
        trained_by = (run.get("training_commits") or [{}])[-1]  # the piece of training that finished the weights
        importance = run.get("feature_importance") or {}
        report = {**run, "name": name, "parameters": _parameters(source / "model.safetensors"), "phases": phases,
                  "importance": importance.get("all_tokens"), "importance_within_prompt": importance.get("inside_prompts"),
                  "train_commands": ["python examples/train.py " + shlex.join(run["train_args"])],
                  "training_commit": trained_by.get("training_commit"),
                  "training_commit_dirty": trained_by.get("training_commit_dirty"),
                  "package_version": trained_by.get("package_version"),
                  "study": {"protocol": study.PROTOCOL_FILE, "protocol_version": run["protocol_version"], "task": task,
                            "model": model, "seed": run["seed"], "run": run["run"], "quick": run.get("quick", False),
                            "commit": trained_by.get("training_commit"), "evaluated_at_commit": run.get("commit"),
                            "folder": f"{task}/{source.relative_to(study_dir / task).as_posix()}",
                            "shipped": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
        (target / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        shipped.append(target)
    hub_build(hub_dir).build_all(hub_dir, names=[p.name for p in shipped], study_dir=study_dir)
    return shipped


def _shipped_from(folder: Path) -> dict | None:
    """The study block of a named folder's report.json ({"task", "protocol_version", ...}), or None for a folder the
    study did not ship."""
    report = folder / "report.json"
    return json.loads(report.read_text()).get("study") if report.exists() else None


def _version(name: str | None) -> int:
    """A protocol version's number ("v8" -> 8; none -> 0)."""
    return int(name[1:]) if name and name[1:].isdigit() else 0


def refresh_shipped_cards(task: str, study_dir: Path = study.STUDY_DIR, hub_dir: str | Path = study.REPO / "hub_configs",
                          quick: bool = False) -> list[str]:
    """Rewrites the cards of the named folders shipped from `task`'s grid (their seed tables read runs.json), so that a
    run landing after the ship is in every card at once and `hub_configs/build.py --check` stays green. Folders
    not shipped from the study, or from another study directory's quick runs, are left alone. Returns the names."""
    hub_dir = Path(hub_dir)
    names = []
    if task not in HUB_TASKS:  # a grid that ships no named folders (yet)
        return names
    for model in HUB_VARIANTS:
        name = hub_name(task, model)
        block = _shipped_from(hub_dir / name)
        if block and block.get("task") == task and block.get("quick", False) == quick:
            names.append(name)
    if names:
        from .reproduce import hub_build

        hub_build(hub_dir).build_all(hub_dir, names=names, study_dir=Path(study_dir))
    return names

"""The replicated study: every model of a task's grid trained from scratch with a frozen recipe, over seeds.

    python examples/study.py run --task depo --seeds 0 1 2        # train + evaluate every (model, seed), resumable
    python examples/study.py report --task depo                   # the tables over seeds, from runs.json
    python examples/study.py search --task mano                   # a searched grid's recipe, on the validation split

The protocol (experiments/study/PROTOCOL.md) fixes, before its runs: the models of each task's grid and their
recipes (`GRIDS`: one `examples/train.py` command each, the same data, steps and schedule for all), the seeds,
the test prompts (the task's own test splits, `task_seed` 0) and the analyses. This module is that protocol in
code; a change to a recipe after results exist is a new protocol version (`VERSIONS`), and runs keep the version
that trained them.

A run trains in `work_dir/<task>/<model>-seed<k>` (checkpoints every `--save_steps`: an interruption costs
minutes; `run` again resumes), then evaluates once on the test splits (generated answers, depth per size, rho,
the depth-need analysis) and copies what it made into the repository: `experiments/study/<task>/runs/<run>/`
(weights, config, tokenizer, `report.json`, the probe log) and a line of `experiments/study/<task>/runs.json`.
On CPU one training process runs per core (`--processes`, default the core count, one torch thread each); on a
GPU several processes share the device (`--processes`, default 4), each with its own CUDA context.

The grids of MANO and of CLRS algorithms take their recipe from a recipe search declared here beside `GRIDS`
(`SEARCHES`): a fixed list of candidates, each trained once as `fixed-6` with `SEARCH_SEED` (not a study seed),
scored on the validation split only, the winner picked by the rule of `select_recipe`.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY_DIR = REPO / "experiments" / "study"
SEEDS = (0, 1, 2)

# Every config field the study sets; the rest are AniraConfig's defaults (RMSNorm eps, rope theta 10000, ...).
SHAPE = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=4, num_prelude_layers=1,
             num_core_layers=1, num_coda_layers=1, injection="add", min_depth=1, max_depth=6)
ADAPTIVE = dict(iteration_loss_weight=0.5, compute_penalty=0.003)
MODELS = {  # name: (depth_mode, config fields)
    "anira-e": ("early", dict(**ADAPTIVE, depth_init_bias=0.0, router_gradient="full", router_sampling="gumbel")),
    "anira-o": ("online", dict(**ADAPTIVE, depth_init_bias=3.0, halting_objective="straight_through", halting_threshold=0.5)),
    "fixed-6": ("fixed", dict(iteration_loss_weight=0.0)),
    "fixed-3": ("fixed", dict(iteration_loss_weight=0.0, max_depth=3)),
    "fixed-1": ("fixed", dict(iteration_loss_weight=0.0, max_depth=1)),
}
COMMON_ARGS = ["--learning_rate", "3e-3", "--warmup_steps", "200", "--lr_scheduler_type", "cosine", "--weight_decay", "0.0",
               "--max_grad_norm", "1.0", "--per_device_train_batch_size", "64", "--probe_steps", "200",
               "--probe_per_size", "64", "--logging_steps", "200", "--save_steps", "1000", "--report_to", "none",
               "--disable_tqdm", "true", "--padding_free", "true"]
ADAPTIVE_ARGS = ["--penalty_gate_accuracy", "0.9", "--penalty_ramp_steps", "1000"]
GRIDS = {
    "depo": dict(
        family="depo", max_position_embeddings=256,
        data=["--task", "depo", "--task_params", json.dumps({"num_nodes": 8, "num_queries": 6, "supervise_all_queries": True,
                                                               "edge_format": "token", "hop_format": "unary"}),
              "--train_sizes", "1", "2", "3", "4", "--extrapolation_sizes", "5", "6", "--num_train", "100000",
              "--num_test_per_size", "500", "--task_seed", "0"],
        schedule=["--max_steps", "15000", "--curriculum_accuracy", "0.8"],
    ),
    "brevo": dict(
        family="brevo", max_position_embeddings=1024,
        data=["--task", "brevo", "--train_sizes", "3", "4", "5", "6", "--extrapolation_sizes", "7", "8", "--num_train", "200000",
              "--num_test_per_size", "300", "--task_seed", "0"],
        schedule=["--max_steps", "40000", "--curriculum_accuracy", "0.8"],
    ),
}
# Recipe searches (`run_search`): tasks whose recipe is chosen on the validation split before their grid runs.
# Declared before any search result exists; a candidate is one `examples/train.py` recipe (data, schedule, overrides
# of COMMON_ARGS), trained once per variant (task parameters added to the candidate's) as SEARCH_MODEL with
# SEARCH_SEED for the search's `steps`, the budget the grid then trains the chosen recipe for too. Scored by the
# exact match of the generated answers on the validation split per seen size; `select_recipe` picks (the candidates'
# order is the preference: nearest the paper first). Why these candidates: docs/tasks.md (MANO's prompt space and
# splits, CLRS's lengths and serial depth) and experiments/study/PROTOCOL.md, version 2.
SEARCH_SEED = 100  # not in SEEDS: no study run repeats a search run's initialisation and data order
SEARCH_MODEL = "fixed-6"  # the most compute and no penalty schedule: a recipe it does not learn, no model of the grid does
SEARCH_ACCURACY = 0.9  # the rule's bar, finding 1's accuracy
SEARCH_FILE = "search.json"
_MANO = dict(train_sizes=[1, 2, 3, 4], extrapolation_sizes=[5, 6], num_train=100_000, overrides={"--weight_decay": "0.1"})
_CLRS = dict(num_train=100_000)
_CURRICULUM = dict(curriculum_accuracy=0.8, curriculum_metric="answer_exact")  # unlock on whole answers, not tokens
SEARCHES = {
    "mano": dict(
        task="mano", max_position_embeddings=64, steps=20_000, num_test_per_size=300,
        variants={"marker": {"use_length_marker": True}, "no-marker": {"use_length_marker": False}},
        candidates={
            "mod23": dict(**_MANO, task_params={"modulus": 23}),  # the paper's modulus first
            "mod11": dict(**_MANO, task_params={"modulus": 11}),
            "mod7": dict(**_MANO, task_params={"modulus": 7}),
            "mod7-curriculum": dict(**_MANO, **_CURRICULUM, task_params={"modulus": 7}),
        },
    ),
    **{f"clrs-{algorithm}": dict(
        task=algorithm, max_position_embeddings=256, steps=20_000, num_test_per_size=300, variants={"default": {}},
        candidates={
            "n4-7": dict(**_CLRS, **_CURRICULUM, train_sizes=[4, 5, 6, 7], extrapolation_sizes=[8, 10]),
            "n3-6": dict(**_CLRS, **_CURRICULUM, train_sizes=[3, 4, 5, 6], extrapolation_sizes=[7, 8]),
            "n3-6-mixed": dict(**_CLRS, train_sizes=[3, 4, 5, 6], extrapolation_sizes=[7, 8]),
        }) for algorithm in ("topological_sort", "dfs")},  # the two whose serial depth grows with n (docs/tasks.md)
}
# The searched grids: data and schedule are their search's choice in their variant (`grid_recipe`); `run` refuses
# until the search has chosen. MANO is one grid per length-marker variant, so finding 3 is read with and without it.
GRIDS |= {
    "mano": dict(search="mano", variant="marker"),
    "mano-no-marker": dict(search="mano", variant="no-marker"),
    **{name: dict(search=name, variant="default") for name in SEARCHES if name.startswith("clrs-")},
}
# The protocol version that declared each grid and search: a run records its grid's, and a report reads only those.
VERSIONS = {"depo": "v1", "brevo": "v1"} | {name: "v2" for name in [*SEARCHES, *GRIDS] if name not in ("depo", "brevo")}
QUICK_DEPTH_NEED_PROMPTS = 4
DEPTH_NEED_PROMPTS = 200  # test prompts per size of the depth-need analysis (uniform depths 1..max_depth each)
RUNS_FILE = "runs.json"
_lock = threading.Lock()


def protocol_version(name: str) -> str:
    """The protocol version that declared grid or search `name` (`VERSIONS`): declaring new grids in a later version
    does not move the grids already running to it."""
    if name not in VERSIONS:
        raise ValueError(f"the study has grids {sorted(GRIDS)} and searches {sorted(SEARCHES)}, not {name!r}")
    return VERSIONS[name]


def run_name(model: str, seed: int) -> str:
    return f"{model}-seed{seed}"


def model_config(task: str, model: str):
    """The AniraConfig of `model` in `task`'s grid (vocabulary and special tokens from the task's tokenizer)."""
    import modeling_anira  # noqa: F401
    from anira_tasks import TASKS, load_tokenizer
    from modeling_anira import AniraConfig

    if task not in GRIDS and task not in SEARCHES:
        raise ValueError(f"the study has grids for {sorted(GRIDS)}, not {task!r}")
    if model not in MODELS:
        raise ValueError(f"the study's models are {sorted(MODELS)}, not {model!r}")
    mode, fields = MODELS[model]
    grid = GRIDS.get(task, {})
    shape = SEARCHES[grid["search"]] if "search" in grid else grid or SEARCHES[task]  # a searched grid: its search's
    tokenizer = load_tokenizer(TASKS[shape["task"]].family if "task" in shape else shape["family"])
    values = {**SHAPE, "max_position_embeddings": shape["max_position_embeddings"], **fields}
    return AniraConfig(vocab_size=len(tokenizer), depth_mode=mode, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, use_cache=False,
                       **values), tokenizer


def write_model_folder(task: str, model: str, folder: Path) -> Path:
    """A config-only folder (config, tokenizer) that `examples/train.py --model_name_or_path` trains from scratch."""
    config, tokenizer = model_config(task, model)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def grid_recipe(task: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> tuple[list[str], list[str], dict[str, str]]:
    """(data, schedule, overrides of COMMON_ARGS) of a grid: written in `GRIDS`, or its search's choice in its variant
    (a clear error naming `search` while the search has not chosen)."""
    if task not in GRIDS:
        raise ValueError(f"the study has grids for {sorted(GRIDS)}, not {task!r}")
    grid = GRIDS[task]
    if "search" not in grid:
        return grid["data"], grid["schedule"], {}
    try:
        choice = searched_choice(grid["search"], study_dir, quick)
    except ValueError as error:
        raise ValueError(f"the {task} grid takes its recipe from a search: {error}") from None
    return candidate_recipe(grid["search"], choice, grid["variant"])


def _overridden(argv: list[str], overrides: dict[str, str], quick: bool) -> list[str]:
    """argv with a recipe's overrides of COMMON_ARGS set, then, for a quick run, `examples/reproduce.py --quick`'s."""
    from .reproduce import QUICK, _set

    for flag, value in {**overrides, **(QUICK if quick else {})}.items():
        argv = _set(argv, flag, value)
    return argv


def training_args(task: str, model: str, seed: int, model_folder: Path, output_dir: Path, quick: bool = False,
                  study_dir: Path = STUDY_DIR) -> list[str]:
    """The `examples/train.py` arguments of one run: the grid's data and schedule (a searched grid's: its search's
    choice, read from `study_dir`), the model's penalty schedule; quick: `examples/reproduce.py --quick`'s minutes."""
    data, schedule, overrides = grid_recipe(task, study_dir, quick)
    argv = ["--model_name_or_path", str(model_folder), "--output_dir", str(output_dir), "--seed", str(seed),
            *data, *schedule, *COMMON_ARGS]
    if MODELS[model][0] != "fixed":
        argv += ADAPTIVE_ARGS
    return _overridden(argv, overrides, quick)


def read_runs(task: str, study_dir: Path = STUDY_DIR) -> list[dict]:
    path = study_dir / task / RUNS_FILE
    text = path.read_text() if path.exists() else ""
    return json.loads(text) if text.strip() else []


@contextlib.contextmanager
def locked(path: Path):
    """Holds `path` (created empty if missing) under an exclusive lock between this process's threads and, where
    the platform has fcntl, between processes: a grid's runs are separate processes, and two that finish together
    must not lose one's line. `write_text` keeps the file's inode, so the file itself is the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # no fcntl (Windows): threads only
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_run(task: str, entry: dict, study_dir: Path = STUDY_DIR) -> None:
    """Adds (or replaces: same run, same protocol version) a run's line in runs.json, under `locked`."""
    path = study_dir / task / RUNS_FILE
    with locked(path):
        runs = [r for r in read_runs(task, study_dir)
                if (r["run"], r["protocol_version"]) != (entry["run"], entry["protocol_version"])]
        runs.append(entry)
        runs.sort(key=lambda r: (r["protocol_version"], r["model"], r["seed"]))
        path.write_text(json.dumps(runs, indent=2) + "\n")


def _finished(output_dir: Path) -> bool:
    return (output_dir / "model.safetensors").exists() and (output_dir / "anira_data.json").exists()


def _train_resumable(argv: list[str], output_dir: Path) -> None:
    """Trains `argv` into `output_dir`: from its last checkpoint when it has one, not at all when it has finished;
    appends this piece's wall time to wall_times.json and its provenance to training_commits.json."""
    from transformers.trainer_utils import get_last_checkpoint

    from .reproduce import provenance
    from .trainer import train_from_argv

    if _finished(output_dir):
        return
    times_file = output_dir / "wall_times.json"
    commits_file = output_dir / "training_commits.json"  # the provenance of every piece of the training (resumed runs)
    output_dir.mkdir(parents=True, exist_ok=True)
    commits = json.loads(commits_file.read_text()) if commits_file.exists() else []
    commits_file.write_text(json.dumps(commits + [provenance()]))
    resume = output_dir.is_dir() and get_last_checkpoint(str(output_dir)) is not None
    start = time.time()
    # a folder with no checkpoint yet (interrupted before the first save) starts over
    restart = ["--resume_from_checkpoint", "last"] if resume else (["--overwrite_output_dir", "true"] if output_dir.exists() else [])
    train_from_argv(argv + restart)
    times = json.loads(times_file.read_text()) if times_file.exists() else []
    times_file.write_text(json.dumps(times + [time.time() - start]))


def train_and_evaluate(task: str, model: str, seed: int, work_dir: Path, study_dir: Path = STUDY_DIR, quick: bool = False,
                       device: str | None = None) -> dict:
    """One run, in this process: train (or resume, or skip when finished), evaluate on the test splits, run the
    depth-need analysis, copy the folder into `study_dir` and record it in runs.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .analysis import FEATURE_GROUPS, depth_feature_importance, read_probe_log
    from .depth_need import depth_need_for_folder
    from .evaluation import evaluation_report, format_table, load_eval_data
    from .reproduce import machine, provenance
    from .trainer import PROBE_LOG_FILE

    name = run_name(model, seed)
    output_dir = work_dir / task / name
    model_folder = write_model_folder(task, model, work_dir / task / "configs" / model)
    argv = training_args(task, model, seed, model_folder, output_dir, quick, study_dir)
    times_file = output_dir / "wall_times.json"
    commits_file = output_dir / "training_commits.json"
    _train_resumable(argv, output_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    trained = AutoModelForCausalLM.from_pretrained(output_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    data, train_sizes = load_eval_data(output_dir)
    # Finding 3 (BREVO): the depth-variance shares of static and execution-state features, on the seen sizes.
    features = FEATURE_GROUPS.get(data["train"][0]["task"]) if trained.config.depth_mode != "fixed" else None
    report = evaluation_report(trained, data, tokenizer, generate=True, keep_records=features is not None)
    importance = None
    if features is not None:
        records = report[SEEN].pop("records")
        for split in report:
            if isinstance(report[split], dict):
                report[split].pop("records", None)
        importance = {"all_tokens": depth_feature_importance(records, features),
                      "inside_prompts": depth_feature_importance(records, features, within_prompt=True)}
    need = depth_need_for_folder(output_dir, QUICK_DEPTH_NEED_PROMPTS if quick else DEPTH_NEED_PROMPTS, device=device)
    probe_log = read_probe_log(output_dir / PROBE_LOG_FILE)
    state = json.loads((output_dir / "trainer_state.json").read_text()) if (output_dir / "trainer_state.json").exists() else {}
    target = study_dir / task / "runs" / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    trained.save_pretrained(target)
    tokenizer.save_pretrained(target)
    for code in target.glob("*.py"):  # the package's code: a study folder is read with `import modeling_anira`
        code.unlink()
    for file in ("anira_data.json", PROBE_LOG_FILE):
        shutil.copyfile(output_dir / file, target / file)
    summary = {
        "run": name, "task": task, "model": model, "depth_mode": trained.config.depth_mode,
        "max_depth": trained.config.max_depth, "seed": seed, "protocol_version": protocol_version(task), "quick": quick,
        "steps": state.get("global_step"), "train_seconds": sum(json.loads(times_file.read_text())) if times_file.exists() else None,
        "machine": machine(), "commit": provenance()["training_commit"], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "training_commits": json.loads(commits_file.read_text()) if commits_file.exists() else None,
        "command": f"python examples/study.py run --task {task} --models {model} --seeds {seed}" + (" --quick" if quick else ""),
        "train_args": argv, "train_sizes": train_sizes, "table": format_table({name: report}),
        "report": report, "depth_need": need, "feature_importance": importance, "probe_steps_logged": len(probe_log),
    }
    (target / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    entry = {key: summary[key] for key in ("run", "model", "depth_mode", "max_depth", "seed", "steps", "train_seconds",
                                            "protocol_version", "quick", "machine", "commit", "date")}
    entry["folder"] = str(target.relative_to(study_dir / task))
    record_run(task, entry, study_dir)
    if not quick and Path(study_dir).resolve() == STUDY_DIR.resolve():
        refresh_after_run(task, study_dir)
    return summary


def refresh_after_run(task: str, study_dir: Path = STUDY_DIR, hub_dir: Path | None = None) -> None:
    """What reads runs.json is rewritten once a run lands in it: protocol v3's operating curve of an anira-o run
    that lacks one (`operating_curve.operating_curve_grid`), the grid's results.md, summary.json and figures, and
    the cards of the named folders shipped from it (`ship.refresh_shipped_cards`), so that none of them lags behind
    the runs. Under runs.json's lock: two runs landing together write them one after the other. A failure here is
    printed and leaves the run recorded (`study.py report`, `study.py operating-curve` redo it)."""
    from .operating_curve import operating_curve_grid
    from .ship import refresh_shipped_cards

    try:
        with locked(Path(study_dir) / task / RUNS_FILE):
            try:
                operating_curve_grid(task, study_dir)
            except Exception as error:  # the report below still follows the runs
                print(f"{task}: protocol v3's operating curve failed ({error!r}); run "
                      f"`python examples/study.py operating-curve --task {task}`", flush=True)
            study_report(task, study_dir)
            study_figures(task, study_dir)
            refresh_shipped_cards(task, study_dir, *([hub_dir] if hub_dir is not None else []))
    except Exception as error:  # the run itself is recorded; say what was not rewritten
        print(f"{task}: the run is recorded, but rewriting its report, figures or cards failed ({error!r}); "
              f"run `python examples/study.py report --task {task}` (and `python hub_configs/build.py`)", flush=True)


def pending_runs(task: str, models: list[str], seeds: list[int], study_dir: Path = STUDY_DIR, quick: bool = False) -> list[tuple[str, int]]:
    """The (model, seed) pairs with no line of this protocol version in runs.json, seed-major: every model's seed
    0 before any seed 1, so an interrupted grid holds whole seeds."""
    done = {(r["model"], r["seed"]) for r in read_runs(task, study_dir)
            if r["protocol_version"] == protocol_version(task) and r.get("quick", False) == quick}
    return [(model, seed) for seed in seeds for model in models if (model, seed) not in done]


def run_grid(task: str, models: list[str] | None = None, seeds: list[int] | None = None, work_dir: str | Path = "outputs/study",
             study_dir: Path = STUDY_DIR, processes: int | None = None, quick: bool = False) -> list[tuple[str, int, int]]:
    """Every pending (model, seed) of the grid, `processes` at a time, each in its own process (`examples/study.py
    one`); returns (model, seed, exit code) per run. Exit codes other than 0 are reported, the others go on."""
    return [(model, seed, code) for _, model, seed, code in run_grids([task], models, seeds, work_dir, study_dir, processes, quick)]


def run_grids(tasks: list[str], models: list[str] | None = None, seeds: list[int] | None = None,
              work_dir: str | Path = "outputs/study", study_dir: Path = STUDY_DIR, processes: int | None = None,
              quick: bool = False) -> list[tuple[str, str, int, int]]:
    """`run_grid` for several grids through one pool of processes: the runs queue grid after grid (each seed-major),
    so a core that the first grid's last runs leave free starts the next grid's instead of waiting for them. Every
    grid is checked before anything runs; returns (task, model, seed, exit code) per run."""
    models, seeds = list(models or MODELS), list(SEEDS if seeds is None else seeds)
    todo = []
    for task in tasks:
        for model in models:
            model_config(task, model)  # a bad task or model name fails here, before anything runs
        grid_recipe(task, study_dir, quick)  # so does a searched grid whose search has not chosen
        pending = pending_runs(task, models, seeds, study_dir, quick)
        print(f"{task}: {len(pending)} runs pending: " + ", ".join(run_name(model, seed) for model, seed in pending), flush=True)
        todo += [(task, model, seed) for model, seed in pending]
    jobs = [(task, run_name(model, seed), ["one", "--task", task, "--model", model, "--seed", str(seed)], Path(work_dir) / task / "logs")
            for task, model, seed in todo]
    codes = _run_processes(", ".join(tasks), jobs, [Path(work_dir) / task / RUNNER_LOCK for task in tasks], work_dir, study_dir,
                           processes, quick)
    return [(task, model, seed, code) for (task, model, seed), (_, code) in zip(todo, codes)]


def _run_processes(label: str, jobs: list[tuple[str, str, list[str], Path]], locks: list[Path], work_dir, study_dir,
                   processes: int | None, quick: bool) -> list[tuple[str, int]]:
    """`examples/study.py <arguments> --work_dir --study_dir [--quick]` for each job (its label, name, arguments and
    log folder), `processes` at a time (default: the cores on CPU, four sharing a GPU), one torch thread each, logged
    to `<log folder>/<name>.log`; [(name, exit code)] in job order. A failed job is reported and the others go on.
    Holds every runner lock of `locks` while it runs."""
    import torch

    processes = processes or (4 if torch.cuda.is_available() else (os.cpu_count() or 1))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

    def launch(job):
        job_label, name, arguments, logs = job
        command = [sys.executable, str(REPO / "examples" / "study.py"), *arguments, "--work_dir", str(work_dir),
                   "--study_dir", str(study_dir)] + (["--quick"] if quick else [])
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "a") as log:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"{job_label} {name}: {'done' if code == 0 else f'FAILED (exit {code}, log {log.name})'}", flush=True)
        return name, code

    with contextlib.ExitStack() as stack:
        for path in locks:
            stack.enter_context(runner_lock(path))
        print(f"{label}: {processes} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=processes) as pool:
            return list(pool.map(launch, jobs))


RUNNER_LOCK = "runner.lock"


@contextlib.contextmanager
def runner_lock(path: Path):
    """Refuses a second runner of the same grid or search in the same work folder while one runs (they would train
    the same runs into the same checkpoint folders): an exclusive, non-blocking lock on `path`, which holds the
    holder's process id. Released when the runner ends, also when it is killed. Without fcntl (Windows): no check."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RuntimeError(f"another runner (process {holder}) is training the runs of {path.parent}: wait for it, or "
                               "stop it and run again (runs resume from their checkpoints)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- recipe searches (before a searched grid)
def candidate_recipe(search: str, candidate: str, variant: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(data, schedule, overrides of COMMON_ARGS): the `examples/train.py` arguments of one candidate in one variant,
    which the search trains it with and a searched grid trains the chosen one with (its variant's)."""
    if search not in SEARCHES:
        raise ValueError(f"the study's recipe searches are {sorted(SEARCHES)}, not {search!r}")
    spec = SEARCHES[search]
    if candidate not in spec["candidates"]:
        raise ValueError(f"the {search} search's candidates are {list(spec['candidates'])}, not {candidate!r}")
    if variant not in spec["variants"]:
        raise ValueError(f"the {search} search's variants are {list(spec['variants'])}, not {variant!r}")
    c = spec["candidates"][candidate]
    params = {**c.get("task_params", {}), **spec["variants"][variant]}
    data = ["--task", spec["task"], "--task_params", json.dumps(params), "--train_sizes", *map(str, c["train_sizes"]),
            "--extrapolation_sizes", *map(str, c["extrapolation_sizes"]), "--num_train", str(c["num_train"]),
            "--num_test_per_size", str(spec["num_test_per_size"]), "--task_seed", "0"]
    schedule = ["--max_steps", str(spec["steps"])]
    if c.get("curriculum_accuracy") is not None:
        schedule += ["--curriculum_accuracy", str(c["curriculum_accuracy"]), "--curriculum_metric", c["curriculum_metric"]]
    return data, schedule, dict(c.get("overrides", {}))


def search_args(search: str, candidate: str, variant: str, model_folder: Path, output_dir: Path, quick: bool = False) -> list[str]:
    """The `examples/train.py` arguments of one search run: the candidate's recipe, `SEARCH_MODEL`, `SEARCH_SEED`."""
    data, schedule, overrides = candidate_recipe(search, candidate, variant)
    argv = ["--model_name_or_path", str(model_folder), "--output_dir", str(output_dir), "--seed", str(SEARCH_SEED),
            *data, *schedule, *COMMON_ARGS]
    return _overridden(argv, overrides, quick)


def search_path(search: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> Path:
    return Path(study_dir) / search / "search" / ("search-quick.json" if quick else SEARCH_FILE)


SELECTION_RULE = (f"the first candidate in the declared order whose validation exact match is >= {SEARCH_ACCURACY} at every "
                  "seen size of every variant; if none is, the candidate with the highest minimum over its variants and "
                  "seen sizes; a tie goes to the earlier candidate; a size without validation prompts counts as 0")


def select_recipe(validation: dict[str, dict[str, dict[int, float]]], accuracy: float = SEARCH_ACCURACY) -> dict:
    """The search's selection rule (`SELECTION_RULE`), on {candidate: {variant: {seen size: validation exact match}}}
    in the declared order: the first candidate whose exact match is >= `accuracy` at every seen size of every
    variant; if none is, the candidate with the highest minimum over its variants and seen sizes; a tie goes to the
    earlier candidate. A missing or undefined value (no validation prompt at a size) counts as 0. Returns
    {"candidate", "minimum", "passed", "why"}."""
    if not validation:
        raise ValueError("select_recipe needs at least one candidate's validation numbers")
    minima = {}
    for name, variants in validation.items():
        values = [v for sizes in variants.values() for v in sizes.values()]
        minima[name] = min((v if v is not None and v == v else 0.0) for v in values) if values else 0.0
    for name, low in minima.items():
        if low >= accuracy:
            return {"candidate": name, "minimum": low, "passed": True,
                    "why": f"the first candidate in the declared order whose validation exact match is >= {accuracy} at "
                           "every seen size (every variant)"}
    best = max(minima, key=minima.get)  # max keeps the first of equal values: ties go to the earlier candidate
    return {"candidate": best, "minimum": minima[best], "passed": False,
            "why": f"no candidate reached {accuracy} at every seen size; the highest minimum over seen sizes and variants"}


def _declared_runs(search: str) -> list[tuple[str, str]]:
    spec = SEARCHES[search]
    return [(candidate, variant) for candidate in spec["candidates"] for variant in spec["variants"]]


def _recipe_record(search: str, candidate: str, variant: str) -> dict:
    data, schedule, overrides = candidate_recipe(search, candidate, variant)
    return {"data": data, "schedule": schedule, "overrides": overrides, "model": SEARCH_MODEL, "seed": SEARCH_SEED}


def search_state(search: str, study_dir: Path = STUDY_DIR, quick: bool = False, recorded: list[dict] | None = None) -> dict:
    """The search's file read against the code's declaration: {"results": the recorded runs whose recipe is still the
    declared one, "pending": the declared (candidate, variant) runs without one, "choice": `select_recipe` over the
    results once nothing is pending, else None}. A result recorded for a recipe since changed in `SEARCHES` is pending
    again (and not read). `recorded`: the results to read in place of the file's (what `record_search` is writing)."""
    path = search_path(search, study_dir, quick)
    if recorded is None:
        text = path.read_text() if path.exists() else ""
        recorded = json.loads(text)["results"] if text.strip() else []
    current = {(r["candidate"], r["variant"]): r for r in recorded
               if (r["candidate"], r["variant"]) in _declared_runs(search)
               and r["recipe"] == _recipe_record(search, r["candidate"], r["variant"])}
    results = [current[key] for key in _declared_runs(search) if key in current]
    pending = [key for key in _declared_runs(search) if key not in current]
    choice = None
    if not pending:
        validation = {}
        for r in results:
            validation.setdefault(r["candidate"], {})[r["variant"]] = {int(c): v["exact"] for c, v in r["validation"].items()}
        choice = select_recipe(validation)
    return {"path": path, "results": results, "pending": pending, "choice": choice}


def record_search(search: str, entry: dict, study_dir: Path = STUDY_DIR, quick: bool = False) -> dict:
    """Adds (or replaces) one search run's line in the search's file and writes the rule's choice once every declared
    run has one (None before). Returns the file's content. The search's runs are separate processes: a file lock
    keeps two that finish together from losing one's line (`locked`)."""
    path = search_path(search, study_dir, quick)
    with locked(path):
        text = path.read_text()
        old = json.loads(text)["results"] if text.strip() else []
        results = [r for r in old if (r["candidate"], r["variant"]) != (entry["candidate"], entry["variant"])] + [entry]
        order = {key: i for i, key in enumerate(_declared_runs(search))}
        results.sort(key=lambda r: order.get((r["candidate"], r["variant"]), len(order)))
        spec = SEARCHES[search]
        content = {"search": search, "task": spec["task"], "protocol_version": protocol_version(search), "quick": quick,
                   "model": SEARCH_MODEL, "seed": SEARCH_SEED, "steps": spec["steps"], "accuracy": SEARCH_ACCURACY,
                   "score": "exact match of the greedily generated answer per seen size, validation split only",
                   "rule": SELECTION_RULE,
                   "candidates": list(spec["candidates"]), "variants": list(spec["variants"]), "results": results}
        state = search_state(search, study_dir, quick, recorded=results)
        content["choice"] = state["choice"]
        content["pending"] = [f"{c}/{v}" for c, v in state["pending"]]
        path.write_text(json.dumps(content, indent=2) + "\n")
        return content


def searched_choice(search: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> str:
    """The candidate the search chose; a clear error naming `search` while it has not chosen."""
    state = search_state(search, study_dir, quick)
    if state["choice"] is None:
        total = len(_declared_runs(search))
        done = "no result" if not state["path"].exists() else f"{total - len(state['pending'])} of {total} candidate runs done"
        raise ValueError(f"the recipe search {search!r} has not chosen a recipe ({state['path']}: {done}): run "
                         f"`python examples/study.py search --task {search}{' --quick' if quick else ''}` first")
    return state["choice"]["candidate"]


def search_one(search: str, candidate: str, variant: str, work_dir: Path, study_dir: Path = STUDY_DIR, quick: bool = False,
               device: str | None = None) -> dict:
    """One search run, in this process: train the candidate as `SEARCH_MODEL` with `SEARCH_SEED` (or resume, or skip
    when finished), then score it on the validation split (nothing else is read): the exact match of the greedily
    generated answer per seen size. Recorded in the search's file; returns the entry."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anira_tasks.dataset import VALIDATION

    from .evaluation import generated_correct, load_eval_data
    from .reproduce import machine, provenance
    from .statistics import wilson_interval

    base = Path(work_dir) / search / "search"
    output_dir = base / f"{candidate}-{variant}"
    model_folder = write_model_folder(search, SEARCH_MODEL, base / "configs" / SEARCH_MODEL)
    argv = search_args(search, candidate, variant, model_folder, output_dir, quick)
    _train_resumable(argv, output_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    trained = AutoModelForCausalLM.from_pretrained(output_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    data, train_sizes = load_eval_data(output_dir)
    rows = data[VALIDATION].to_list()
    correct = generated_correct(trained, rows, tokenizer)
    validation = {}
    for size in train_sizes:
        hits = [ok for ok, row in zip(correct, rows) if row["complexity"] == size]
        validation[str(size)] = {"exact": sum(hits) / len(hits) if hits else float("nan"), "prompts": len(hits),
                                 "interval": list(wilson_interval(sum(hits), len(hits)))}
    state = json.loads((output_dir / "trainer_state.json").read_text()) if (output_dir / "trainer_state.json").exists() else {}
    times_file = output_dir / "wall_times.json"
    entry = {"candidate": candidate, "variant": variant, "recipe": _recipe_record(search, candidate, variant),
             "validation": validation, "steps": state.get("global_step"),
             "train_seconds": sum(json.loads(times_file.read_text())) if times_file.exists() else None,
             "machine": machine(), "commit": provenance()["training_commit"],
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "train_args": argv}
    record_search(search, entry, study_dir, quick)
    return entry


def run_search(search: str, work_dir: str | Path = "outputs/study", study_dir: Path = STUDY_DIR, processes: int | None = None,
               quick: bool = False) -> dict:
    """Every pending run of the search (candidate x variant), `processes` at a time, each in its own process
    (`examples/study.py search-one`), then the search's state (results, pending, choice). Resumable like `run_grid`:
    recorded runs are skipped, an interrupted training resumes from its checkpoint."""
    if search not in SEARCHES:
        raise ValueError(f"the study's recipe searches are {sorted(SEARCHES)}, not {search!r}")
    todo = search_state(search, study_dir, quick)["pending"]
    jobs = [(f"{candidate}-{variant}", ["search-one", "--task", search, "--candidate", candidate, "--variant", variant])
            for candidate, variant in todo]
    print(f"{search} search: {len(todo)} runs pending ({SEARCH_MODEL}, seed {SEARCH_SEED}, {SEARCHES[search]['steps']} steps): "
          + ", ".join(name for name, _ in jobs), flush=True)
    logs = Path(work_dir) / search / "search" / "logs"
    codes = _run_processes(f"{search} search", [(f"{search} search", name, arguments, logs) for name, arguments in jobs],
                           [logs.parent / RUNNER_LOCK], work_dir, study_dir, processes, quick)
    state = search_state(search, study_dir, quick)
    state["exit_codes"] = dict(codes)
    return state


def format_search(search: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> str:
    """Markdown: every recorded run's validation exact match per seen size, then the rule's choice (or what is pending)."""
    state = search_state(search, study_dir, quick)
    lines = [f"# {search}: recipe search ({SEARCH_MODEL}, seed {SEARCH_SEED}, {SEARCHES[search]['steps']} steps, "
             "validation split)", "", "| candidate | variant | validation exact match per seen size (prompts) | minimum |",
             "|---|---|---|---|"]
    for r in state["results"]:
        cells = " / ".join(f"{c}: {_fmt(v['exact'])} ({v['prompts']})" for c, v in r["validation"].items())
        lines.append(f"| {r['candidate']} | {r['variant']} | {cells} | {_fmt(min(v['exact'] for v in r['validation'].values()))} |")
    choice = state["choice"]
    lines += ["", f"Chosen: {choice['candidate']} (minimum {_fmt(choice['minimum'])}): {choice['why']}." if choice
              else "Pending: " + ", ".join(f"{c}/{v}" for c, v in state["pending"]) + "."]
    return "\n".join(lines)



# ----------------------------------------------------------------------------- the report over seeds
SEEN, UNSEEN = "test_seen", "test_extrapolation"
FINDING_1_ACCURACY, FINDING_1_RHO = 0.9, 0.6  # PROTOCOL.md, "What counts as a finding holding"
FINDING_2_DROP = 0.3
FINDING_5_TOLERANCE = 0.02
GAIN_GOAL = 1.25


def run_numbers(summary: dict) -> dict:
    """The per-run numbers the protocol's analyses read, from a run's report.json."""
    report, need = summary["report"], summary["depth_need"]
    seen = report[SEEN]
    unseen = report.get(UNSEEN, {"per_complexity": {}})
    numbers = {
        "seen_accuracy": {int(c): v["generated_accuracy"] for c, v in seen["per_complexity"].items()},
        "seen_depth": {int(c): v["mean_depth"] for c, v in seen["per_complexity"].items()},
        "unseen_accuracy": {int(c): v["generated_accuracy"] for c, v in unseen["per_complexity"].items()},
        "unseen_depth": {int(c): v["mean_depth"] for c, v in unseen["per_complexity"].items()},
        "pooled_seen_accuracy": seen["overall"]["generated_accuracy"], "pooled_seen_depth": seen["overall"]["mean_depth"],
        "rho_seen": seen["spearman"], "rho_seen_interval": seen.get("spearman_interval"),
    }
    importance = summary.get("feature_importance")
    if importance:
        for scope in ("all_tokens", "inside_prompts"):
            numbers[f"execution_state_share_{scope}"] = importance[scope]["share"]["execution_state"]
            numbers[f"execution_state_share_{scope}_interval"] = importance[scope]["share_interval"]["execution_state"]
    largest = need.get("per_complexity", {}).get(str(max(numbers["seen_accuracy"])), {}).get("uniform")
    numbers["largest_seen_uniform"] = {u["depth"]: u["accuracy"] for u in largest} if largest else None
    need_seen = need["per_split"].get(SEEN, need["overall"])
    numbers["uniform_seen_accuracy"] = {u["depth"]: u["accuracy"] for u in need_seen["uniform"]}
    numbers["oracle_gain_matched"] = need_seen["oracle"]["gain_matched"]["value"]
    if "adaptive" in need_seen:
        adaptive = need_seen["adaptive"]
        numbers |= {"adaptive_gain": adaptive["gain"]["value"], "adaptive_gain_interval": adaptive["gain"]["interval"],
                    "rho_allocated_oracle": adaptive["rho"], "given_less": adaptive["allocation"]["less"]["share"],
                    "given_more": adaptive["allocation"]["more"]["share"]}
    return numbers


def penalty_onset(probe_log: Path) -> int | None:
    """The first probe step at which an adaptive run's compute penalty was above 0 (the gate opens when the validation
    probe's pooled token accuracy reaches 0.9, then ramps), None when it never was: such a run trained on the LM and
    iteration losses alone."""
    from .analysis import read_probe_log

    return _onset(read_probe_log(probe_log) if probe_log.exists() else [])


def _onset(records: list[dict]) -> int | None:
    return next((r["step"] for r in records if r.get("probe/compute_penalty", 0) > 0), None)


FINDING_4_FALL = 1.0  # protocol v4: a compute phase is a fall of the mean answer depth of at least one iteration
FINDING_4_HOLDS = "learn, then cut compute"


def finding_4_phases(probe_log: Path) -> dict | None:
    """Protocol v4's finding 4 for one adaptive run, from its validation probe log: the learned step (pooled token
    accuracy first at 0.9 of its maximum, `analysis.training_phases`), the mean answer depth at the first probe (d0),
    at the learned step (dl) and at the last (dend), the penalty's onset, and the verdict: "forced" (the penalty came
    on by the learned step), "no compute phase" (d0 - dend below `FINDING_4_FALL`), FINDING_4_HOLDS (less than half
    of the fall before the learned step) or "compute fell first". None without a probe log that logged the pooled
    token accuracy and answer depth."""
    from .analysis import read_probe_log, training_phases

    records = read_probe_log(probe_log) if probe_log.exists() else []
    if not records or any("probe/token_accuracy" not in r or "probe/answer_depth" not in r for r in records):
        return None
    phases = training_phases(records)
    d0, dl, dend = records[0]["probe/answer_depth"], phases["depth_when_learned"], phases["final_depth"]
    onset = _onset(records)
    if onset is not None and onset <= phases["learned_step"]:
        verdict = "forced"
    elif d0 - dend < FINDING_4_FALL:
        verdict = "no compute phase"
    else:
        verdict = FINDING_4_HOLDS if d0 - dl < (d0 - dend) / 2 else "compute fell first"
    return {"learned_step": phases["learned_step"], "d0": d0, "dl": dl, "dend": dend, "penalty_from_step": onset,
            "verdict": verdict}


def finding_1(n: dict) -> bool:
    """Depth follows complexity: every seen size answered >= 0.9 and rho(depth, size) on seen sizes >= 0.6."""
    return min(n["seen_accuracy"].values()) >= FINDING_1_ACCURACY and n["rho_seen"] >= FINDING_1_RHO


def finding_2(n: dict) -> bool:
    """No extrapolation: every unseen size's accuracy >= 0.3 below the mean seen accuracy, while the depth at
    every unseen size is at least the depth at the largest seen size."""
    if not n["unseen_accuracy"]:
        return False
    mean_seen = sum(n["seen_accuracy"].values()) / len(n["seen_accuracy"])
    largest = n["seen_depth"][max(n["seen_depth"])]
    return all(a <= mean_seen - FINDING_2_DROP for a in n["unseen_accuracy"].values()) and \
        all(d >= largest for d in n["unseen_depth"].values())


def depth_pays(n: dict) -> bool:
    """Depth pays: the adaptive gain (the compute of the cheapest uniform depth that reaches the model's accuracy,
    over its own) above 1 with its interval above 1."""
    interval = n.get("adaptive_gain_interval")
    return n.get("adaptive_gain") is not None and interval is not None and interval[0] > 1


def depth_needed(per_model: dict[str, dict[int, dict]], seeds=SEEDS) -> dict | None:
    """Depth is needed on the task: `fixed-1`'s accuracy at the largest seen size below 0.9 in at least 2 of 3 seeds,
    and the uniform-depth accuracy of `fixed-6`'s weights at that size rising with t, read as higher at t = max_depth
    than at t = 1, in at least 2 of 3 seeds as well. `holds` is None while the seeds still to come could decide it."""
    if "fixed-1" not in per_model and "fixed-6" not in per_model:
        return None
    need = len(seeds) - 1  # 2 of 3
    largest = {seed: n["seen_accuracy"][max(n["seen_accuracy"])] for seed, n in sorted(per_model.get("fixed-1", {}).items())}
    shallow = [accuracy < FINDING_1_ACCURACY for accuracy in largest.values()]
    curves = [n.get("largest_seen_uniform") for n in per_model.get("fixed-6", {}).values()]
    rising = [c[max(c)] > c[min(c)] for c in curves if c]
    met = [sum(shallow) >= need, sum(rising) >= need]
    possible = [sum(shallow) + len(seeds) - len(shallow) >= need, sum(rising) + len(seeds) - len(rising) >= need]
    holds = True if all(met) else False if not all(possible) else None
    return {"fixed_1_largest_accuracy": largest, "fixed_1_below": sum(shallow), "fixed_1_seeds": len(shallow),
            "fixed_6_rising": sum(rising), "fixed_6_seeds": len(rising), "holds": holds}


def finding_5(online: dict, early: dict) -> bool:
    """ANIRA-O reaches ANIRA-E's accuracy (within 0.02, pooled over seen sizes) with fewer iterations."""
    return online["pooled_seen_accuracy"] >= early["pooled_seen_accuracy"] - FINDING_5_TOLERANCE and \
        online["pooled_seen_depth"] < early["pooled_seen_depth"]


def finding_3(online: dict, early: dict, scope: str = "all_tokens") -> bool | None:
    """ANIRA-O's execution-state share of depth variance above ANIRA-E's, the intervals apart (seen sizes);
    None where the task has no execution-state annotations."""
    key = f"execution_state_share_{scope}"
    if key not in online or key not in early:
        return None
    return online[f"{key}_interval"][0] > early[f"{key}_interval"][1]


# Finding 3 on MANO (PROTOCOL.md, version 2): one grid with the length marker `<l=..>`, one with `<q>` in its place.
MANO_MARKER_GRIDS = {"marker": "mano", "no_marker": "mano-no-marker"}
MANO_MARKER_RULE = ("per seed, rho(depth, l) on seen sizes of ANIRA-E and ANIRA-O in both grids; drop = rho with the marker "
                    "minus rho with `<q>`; holds when (a) ANIRA-E's rho falls beyond its intervals (its interval with the "
                    "marker wholly above its interval with `<q>`) and (b) the drops' difference (ANIRA-E's drop minus "
                    "ANIRA-O's) is above 0 at its point and at the low end of its interval from the four runs' intervals "
                    "(interval arithmetic, each at its worst end, no bootstrap over runs); an undefined rho or a missing "
                    "interval does not hold")


def finding_3_marker(early_marker: dict, early_plain: dict, online_marker: dict, online_plain: dict) -> dict:
    """Finding 3 on MANO in one seed, from four runs' numbers (`run_numbers`: "rho_seen", "rho_seen_interval"): with
    the marker, l is one token ANIRA-E's router can read before any computation; with `<q>` it must be inferred, so
    ANIRA-E's rho(depth, l) should fall more than ANIRA-O's when the marker is removed. The rule is `MANO_MARKER_RULE`.

    The drops' interval is the conservative, bootstrap-free combination of the four runs' bootstrap intervals over
    prompts: low = (E_marker_low - E_plain_high) - (O_marker_high - O_plain_low), high the other way round. It is
    wider than a joint bootstrap would give; (a) asks that ANIRA-E's own fall is beyond its intervals, so that a rise
    of ANIRA-O's rho alone does not make the finding hold. Returns {"early_drop", "online_drop", "difference",
    "early_drop_interval", "online_drop_interval", "difference_interval", "early_apart", "holds", "why"}."""
    runs = {"ANIRA-E with the marker": early_marker, "ANIRA-E with <q>": early_plain,
            "ANIRA-O with the marker": online_marker, "ANIRA-O with <q>": online_plain}
    undefined = [name for name, n in runs.items() if n["rho_seen"] is None or n["rho_seen"] != n["rho_seen"]]
    no_interval = [name for name, n in runs.items() if not n.get("rho_seen_interval")
                   or any(v is None or v != v for v in n["rho_seen_interval"])]
    if undefined or no_interval:
        why = "; ".join(([f"rho undefined (constant depth) for {', '.join(undefined)}"] if undefined else [])
                        + ([f"no rho interval for {', '.join(no_interval)}"] if no_interval else []))
        return {"early_drop": None, "online_drop": None, "difference": None, "early_drop_interval": None,
                "online_drop_interval": None, "difference_interval": None, "early_apart": None, "holds": False, "why": why}
    (em, el, eh), (pm, pl, ph) = [(n["rho_seen"], *n["rho_seen_interval"]) for n in (early_marker, early_plain)]
    (om, ol, oh), (qm, ql, qh) = [(n["rho_seen"], *n["rho_seen_interval"]) for n in (online_marker, online_plain)]
    early_drop, online_drop = em - pm, om - qm
    early_drop_interval = [el - ph, eh - pl]
    online_drop_interval = [ol - qh, oh - ql]
    difference = early_drop - online_drop
    interval = [early_drop_interval[0] - online_drop_interval[1], early_drop_interval[1] - online_drop_interval[0]]
    early_apart = early_drop_interval[0] > 0
    holds = early_apart and difference > 0 and interval[0] > 0
    why = ("ANIRA-E's rho falls beyond its intervals and the drops' difference is above 0 with its interval" if holds else
           "ANIRA-E's rho intervals with and without the marker overlap" if not early_apart else
           "the drops' difference is not above 0" if difference <= 0 else
           "the drops' difference interval reaches 0")
    return {"early_drop": early_drop, "online_drop": online_drop, "difference": difference,
            "early_drop_interval": early_drop_interval, "online_drop_interval": online_drop_interval,
            "difference_interval": interval, "early_apart": early_apart, "holds": holds, "why": why}


def mano_marker_finding(study_dir: Path = STUDY_DIR, quick: bool = False, seeds=SEEDS) -> dict:
    """Finding 3 on MANO over seeds, across the two MANO grids (`MANO_MARKER_GRIDS`): per seed whose four runs
    (anira-e and anira-o in `mano` and in `mano-no-marker`) have finished, their seen-size rho with its interval and
    `finding_3_marker`'s verdict; the other seeds (every seed of `seeds`, and any other seed with one of the four
    runs) are pending, each with the runs it lacks and why. {"rule", "seeds" {seed: {...}}, "holds_seeds",
    "decided_seeds", "pending" [{"seed", "missing"}]}; nothing is run or written."""
    models = ("anira-e", "anira-o")
    finished, missing = {}, {}
    for variant, grid in MANO_MARKER_GRIDS.items():
        folders, lacking = grid_state(grid, study_dir, quick=quick, seeds=seeds)
        for (model, seed), folder in folders.items():
            if model in models:
                finished[(variant, model, seed)] = folder
        missing |= {(variant, m["model"], m["seed"]): m["why"] for m in lacking if m["model"] in models}
    every_seed = sorted({seed for _, _, seed in finished} | set(seeds))
    decided, pending = {}, []
    for seed in every_seed:
        keys = [(variant, model, seed) for model in models for variant in MANO_MARKER_GRIDS]
        if not all(key in finished for key in keys):
            pending.append({"seed": seed, "missing": [
                f"{MANO_MARKER_GRIDS[v]}/{run_name(m, s)} ({missing.get((v, m, s), f'no line in {RUNS_FILE}')})"
                for v, m, s in keys if (v, m, s) not in finished]})
            continue
        numbers = {key: run_numbers(json.loads((finished[key] / "report.json").read_text())) for key in keys}
        sizes = {key: sorted(n["seen_accuracy"]) for key, n in numbers.items()}
        if len({tuple(v) for v in sizes.values()}) > 1:
            raise ValueError(f"MANO seed {seed}: the four runs' seen sizes differ ("
                             + ", ".join(f"{MANO_MARKER_GRIDS[v]}/{run_name(m, s)}: {sizes[(v, m, s)]}" for v, m, s in keys)
                             + "); finding 3 compares rho on the same seen sizes")
        rho = {f"{model.replace('anira-', '')}_{variant}": {"rho": numbers[(variant, model, seed)]["rho_seen"],
                                                             "interval": numbers[(variant, model, seed)]["rho_seen_interval"]}
               for model in models for variant in MANO_MARKER_GRIDS}
        decided[str(seed)] = {"rho_seen": rho, **finding_3_marker(
            numbers[("marker", "anira-e", seed)], numbers[("no_marker", "anira-e", seed)],
            numbers[("marker", "anira-o", seed)], numbers[("no_marker", "anira-o", seed)])}
    return {"grids": MANO_MARKER_GRIDS, "rule": MANO_MARKER_RULE, "seeds": decided,
            "holds_seeds": sum(d["holds"] for d in decided.values()), "decided_seeds": len(decided), "pending": pending}


def format_mano_marker(finding: dict) -> str:
    """Markdown: finding 3 on MANO, one row per seed with its four runs, then the count and the pending seeds."""
    lines = [f"Finding 3 on MANO (rho(depth, l) on seen sizes, with the marker `<l=..>`: grid `{finding['grids']['marker']}`, "
             f"with `<q>`: grid `{finding['grids']['no_marker']}`). Rule: {finding['rule']}.", ""]

    def drop(value, interval) -> str:
        return _fmt(value) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "")

    def cell(r: dict) -> str:
        return drop(r["rho"], r["interval"])

    if finding["seeds"]:
        lines += ["| seed | ANIRA-E rho, marker | ANIRA-E rho, `<q>` | ANIRA-E drop | ANIRA-O rho, marker | ANIRA-O rho, `<q>` | "
                  "ANIRA-O drop | drops' difference | holds |", "|---|---|---|---|---|---|---|---|---|"]
        for seed, d in finding["seeds"].items():
            r = d["rho_seen"]
            lines.append(f"| {seed} | {cell(r['e_marker'])} | {cell(r['e_no_marker'])} | "
                         f"{drop(d['early_drop'], d['early_drop_interval'])} | {cell(r['o_marker'])} | {cell(r['o_no_marker'])} | "
                         f"{drop(d['online_drop'], d['online_drop_interval'])} | {drop(d['difference'], d['difference_interval'])} | "
                         f"{'yes' if d['holds'] else 'no'}: {d['why']} |")
        lines += ["", f"Finding 3 on MANO holds in {finding['holds_seeds']} of {finding['decided_seeds']} seeds with all four runs."]
    else:
        lines.append("No seed has all four runs (anira-e and anira-o in both grids) yet.")
    if finding["pending"]:
        lines += ["", "Pending: " + "; ".join(f"seed {p['seed']}: {', '.join(p['missing'])}" for p in finding["pending"]) + "."]
    return "\n".join(lines)


def study_report(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False) -> dict:
    """`study_summary`, written to `<task>/results.md` and `<task>/summary.json`."""
    version = version or protocol_version(task)
    result = study_summary(task, study_dir, version, quick)
    out = study_dir / task
    (out / ("summary-quick.json" if quick else "summary.json")).write_text(json.dumps(
        {k: v for k, v in result.items() if k != "markdown"}, indent=2) + "\n")
    (out / ("results-quick.md" if quick else "results.md")).write_text(result["markdown"] + "\n")
    return result


def study_summary(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False) -> dict:
    """Per model, every seed's numbers and their summary over seeds; per finding, how many seeds it holds in
    (nothing is written)."""
    version = version or protocol_version(task)
    from .statistics import seed_summary

    entries = [r for r in read_runs(task, study_dir) if r["protocol_version"] == version and r.get("quick", False) == quick]
    if not entries:
        raise ValueError(f"no runs of protocol {version} in {study_dir / task / RUNS_FILE}: run `examples/study.py run --task {task}` first")
    per_model: dict[str, dict[int, dict]] = {}
    for entry in entries:
        folder = study_dir / task / entry["folder"]
        numbers = run_numbers(json.loads((folder / "report.json").read_text())) | {"steps": entry["steps"]}
        if MODELS[entry["model"]][0] != "fixed":
            from .trainer import PROBE_LOG_FILE

            numbers["penalty_from_step"] = penalty_onset(folder / PROBE_LOG_FILE)
            numbers["phases"] = finding_4_phases(folder / PROBE_LOG_FILE)
        per_model.setdefault(entry["model"], {})[entry["seed"]] = numbers

    def over_seeds(model: str, key, target=None) -> dict | None:
        values = [key(n) for n in per_model[model].values()]
        values = [v for v in values if v is not None and v == v]
        return seed_summary(values, target) if values else None

    models = {}
    for model, seeds in sorted(per_model.items()):
        models[model] = {
            "seeds": {str(s): n for s, n in sorted(seeds.items())},
            "pooled_seen_accuracy": over_seeds(model, lambda n: n["pooled_seen_accuracy"]),
            "pooled_seen_depth": over_seeds(model, lambda n: n["pooled_seen_depth"]),
            "min_seen_accuracy": over_seeds(model, lambda n: min(n["seen_accuracy"].values()), FINDING_1_ACCURACY),
            "rho_seen": over_seeds(model, lambda n: n["rho_seen"], FINDING_1_RHO),
            "adaptive_gain": over_seeds(model, lambda n: n.get("adaptive_gain"), GAIN_GOAL),
            "oracle_gain_matched": over_seeds(model, lambda n: n["oracle_gain_matched"]),
        }
        if MODELS[model][0] != "fixed":
            models[model]["finding_1_seeds"] = sum(finding_1(n) for n in seeds.values())
            models[model]["finding_2_seeds"] = sum(finding_2(n) for n in seeds.values())
            models[model]["depth_pays_seeds"] = sum(depth_pays(n) for n in seeds.values())
            models[model]["finding_4_seeds"] = sum((n.get("phases") or {}).get("verdict") == FINDING_4_HOLDS
                                                   for n in seeds.values())
    findings = {}
    needed = depth_needed(per_model)
    if needed is not None:
        findings["depth_needed"] = needed
    if "anira-o" in per_model and "anira-e" in per_model:
        pairs = [s for s in per_model["anira-o"] if s in per_model["anira-e"]]
        findings["finding_5_seeds"] = sum(finding_5(per_model["anira-o"][s], per_model["anira-e"][s]) for s in pairs)
        findings["finding_5_pairs"] = len(pairs)
        three = [finding_3(per_model["anira-o"][s], per_model["anira-e"][s]) for s in pairs]
        if any(value is not None for value in three):
            findings["finding_3_seeds"] = sum(bool(value) for value in three)
    if task in MANO_MARKER_GRIDS.values() and version == protocol_version(task):  # finding 3 reads both MANO grids
        findings["finding_3_marker"] = mano_marker_finding(study_dir, quick)
    from .operating_curve import grid_counts

    result = {"task": task, "protocol_version": version, "runs": len(entries), "models": models, "findings": findings,
              "operating_curve": grid_counts(task, study_dir, quick)}
    result["markdown"] = format_study(result)
    return result


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _onset_cell(n: dict) -> str:
    if "penalty_from_step" not in n:
        return "-"
    return "never" if n["penalty_from_step"] is None else str(n["penalty_from_step"])


def rho_cell(n: dict) -> str:
    """A run's seen-size rho (`run_numbers`) with its bootstrap interval when it is defined."""
    interval = n.get("rho_seen_interval")
    defined = n["rho_seen"] == n["rho_seen"]  # NaN: constant depth
    return _fmt(n["rho_seen"]) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval and defined else "")


def gain_cell(n: dict) -> str:
    """A run's adaptive gain (`run_numbers`) with its bootstrap interval when it has one."""
    gain, interval = n.get("adaptive_gain"), n.get("adaptive_gain_interval")
    if gain is not None and gain != gain:  # no uniform depth of its weights reaches its accuracy
        return "undefined (above every uniform depth)"
    return _fmt(gain) + (f" [{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "")


def _span(stat: dict) -> str:
    """A range over seeds, 'low to high' (a dash would run into a negative bound)."""
    return f"{_fmt(stat['min'])} to {_fmt(stat['max'])}"


def _over(stat: dict | None) -> str:
    if not stat:
        return "-"
    if stat["seeds"] < 2:
        return f"{_fmt(stat['mean'])} (1 seed)"
    interval = f"t-interval [{_fmt(stat['low'])}, {_fmt(stat['high'])}]"
    return f"{_fmt(stat['mean'])} (range {_span(stat)}, {interval}, {stat['seeds']} seeds)"


def depth_needed_line(needed: dict) -> str:
    """`depth_needed`'s counts and verdict in one sentence (the report and the main job)."""
    verdict = {True: "holds", False: "does not hold", None: "undecided (seeds to come)"}[needed["holds"]]
    values = ", ".join(f"{_fmt(v, 3)} (seed {seed})" for seed, v in needed["fixed_1_largest_accuracy"].items())
    return (f"Depth is needed: `fixed-1`'s accuracy at the largest seen size {values or '-'}, below {FINDING_1_ACCURACY} in "
            f"{needed['fixed_1_below']} of {needed['fixed_1_seeds']} seeds; `fixed-6`'s weights more accurate there at their "
            f"full depth than at one iteration in {needed['fixed_6_rising']} of {needed['fixed_6_seeds']} (each needed in at "
            f"least {len(SEEDS) - 1} of {len(SEEDS)}): {verdict}.")


def format_study(result: dict) -> str:
    """Markdown: one row per (model, seed), then one row per model over seeds, then the findings' seed counts."""
    lines = [f"# {result['task']}: protocol {result['protocol_version']}, {result['runs']} runs", "",
             "Per run (accuracy of the generated answer on the test prompts; depth at the answer positions; rho over "
             "prompts with its bootstrap interval; gains from the depth-need analysis on the seen sizes):", "",
             "| model | seed | seen accuracy per size | unseen accuracy | seen depth per size | rho (seen) | "
             "adaptive gain | oracle gain (matched) | F1 | F2 | penalty on from step |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, m in result["models"].items():
        for seed, n in m["seeds"].items():
            rho, gain = rho_cell(n), gain_cell(n)
            adaptive = MODELS[model][0] != "fixed"
            lines.append(
                f"| {model} | {seed} | {' / '.join(_fmt(v) for v in n['seen_accuracy'].values())} | "
                f"{' / '.join(_fmt(v) for v in n['unseen_accuracy'].values())} | "
                f"{' / '.join(_fmt(v) for v in n['seen_depth'].values())} | {rho} | {gain if adaptive else '-'} | "
                f"{_fmt(n['oracle_gain_matched'])} | {('yes' if finding_1(n) else 'no') if adaptive else '-'} | "
                f"{('yes' if finding_2(n) else 'no') if adaptive else '-'} | {_onset_cell(n) if adaptive else '-'} |")
    lines += ["", "Penalty on from step: the adaptive models' compute penalty is 0 until the validation probe's token "
                  "accuracy, pooled over the seen sizes, reaches 0.9, then ramps (the protocol's gate); the first probe "
                  "step with a penalty above 0, "
                  "or never: such a run trained on the LM and iteration losses alone, and any fall of its depth is "
                  "theirs."]
    lines += ["", "Over seeds (mean, range, and a t-interval over training runs, not over prompts):", "",
              "| model | pooled seen accuracy | lowest seen-size accuracy | pooled seen depth | rho (seen) | adaptive gain | "
              "F1 holds | F2 holds | depth pays |", "|---|---|---|---|---|---|---|---|---|"]
    for model, m in result["models"].items():
        seeds = len(m["seeds"])
        f1, f2, pays = (f"{m[key]} of {seeds}" if key in m else "-"
                        for key in ("finding_1_seeds", "finding_2_seeds", "depth_pays_seeds"))
        lines.append(f"| {model} | {_over(m['pooled_seen_accuracy'])} | {_over(m['min_seen_accuracy'])} | "
                     f"{_over(m['pooled_seen_depth'])} | {_over(m['rho_seen'])} | {_over(m['adaptive_gain'])} | {f1} | {f2} | "
                     f"{pays} |")
    lines += ["", "Depth pays: the adaptive gain's interval above 1, seeds counted (an undefined gain, where the model is more "
                  "accurate than its weights at every uniform depth, is not counted: the rule asks for a gain)."]
    phases = [(model, seed, n["phases"]) for model, m in result["models"].items() for seed, n in m["seeds"].items()
              if n.get("phases")]
    if phases:
        lines += ["", "Finding 4 (protocol v4: training runs in two phases, accuracy first, then compute falls; the validation "
                      "probe's mean answer depth at its first probe d0, at the learned step dl (pooled token accuracy first "
                      "at 0.9 of its maximum) and at the end dend):", "",
                  "| model | seed | learned step | d0 | dl | dend | penalty on from step | verdict |", "|---|---|---|---|---|---|---|---|"]
        for model, seed, p in phases:
            onset = "never" if p["penalty_from_step"] is None else p["penalty_from_step"]
            lines.append(f"| {model} | {seed} | {p['learned_step']} | {_fmt(p['d0'])} | {_fmt(p['dl'])} | {_fmt(p['dend'])} | "
                         f"{onset} | {p['verdict']} |")
        counts = "; ".join(f"{model} {m['finding_4_seeds']} of {len(m['seeds'])} seeds" for model, m in result["models"].items()
                           if "finding_4_seeds" in m)
        lines += ["", f"Finding 4 ({FINDING_4_HOLDS!r}, less than half of a fall of at least {FINDING_4_FALL:g} iteration "
                      f"before the learned step, nothing forcing it): {counts}."]
    curve = result.get("operating_curve")
    if curve:
        lines += ["", f"Depth pays for ANIRA-O at a halting threshold chosen on validation (protocol v3, the same weights "
                      f"at thresholds 0.1-0.9): {curve['pays_seeds']} of {curve['seeds']} seeds; every threshold and seed: "
                      f"[{curve['file']}]({curve['file']})."]
    needed = result["findings"].get("depth_needed")
    if needed:
        lines += ["", depth_needed_line(needed)]
    if result["findings"]:
        f = result["findings"]
        if "finding_5_seeds" in f:  # the MANO grids carry finding 3 (both grids) before a seed pair of their own
            lines += ["", f"Finding 5 (ANIRA-O as accurate as ANIRA-E, within {FINDING_5_TOLERANCE}, with fewer iterations): "
                          f"{f['finding_5_seeds']} of {f['finding_5_pairs']} seeds."]
        if "finding_3_seeds" in f:
            lines += ["", "| seed | ANIRA-O execution-state share | ANIRA-E execution-state share | holds |", "|---|---|---|---|"]
            online, early = result["models"]["anira-o"]["seeds"], result["models"]["anira-e"]["seeds"]
            for seed in sorted(set(online) & set(early), key=int):
                o, e = online[seed], early[seed]
                key = "execution_state_share_all_tokens"
                cell = lambda n: f"{_fmt(n[key], 3)} [{_fmt(n[key + '_interval'][0], 3)}, {_fmt(n[key + '_interval'][1], 3)}]"  # noqa: E731
                lines.append(f"| {seed} | {cell(o)} | {cell(e)} | {'yes' if finding_3(o, e) else 'no'} |")
            lines += ["", "Finding 3 (ANIRA-O's execution-state share of depth variance above ANIRA-E's, intervals apart, "
                          f"seen sizes): {f['finding_3_seeds']} of {f['finding_5_pairs']} seeds."]
    if "finding_3_marker" in result["findings"]:
        lines += ["", format_mano_marker(result["findings"]["finding_3_marker"])]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the figures over seeds
BAND = "min-max over seeds"  # what every band of the study's figures spans (a t-interval of 3 seeds is 4.3 sd wide)
FIGURES = {"complexity": "accuracy_depth", "allocated_needed": "depth_allocated_needed", "dynamics": "training_dynamics"}


def band(values: dict[int, float]) -> dict:
    """One quantity over seeds: {"seeds" {seed: value}, "mean", "min", "max", "count"}; seeds whose value is missing
    or NaN (an undefined rho) are left out and not counted."""
    finite = {seed: float(v) for seed, v in sorted(values.items()) if v is not None and v == v}
    if not finite:
        return {"seeds": {}, "mean": float("nan"), "min": float("nan"), "max": float("nan"), "count": 0}
    numbers = list(finite.values())
    return {"seeds": finite, "mean": sum(numbers) / len(numbers), "min": min(numbers), "max": max(numbers),
            "count": len(numbers)}


def grid_state(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False,
               seeds=SEEDS) -> tuple[dict[tuple[str, int], Path], list[dict]]:
    """The finished runs of a grid, {(model, seed): its folder}, and the runs the grid (every model of `MODELS` at
    every seed of `seeds`) still lacks, [{"run", "model", "seed", "why"}]: no line in runs.json, or a line whose folder
    holds no report.json. Runs outside the grid (another seed) count as finished when their report is there."""
    version = version or protocol_version(task)
    finished, missing = {}, []
    entries = {(r["model"], r["seed"]): r for r in read_runs(task, study_dir)
               if r["protocol_version"] == version and r.get("quick", False) == quick}
    for model, seed in sorted(set(entries) | {(m, s) for m in MODELS for s in seeds},
                              key=lambda key: (list(MODELS).index(key[0]) if key[0] in MODELS else len(MODELS), key)):
        entry = entries.get((model, seed))
        folder = study_dir / task / entry["folder"] if entry else None
        if entry is None:
            missing.append({"run": run_name(model, seed), "model": model, "seed": seed, "why": f"no line in {RUNS_FILE}"})
        elif not (folder / "report.json").exists():
            missing.append({"run": run_name(model, seed), "model": model, "seed": seed,
                            "why": f"{entry['folder']}/report.json is missing"})
        else:
            finished[(model, seed)] = folder
    return finished, missing


def _sizes(summary: dict, split: str) -> list[int]:
    return sorted(int(c) for c in summary["report"].get(split, {"per_complexity": {}})["per_complexity"])


def _probe_curves(logs: dict[int, list[dict]], sizes: list[int]) -> dict:
    """Per size, the probe's accuracy and depth over steps, one band per logged step over the seeds that logged it."""
    metric = "answer_exact" if all(f"probe/answer_exact@{sizes[0]}" in log[0] for log in logs.values() if log) else "accuracy"
    steps = sorted({r["step"] for log in logs.values() for r in log})
    by_step = {seed: {r["step"]: r for r in log} for seed, log in logs.items()}

    def over(key: str) -> list[dict]:
        return [band({seed: records[step].get(key) for seed, records in by_step.items() if step in records}) for step in steps]

    return {"accuracy_metric": f"probe/{metric}@<size>", "steps": steps, "sizes": sizes,
            "accuracy": {c: over(f"probe/{metric}@{c}") for c in sizes}, "depth": {c: over(f"probe/depth@{c}") for c in sizes}}


def study_curves(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False,
                 seeds=SEEDS) -> dict:
    """What the study's figures draw, from the finished runs' reports and probe logs (nothing is run): per model and
    size the test accuracy, the mean answer depth and the oracle depth of the depth-need analysis, and per size the
    validation probe's accuracy and depth over steps, each a `band` over seeds; the grid's missing runs."""
    version = version or protocol_version(task)
    from .analysis import read_probe_log
    from .trainer import PROBE_LOG_FILE

    folders, missing = grid_state(task, study_dir, version, quick, seeds)
    if not folders:
        raise ValueError(f"no finished run of protocol {version} in {study_dir / task / RUNS_FILE} (missing: "
                         f"{', '.join(m['run'] for m in missing)}): run `examples/study.py run --task {task}` first")
    finished = {key: json.loads((folder / "report.json").read_text()) for key, folder in folders.items()}
    train_sizes = sorted({c for summary in finished.values() for c in summary["train_sizes"]})
    models = {}
    for model in dict.fromkeys(model for model, _ in finished):
        runs = {seed: summary for (m, seed), summary in finished.items() if m == model}
        sizes = sorted({c for summary in runs.values() for split in (SEEN, UNSEEN) for c in _sizes(summary, split)})

        def per_size(value) -> dict[int, dict]:
            return {c: band({seed: value(summary, str(c)) for seed, summary in runs.items()}) for c in sizes}

        def evaluated(key):
            return lambda summary, c: next((summary["report"][split]["per_complexity"][c][key] for split in (SEEN, UNSEEN)
                                            if c in summary["report"].get(split, {}).get("per_complexity", {})), None)

        oracle = per_size(lambda summary, c: (summary.get("depth_need") or {}).get("per_complexity", {})
                          .get(c, {}).get("oracle", {}).get("mean_depth"))
        logs = {seed: read_probe_log(folders[(model, seed)] / PROBE_LOG_FILE) for seed in runs
                if (folders[(model, seed)] / PROBE_LOG_FILE).exists()}
        models[model] = {
            "seeds": sorted(runs), "max_depth": max(summary["max_depth"] for summary in runs.values()),
            "accuracy": per_size(evaluated("generated_accuracy")), "depth": per_size(evaluated("mean_depth")),
            "oracle_depth": oracle if any(b["count"] for b in oracle.values()) else None,
            "dynamics": _probe_curves(logs, train_sizes) if any(logs.values()) else None,
        }
    return {"task": task, "protocol_version": version, "quick": quick, "band": BAND, "train_sizes": train_sizes,
            "finished": [run_name(*key) for key in finished], "missing": missing, "models": models}


def missing_note(curves: dict) -> str:
    """One line for a figure or a printout: which runs of the grid are not drawn, and why."""
    if not curves["missing"]:
        return f"all {len(curves['finished'])} runs of the grid drawn"
    by_model: dict[str, list[str]] = {}
    for m in curves["missing"]:
        by_model.setdefault(m["model"], []).append(str(m["seed"]))
    return (f"grid in progress: {len(curves['finished'])} runs drawn; missing "
            + "; ".join(f"{model} seed{'s' if len(s) > 1 else ''} {', '.join(s)}" for model, s in by_model.items()))


def study_figures(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False,
                  seeds=SEEDS) -> dict:
    """The study's three figures of a task (whatever part of the grid has finished), in `study_dir/<task>/`:
    accuracy and depth against size (the paper's figure 3), allocated against needed depth for ANIRA-E and ANIRA-O
    (figure 2), the validation probe over training (figures 4-5). {"paths", "missing", "note"}."""
    version = version or protocol_version(task)
    from .figures import plot_study_allocated_needed, plot_study_complexity, plot_study_dynamics

    curves = study_curves(task, study_dir, version, quick, seeds)
    suffix = "-quick" if quick else ""
    out = study_dir / task
    paths = [plot_study_complexity(curves, out / f"{FIGURES['complexity']}{suffix}.png"),
             plot_study_allocated_needed(curves, out / f"{FIGURES['allocated_needed']}{suffix}.png"),
             plot_study_dynamics(curves, out / f"{FIGURES['dynamics']}{suffix}.png")]
    return {"paths": paths, "missing": curves["missing"], "note": missing_note(curves), "curves": curves}


# ----------------------------------------------------------------------------- the study's answer, for the main job
PROTOCOL_FILE = "experiments/study/PROTOCOL.md"
SHIPPED_SEED = 0  # the protocol ships seed 0 of anira-e, anira-o and fixed-6 in hub_configs, whatever the others give


def _range(stat: dict | None) -> str:
    if not stat:
        return "-"
    return f"{_fmt(stat['mean'])} ({_span(stat)}, {stat['seeds']} seed{'s' if stat['seeds'] > 1 else ''})"


def study_answer(task: str, study_dir: Path = STUDY_DIR, version: str | None = None) -> dict:
    """What the main job shows before its own short run: the study's finished runs of `task` (seed 0, the shipped
    run, beside the range over seeds, with the depth-need gains and the findings' seed counts), or, while none has
    finished, that the study is pending. {"status": "results" | "pending" | "no grid", "text", ...}; the numbers come
    from the runs' reports (the study's own test prompts), nothing is evaluated here."""
    if task not in GRIDS:
        return {"status": "no grid", "task": task, "protocol": PROTOCOL_FILE,
                "text": f"The replicated study ({PROTOCOL_FILE}) has no grid for {task} (its grids: {', '.join(GRIDS)})."}
    version = version or protocol_version(task)
    folders, missing = grid_state(task, study_dir, version)
    expected = len(MODELS) * len(SEEDS)
    if not folders:
        return {"status": "pending", "task": task, "protocol": PROTOCOL_FILE, "missing": [m["run"] for m in missing],
                "text": f"The replicated study's runs on {task} are pending: none of its {expected} runs (protocol {version}, "
                        f"{PROTOCOL_FILE}) has finished, so it has no result yet. "
                        + (f"`python examples/study.py search --task {GRIDS[task]['search']}` chooses its recipe, then "
                           if "search" in GRIDS[task] else "")
                        + f"`python examples/study.py run --task {task}` trains them; until then the numbers below are "
                        "one short run's, not the study's."}
    result = study_summary(task, study_dir, version)
    curves = study_curves(task, study_dir, version)
    lines = [f"| model | seed {SHIPPED_SEED}: seen accuracy | seen depth | rho(depth, size), seen | unseen accuracy | "
             "adaptive gain | oracle gain (matched) | over seeds: seen accuracy | rho, seen | adaptive gain | F1 holds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {model: i for i, model in enumerate(MODELS)}
    result["models"] = dict(sorted(result["models"].items(), key=lambda item: order.get(item[0], len(order))))
    for model, m in result["models"].items():
        n = m["seeds"].get(str(SHIPPED_SEED))
        adaptive = MODELS[model][0] != "fixed"
        if n is None:
            first = [f"seed {SHIPPED_SEED} pending"] + ["-"] * 5
        else:
            rho, gain = rho_cell(n), gain_cell(n) if adaptive else "-"
            first = [_fmt(n["pooled_seen_accuracy"]), _fmt(n["pooled_seen_depth"]), rho,
                     " / ".join(_fmt(v) for v in n["unseen_accuracy"].values()) or "-", gain, _fmt(n["oracle_gain_matched"])]
        f1 = f"{m['finding_1_seeds']} of {len(m['seeds'])}" if "finding_1_seeds" in m else "-"
        lines.append(f"| {model} | " + " | ".join(first) + f" | {_range(m['pooled_seen_accuracy'])} | {_range(m['rho_seen'])} | "
                     f"{_range(m['adaptive_gain']) if adaptive else '-'} | {f1} |")
    seen = ", ".join(str(c) for c in curves["train_sizes"])
    head = (f"The replicated study ({PROTOCOL_FILE}, protocol {version}) on {task}: {len(folders)} of {expected} runs finished"
            + (f"; still missing: {', '.join(m['run'] for m in missing)}" if missing else "") + ". "
            f"Seed {SHIPPED_SEED} of anira-e, anira-o and fixed-6 is the run the protocol ships in hub_configs; the ranges are "
            f"over every finished seed. Its test prompts are the study's own (sizes {seen} seen in training), not this job's; "
            "gains from the depth-need analysis on the seen sizes (compute of the cheapest uniform depth at the same "
            "accuracy over the model's own).")
    findings = result["findings"]
    tail = [f"Finding 1 (seen accuracy >= {FINDING_1_ACCURACY} and rho >= {FINDING_1_RHO}): "
            + "; ".join(f"{model} {m['finding_1_seeds']} of {len(m['seeds'])} seeds" for model, m in result["models"].items()
                        if "finding_1_seeds" in m) + "."] if any("finding_1_seeds" in m for m in result["models"].values()) else []
    if "finding_5_seeds" in findings:
        tail.append(f"Finding 5 (ANIRA-O as accurate with fewer iterations): {findings['finding_5_seeds']} of "
                    f"{findings['finding_5_pairs']} seeds.")
    pays = [f"{model} {m['depth_pays_seeds']} of {len(m['seeds'])} seeds" for model, m in result["models"].items()
            if "depth_pays_seeds" in m]
    if pays:
        tail.append("Depth pays (adaptive gain with its interval above 1): " + "; ".join(pays) + ".")
    if "depth_needed" in findings:
        tail.append(depth_needed_line(findings["depth_needed"]))
    return {"status": "results", "task": task, "protocol": PROTOCOL_FILE, "runs": len(folders), "expected": expected,
            "missing": [m["run"] for m in missing], "table": "\n".join(lines),
            "text": "\n\n".join([head, "\n".join(lines), *tail]), "summary": {k: v for k, v in result.items() if k != "markdown"},
            "curves": curves}

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
GPU several processes share the device (`--processes`, default 4), each with its own CUDA context. Since protocol
version 5 a run trains with the compiled training forward unless it had started before (`execution_args`).

The grids of MANO and of CLRS algorithms take their recipe from a recipe search declared here beside `GRIDS`
(`SEARCHES`): a fixed list of candidates, each trained once as `fixed-6` with `SEARCH_SEED` (not a study seed),
scored on the validation split only, the winner picked by the rule of `study_search.select_recipe`.

The rest of the study reads what this module records: `study_search` runs the recipe searches, `study_findings` holds the
per-run numbers and the protocol's rules for each finding, and `study_report` the tables, figures and the main job's
answer over seeds.
"""

import contextlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

from .study_runner import REPO, RUNNER_LOCK, Job, run_processes

STUDY_DIR = REPO / "experiments" / "study"
SEEDS = (0, 1, 2)

# Every config field the study sets; the rest are AniraConfig's defaults (RMSNorm eps, rope theta 10000, ...).
SHAPE = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=4, num_prelude_layers=1,
             num_core_layers=1, num_coda_layers=1, injection="add", min_depth=1, max_depth=6)
ADAPTIVE = dict(iteration_loss_weight=0.5, compute_penalty=0.003)
PAPER_OBJECTIVE = dict(iteration_loss_weight=0.0, compute_penalty=0.003)  # loss = LM loss + compute penalty only
MODELS = {  # name: (depth_mode, config fields)
    "anira-e": ("early", dict(**ADAPTIVE, depth_init_bias=0.0, router_gradient="full", router_sampling="gumbel")),
    "anira-o": ("online", dict(**ADAPTIVE, depth_init_bias=3.0, halting_objective="straight_through", halting_threshold=0.5)),
    "fixed-6": ("fixed", dict(iteration_loss_weight=0.0)),
    "fixed-3": ("fixed", dict(iteration_loss_weight=0.0, max_depth=3)),
    "fixed-1": ("fixed", dict(iteration_loss_weight=0.0, max_depth=1)),
    # Protocol v6, amended before its runs: ANIRA-E and ANIRA-O with the paper's objective (LM loss + compute penalty,
    # no iteration loss), beside the two above (experiments/o_depth_collapse: the iteration loss takes ANIRA-O to one
    # iteration within a few hundred steps, before it learns)
    "anira-e-paper": ("early", dict(**PAPER_OBJECTIVE, depth_init_bias=0.0, router_gradient="full", router_sampling="gumbel")),
    "anira-o-paper": ("online", dict(**PAPER_OBJECTIVE, depth_init_bias=3.0, halting_objective="straight_through",
                                     halting_threshold=0.5)),
}
V1_MODELS = ("anira-e", "anira-o", "fixed-6", "fixed-3", "fixed-1")  # a grid's models unless it names its own
V6_MODELS = (*V1_MODELS, "anira-e-paper", "anira-o-paper")  # from protocol v6: the paper's objective beside ours


def grid_models(task: str) -> list[str]:
    """The models of a grid (`GRIDS[task]["models"]`, else `V1_MODELS`), in its order."""
    if task not in GRIDS:
        raise ValueError(f"the study has grids for {sorted(GRIDS)}, not {task!r}")
    return list(GRIDS[task].get("models", V1_MODELS))


def grid_size(task: str) -> int:
    """The runs a grid declares: each of its models at each of the study's seeds."""
    return len(grid_models(task)) * len(SEEDS)


COMMON_ARGS = ["--learning_rate", "3e-3", "--warmup_steps", "200", "--lr_scheduler_type", "cosine", "--weight_decay", "0.0",
               "--max_grad_norm", "1.0", "--per_device_train_batch_size", "64", "--probe_steps", "200",
               "--probe_per_size", "64", "--logging_steps", "200", "--save_steps", "1000", "--report_to", "none",
               "--disable_tqdm", "true", "--padding_free", "true"]
ADAPTIVE_ARGS = ["--penalty_gate_accuracy", "0.9", "--penalty_ramp_steps", "1000"]
DEPO_PARAMS = {"num_nodes": 8, "num_queries": 6, "supervise_all_queries": True, "edge_format": "token", "hop_format": "unary"}
GRIDS = {
    "depo": dict(
        family="depo", max_position_embeddings=256,
        data=["--task", "depo", "--task_params", json.dumps(DEPO_PARAMS),
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
# Recipe searches (`study_search.run_search`): tasks whose recipe is chosen on the validation split before their grid
# runs. Declared before any search result exists; a candidate is one `examples/train.py` recipe (data, schedule,
# overrides of COMMON_ARGS), trained once per variant (task parameters added to the candidate's) as SEARCH_MODEL with
# SEARCH_SEED for the search's `steps`, the budget the grid then trains the chosen recipe for too. Scored by the
# exact match of the generated answers on the validation split per seen size; `study_search.select_recipe` picks
# (the candidates' order is the preference: nearest the paper first). Why these candidates: docs/tasks.md (MANO's
# prompt space and splits, CLRS's lengths and serial depth) and experiments/study/PROTOCOL.md, version 2.
SEARCH_SEED = 100  # not in SEEDS: no study run repeats a search run's initialisation and data order
SEARCH_MODEL = "fixed-6"  # the most compute and no penalty schedule: a recipe it does not learn, no model of the grid does
SEARCH_ACCURACY = 0.9  # the rule's bar, finding 1's accuracy
SEARCH_FILE = "search.json"
_MANO = dict(train_sizes=[1, 2, 3, 4], extrapolation_sizes=[5, 6], num_train=100_000, overrides={"--weight_decay": "0.1"})
_MANO_VARIANTS = {"marker": {"use_length_marker": True}, "no-marker": {"use_length_marker": False}}
_CLRS = dict(num_train=100_000)
_CURRICULUM = dict(curriculum_accuracy=0.8, curriculum_metric="answer_exact")  # unlock on whole answers, not tokens
_DEPO = dict(task_params=DEPO_PARAMS, train_sizes=[1, 2, 3, 4], extrapolation_sizes=[5, 6], num_train=100_000)  # v1's data
DEPO_SINGLE_PARAMS = {"num_nodes": 8, "num_queries": 1, "edge_format": "token", "hop_format": "unary"}
_DEPO_V7 = dict(task_params=DEPO_SINGLE_PARAMS, train_sizes=[1, 2, 3, 4], extrapolation_sizes=[5, 6], num_train=500_000,
                overrides={"--per_device_train_batch_size": "128"})
_DEPO_V8 = {**_DEPO_V7, "overrides": {**_DEPO_V7["overrides"], "--learning_rate": "1e-3"}}
DEPO_HIDDEN_PARAMS = {**DEPO_SINGLE_PARAMS, "num_queries": 6, "supervise_all_queries": True, "show_solved_answers": False}
SEARCHES = {
    "mano": dict(
        task="mano", max_position_embeddings=64, steps=20_000, num_test_per_size=300,
        variants=_MANO_VARIANTS,
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
            # Amendment of 2026-12-07, 20:51 UTC (before any CLRS run): v2's candidates at learning rate 1e-3, after v2's own, so
            # they decide only where none of v2's passes (DEPO v7 at 3e-3 held one hop near 0.8; at 1e-3 it learned)
            "n4-7-lr1e-3": dict(**_CLRS, **_CURRICULUM, train_sizes=[4, 5, 6, 7], extrapolation_sizes=[8, 10],
                                overrides={"--learning_rate": "1e-3"}),
            "n3-6-lr1e-3": dict(**_CLRS, **_CURRICULUM, train_sizes=[3, 4, 5, 6], extrapolation_sizes=[7, 8],
                                overrides={"--learning_rate": "1e-3"}),
        }) for algorithm in ("topological_sort", "dfs")},  # the two whose serial depth grows with n (docs/tasks.md)
    # Protocol v6: v1's DEPO data with every seen k trained from the first step (v1's size curriculum never unlocked
    # k = 4 in 8 of its 15 runs); a candidate's `steps` overrides the search's.
    "depo-v6": dict(
        task="depo", max_position_embeddings=256, steps=15_000, num_test_per_size=500, variants={"default": {}},
        candidates={
            "mixed": dict(**_DEPO),
            "mixed-30k": dict(**_DEPO, steps=30_000),
            "mixed-30k-lr1e-3": dict(**_DEPO, steps=30_000, overrides={"--learning_rate": "1e-3"}),
        }),
    # Protocol v7: DEPO with one query per sample. v1's (and v6's) six queries share k and show five of them solved,
    # which gives the answer away: at k = 4 = n / 2 succ^k pairs the 8 nodes, so the solved queries name the answer
    # (by its pair, or as the one node left), and at every k they leave two or three candidates
    # (experiments/depo_leak). One query leaves nothing to read but the edges; batch 128 for the signal it loses.
    "depo-v7": dict(
        task="depo", max_position_embeddings=256, steps=30_000, num_test_per_size=500, variants={"default": {}},
        candidates={
            "single-curriculum": dict(**_DEPO_V7, **_CURRICULUM),
            "single-mixed": dict(**_DEPO_V7),
            "single-curriculum-60k": dict(**_DEPO_V7, **_CURRICULUM, steps=60_000),
        }),
    # Protocol v8: v7's data at learning rate 1e-3 (v7's 3e-3 held one hop near 0.8 for 30,000 steps; at 1e-3 every
    # seen k passed 0.9 within 5,000 steps on validation: experiments/learning_rate), 15,000 steps. The third
    # candidate writes six queries per sample with the earlier answers hidden (labels, not inputs).
    "depo-v8": dict(
        task="depo", max_position_embeddings=256, steps=15_000, num_test_per_size=500, variants={"default": {}},
        candidates={
            "single-curriculum": dict(**_DEPO_V8, **_CURRICULUM),
            "single-mixed": dict(**_DEPO_V8),
            "hidden-curriculum": {**_DEPO_V8, **_CURRICULUM, "task_params": DEPO_HIDDEN_PARAMS,
                                  "overrides": {**_DEPO_V8["overrides"], "--per_device_train_batch_size": "64"}},
        }),
    # Protocol v9: v2's MANO data and candidates given 60,000 steps (v2's 20,000 fitted neither training rows nor held-out
    # ones beyond one operation; modulus 7 given 60,000 composed to 0.88-1.00 at every l with the marker:
    # experiments/mano_fit). Modulus 23 is left out (nothing at l >= 2 in 20,000 steps, nor at width 128).
    "mano-v9": dict(
        task="mano", max_position_embeddings=64, steps=60_000, num_test_per_size=300, variants=_MANO_VARIANTS,
        candidates={
            "mod11-60k": dict(**_MANO, task_params={"modulus": 11}),  # the nearest the paper first
            "mod7-60k": dict(**_MANO, task_params={"modulus": 7}),
            "mod7-curriculum-60k": dict(**_MANO, **_CURRICULUM, task_params={"modulus": 7}),
        }),
}
# The searched grids: data and schedule are their search's choice in their variant (`grid_recipe`); `run` refuses
# until the search has chosen. MANO is one grid per length-marker variant, so finding 3 is read with and without it.
GRIDS |= {
    "mano": dict(search="mano", variant="marker"),
    "mano-no-marker": dict(search="mano", variant="no-marker"),
    **{name: dict(search=name, variant="default") for name in SEARCHES if name.startswith("clrs-")},
    "depo-v6": dict(search="depo-v6", variant="default", models=V6_MODELS),
    "depo-v7": dict(search="depo-v7", variant="default", models=V6_MODELS),
    "depo-v8": dict(search="depo-v8", variant="default", models=V6_MODELS),
    "mano-v9": dict(search="mano-v9", variant="marker", models=V6_MODELS),
    "mano-v9-no-marker": dict(search="mano-v9", variant="no-marker", models=V6_MODELS),
}
# The protocol version that declared each grid and search: a run records its grid's, and a report reads only those.
VERSIONS = ({name: "v2" for name in [*SEARCHES, *GRIDS]} | {"depo": "v1", "brevo": "v1"}
            | {"depo-v6": "v6"}  # v6: DEPO again, every seen k from the first step, the recipe chosen on validation
            | {"depo-v7": "v7"}  # v7: DEPO with one query per sample, nothing solved in the prompt
            | {"depo-v8": "v8"}  # v8: v7's DEPO at learning rate 1e-3
            | {"mano-v9": "v9", "mano-v9-no-marker": "v9"})  # v9: v2's MANO search at 60,000 steps
# Grids and searches a later protocol version withdrew: `run` and `search` refuse them, saying why; whatever they
# recorded stays reported (`status`, `report`).
WITHDRAWN = {"depo-v6": "withdrawn by protocol v7 (2026-12-07) before any result: its data's solved queries give the "
                        "answer away (experiments/depo_leak); run depo-v7",
             "depo-v7": "withdrawn by protocol v8 (2026-12-07) after two of its search's three candidates (both below the "
                        "bar, reported) and before any grid run: its learning rate held one hop near 0.8 "
                        "(experiments/learning_rate); run depo-v8",
             **{name: "withdrawn by protocol v9 (2026-12-07) after its search (every candidate below the bar, reported) and "
                      "before any grid run: its 20,000 steps fitted nothing beyond one operation (experiments/mano_fit); "
                      f"run {name.replace('mano', 'mano-v9')}" for name in ("mano", "mano-no-marker")}}


# Searched grids whose search chose a candidate below the bar (no candidate at SEARCH_ACCURACY everywhere) and whose
# runs a protocol version, written before any of them, decided to train at that choice when its minimum (over variants
# and seen sizes) is at least a floor: grid -> (that version, the floor). Without an entry, or below the floor, such a
# grid's runs do not start (amendment of 2026-12-07 to v2's rule, before any search result).
RUN_BELOW_BAR: dict[str, tuple[str, float]] = {"mano-v9": ("v9", 0.5), "mano-v9-no-marker": ("v9", 0.5)}


def waits_for_decision(task: str, study_dir: Path = STUDY_DIR, quick: bool = False) -> str | None:
    """Why a searched grid's runs do not start although its search has chosen (a choice below the bar that no protocol
    version has accepted in `RUN_BELOW_BAR`, or below the floor of the one that did), or None: a written grid, a search
    not yet chosen (its runs wait for that anyway), a passing choice, an accepted one, a quick run."""
    from .study_search import search_state

    search = GRIDS[task].get("search")
    choice = search_state(search, study_dir, quick)["choice"] if search is not None else None
    accepted = RUN_BELOW_BAR.get(task)
    if choice is None or choice["passed"] or quick or (accepted is not None and choice["minimum"] >= accepted[1]):
        return None
    below = (f"below the bar (minimum {choice['minimum']:.2f} < {SEARCH_ACCURACY})" if accepted is None else
             f"below the bar and below {accepted[0]}'s floor for running there (minimum {choice['minimum']:.2f} < {accepted[1]})")
    return (f"its search chose {choice['candidate']} {below}: the grid waits for a protocol version that decides, before "
            f"any of its runs, whether it runs (RUN_BELOW_BAR) or how its recipe changes")


def write_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` so that a reader never sees it half written (the runner's threads read the index files
    that the run processes write): a temporary file beside it, then a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def check_not_withdrawn(name: str) -> None:
    """A clear error for training a grid or search of `WITHDRAWN`, naming why and what replaced it."""
    if name in WITHDRAWN:
        raise ValueError(f"{name} is {WITHDRAWN[name]}")


# Protocol v5 (experiments/study/PROTOCOL.md): runs train with the compiled training forward (`--compile_model`: the
# same model, data, losses and schedule, equal to eager within float rounding, as on two machines), except the runs
# that had started before it, which finish as they began (`EAGER_RUNS`: a grid's name, every run of it; or its
# (model, seed) pairs). Quick runs do not compile (reproduce.QUICK).
EAGER_RUNS = {"depo": "every run", "brevo": {("anira-e", 0), ("anira-o", 0)}}
COMPILED_ARGS = ["--compile_model", "true"]
QUICK_DEPTH_NEED_PROMPTS = 4
DEPTH_NEED_PROMPTS = 200  # test prompts per size of the depth-need analysis (uniform depths 1..max_depth each)
SEEN, UNSEEN = "test_seen", "test_extrapolation"  # the test splits the analyses read: the sizes seen in training, and larger ones
PROTOCOL_FILE = "experiments/study/PROTOCOL.md"
SHIPPED_SEED = 0  # the protocol ships seed 0 of anira-e, anira-o and fixed-6 in hub_configs, whatever the others give
RUNS_FILE = "runs.json"
_lock = threading.Lock()


def protocol_version(name: str) -> str:
    """The protocol version that declared grid or search `name` (`VERSIONS`): declaring new grids in a later version
    does not move the grids already running to it."""
    if name not in VERSIONS:
        raise ValueError(f"the study has grids {sorted(GRIDS)} and searches {sorted(SEARCHES)}, not {name!r}")
    return VERSIONS[name]


def execution_args(name: str, model: str, seed: int) -> list[str]:
    """How a run of grid or search `name` executes, beyond its recipe: `COMPILED_ARGS`, or nothing for the runs of
    `EAGER_RUNS`."""
    protocol_version(name)  # a clear error for an unknown name
    eager = EAGER_RUNS.get(name, set())
    return [] if eager == "every run" or (model, seed) in eager else COMPILED_ARGS


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
    from .study_search import candidate_recipe, searched_choice

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
    if model not in grid_models(task):
        raise ValueError(f"the {task} grid's models are {grid_models(task)}, not {model!r}")
    data, schedule, overrides = grid_recipe(task, study_dir, quick)
    argv = ["--model_name_or_path", str(model_folder), "--output_dir", str(output_dir), "--seed", str(seed),
            *data, *schedule, *COMMON_ARGS, *execution_args(task, model, seed)]
    if MODELS[model][0] != "fixed":
        argv += ADAPTIVE_ARGS
    return _overridden(argv, overrides, quick)


def read_runs(task: str, study_dir: Path = STUDY_DIR) -> list[dict]:
    path = study_dir / task / RUNS_FILE
    text = path.read_text() if path.exists() else ""
    return json.loads(text) if text.strip() else []


@contextlib.contextmanager
def locked(path: Path):
    """Holds `path` under an exclusive lock between this process's threads and, where the platform has fcntl, between
    processes: a grid's runs are separate processes, and two that finish together must not lose one's line. The lock
    is a file beside it (`.<name>.lock`, ignored by git), since `write_atomically` replaces the file itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, open(path.with_name(f".{path.name}.lock"), "a") as handle:
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
        write_atomically(path, json.dumps(runs, indent=2) + "\n")


def _finished(output_dir: Path) -> bool:
    return (output_dir / "model.safetensors").exists() and (output_dir / "anira_data.json").exists()


PATH_FLAGS = ("--model_name_or_path", "--output_dir")  # where a run reads and writes, not what it trains


def recipe_of(argv: list[str]) -> list[str]:
    """A run's `examples/train.py` arguments without its paths: what must not change while a folder trains."""
    recipe = list(argv)
    for flag in PATH_FLAGS:
        if flag in recipe:
            at = recipe.index(flag)
            del recipe[at:at + 2]
    return recipe


def check_same_recipe(recorded: Path, argv: list[str]) -> None:
    """Refuses to resume, or to take as finished, a training folder whose recorded recipe (`recipe_of`) is not this
    run's: a quick run's folder, or one trained before a recipe changed, would otherwise pass for this run."""
    if not recorded.exists():
        return
    before, now = json.loads(recorded.read_text()), recipe_of(argv)
    if before != now:
        differ = sorted(set(_pairs(before)) ^ set(_pairs(now)))
        raise ValueError(f"{recorded.parent} holds a run trained with other arguments (differing: "
                         f"{', '.join(' '.join(pair) for pair in differ) or 'their order'}); move that folder away "
                         f"or give this run another --work_dir")


def _pairs(argv: list[str]) -> list[tuple[str, ...]]:
    """(flag, its values joined) for each flag of an argument list."""
    pairs, flag, values = [], None, []
    for token in argv + ["--"]:
        if token.startswith("--"):
            if flag is not None:
                pairs.append((flag, " ".join(values)))
            flag, values = token, []
        else:
            values.append(token)
    return pairs


def _train_resumable(argv: list[str], output_dir: Path, parked: Path | None = None) -> None:
    """Trains `argv` into `output_dir`: from its last checkpoint when it has one, else from the run's parked
    checkpoint when `parked` holds one (`study_parking`), not at all when it has finished; appends this piece's wall
    time to wall_times.json (first an interrupted piece's, up to its last save: `study_parking.wall_times`) and its
    provenance to training_commits.json."""
    from transformers.trainer_utils import get_last_checkpoint

    from .reproduce import provenance
    from .study_parking import COMMITS_FILE, PIECE_FILE, RUN_ARGS_FILE, WALL_TIMES_FILE, piece_seconds, unpark, wall_times
    from .trainer import train_from_argv

    if parked is not None and (checkpoint := unpark(parked, output_dir)) is not None:
        print(f"{output_dir.name}: resuming from its parked checkpoint {checkpoint.name}", flush=True)
    check_same_recipe(output_dir / RUN_ARGS_FILE, argv)
    if _finished(output_dir):
        return
    times_file = output_dir / WALL_TIMES_FILE
    if (output_dir / PIECE_FILE).exists():  # a piece interrupted before it recorded its time: up to its last save
        times_file.write_text(json.dumps(wall_times(output_dir)))
    commits_file = output_dir / COMMITS_FILE
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_ARGS_FILE).write_text(json.dumps(recipe_of(argv)))
    commits = json.loads(commits_file.read_text()) if commits_file.exists() else []
    commits_file.write_text(json.dumps(commits + [provenance()]))
    resume = output_dir.is_dir() and get_last_checkpoint(str(output_dir)) is not None
    # `study.py park` times the piece under way, `study.py pause` stops its process and records the pause here
    (output_dir / PIECE_FILE).write_text(json.dumps({"started": time.time(), "pid": os.getpid()}))
    # a folder with no checkpoint yet (interrupted before the first save) starts over
    restart = ["--resume_from_checkpoint", "last"] if resume else (["--overwrite_output_dir", "true"] if output_dir.exists() else [])
    train_from_argv(argv + restart)
    times = json.loads(times_file.read_text()) if times_file.exists() else []
    piece = json.loads((output_dir / PIECE_FILE).read_text())
    times_file.write_text(json.dumps(times + [piece_seconds(piece, time.time())]))
    (output_dir / PIECE_FILE).unlink()


def train_and_load(argv: list[str], output_dir: Path, parked: Path, device: str | None = None):
    """Trains a run (`_train_resumable`), then loads what its evaluation needs: the trained model on `device` (default
    cuda when there is one), its tokenizer, its evaluation data and seen sizes, and the device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .evaluation import load_eval_data

    _train_resumable(argv, output_dir, parked)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    trained = AutoModelForCausalLM.from_pretrained(output_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    data, train_sizes = load_eval_data(output_dir)
    return trained, tokenizer, data, train_sizes, device


def train_and_evaluate(task: str, model: str, seed: int, work_dir: Path, study_dir: Path = STUDY_DIR, quick: bool = False,
                       device: str | None = None) -> dict:
    """One run, in this process: train (or resume, or skip when finished), evaluate on the test splits, run the
    depth-need analysis, copy the folder into `study_dir` and record it in runs.json."""
    from .analysis import FEATURE_GROUPS, depth_feature_importance, read_probe_log
    from .depth_need import depth_need_for_folder
    from .evaluation import evaluation_report, format_table
    from .reproduce import machine, provenance
    from .study_parking import COMMITS_FILE, WALL_TIMES_FILE, mark_landed, parked_folder
    from .trainer import PROBE_LOG_FILE

    check_not_withdrawn(task)
    name = run_name(model, seed)
    output_dir = work_dir / task / name
    model_folder = write_model_folder(task, model, work_dir / task / "configs" / model)
    argv = training_args(task, model, seed, model_folder, output_dir, quick, study_dir)
    times_file = output_dir / WALL_TIMES_FILE
    commits_file = output_dir / COMMITS_FILE
    parked = parked_folder(output_dir, work_dir, study_dir)
    trained, tokenizer, data, train_sizes, device = train_and_load(argv, output_dir, parked, device)
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
    mark_landed(output_dir, parked, str(target))
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
    from .study_report import study_figures, study_report

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


def grid_state(task: str, study_dir: Path = STUDY_DIR, version: str | None = None, quick: bool = False,
               seeds=SEEDS) -> tuple[dict[tuple[str, int], Path], list[dict]]:
    """The finished runs of a grid, {(model, seed): its folder}, and the runs the grid (every model of `grid_models`
    at every seed of `seeds`) still lacks, [{"run", "model", "seed", "why"}]: no line in runs.json, or a line whose folder
    holds no report.json. Runs outside the grid (another seed) count as finished when their report is there."""
    version = version or protocol_version(task)
    finished, missing = {}, []
    entries = {(r["model"], r["seed"]): r for r in read_runs(task, study_dir)
               if r["protocol_version"] == version and r.get("quick", False) == quick}
    models = grid_models(task)
    for model, seed in sorted(set(entries) | {(m, s) for m in models for s in seeds},
                              key=lambda key: (models.index(key[0]) if key[0] in models else len(models), key)):
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


def run_grid(task: str, models: list[str] | None = None, seeds: list[int] | None = None, work_dir: str | Path = "outputs/study",
             study_dir: Path = STUDY_DIR, processes: int | None = None, quick: bool = False) -> list[tuple[str, int, int]]:
    """Every pending (model, seed) of the grid, `processes` at a time, each in its own process (`examples/study.py
    one`); returns (model, seed, exit code) per run. Exit codes other than 0 are reported, the others go on."""
    return [(model, seed, code) for _, model, seed, code in run_grids([task], models, seeds, work_dir, study_dir, processes, quick)]


def run_grids(tasks: list[str], models: list[str] | None = None, seeds: list[int] | None = None,
              work_dir: str | Path = "outputs/study", study_dir: Path = STUDY_DIR, processes: int | None = None,
              quick: bool = False) -> list[tuple[str, str, int, int | None]]:
    """`run_grid` for several grids through one pool of processes (`models`: those of each grid's models to run,
    default all): the runs queue grid after grid (each seed-major), so a core that the first grid's last runs leave
    free starts the next grid's instead of waiting for them. Searches go before the grids that wait on them: the queue
    holds the runs of the grids that can start now (in the order named), then every pending search's runs (once for
    grids sharing a search, in the order named), then the runs of the grids waiting on a search, which start once
    their search has chosen (each run reads the choice when it starts), the processes taking the queue's later runs
    meanwhile. So every search's choice, and any decision it calls for, comes before the long grids behind it. Every
    grid is checked before anything runs; returns (task, model, seed, exit code) per run in the order named, the code
    None for a run never started (its search ended without a choice)."""
    from .study_search import search_jobs, search_state

    seeds = list(SEEDS if seeds is None else seeds)
    jobs, runs, locks, queued_searches = [], [], [Path(work_dir) / task / RUNNER_LOCK for task in tasks], set()
    places = []  # per job: 0 a grid run that can start now, 1 a search run, 2 a grid run waiting on its search
    for task in tasks:
        check_not_withdrawn(task)
        own = grid_models(task)
        outside = sorted(set(models or []) - set(own))
        if outside:  # a bad task or model name fails here, before anything runs
            raise ValueError(f"the {task} grid's models are {own}, not {outside}")
        task_models = [m for m in own if models is None or m in models]
        search, ready = GRIDS[task].get("search"), None
        state = search_state(search, study_dir, quick) if search is not None else None
        if state is not None and state["choice"] is None:
            if search not in queued_searches:
                queued_searches.add(search)
                search_runs, lock = search_jobs(search, state["pending"], work_dir, study_dir, quick)
                print(f"{task}: its recipe search first, {len(search_runs)} runs pending: "
                      + ", ".join(job.name for job in search_runs), flush=True)
                locks.append(lock)
                jobs += search_runs
                runs += [None] * len(search_runs)
                places += [1] * len(search_runs)

            def ready(search=search):
                return search_state(search, study_dir, quick)["choice"] is not None
        else:
            grid_recipe(task, study_dir, quick)
            if (why := waits_for_decision(task, study_dir, quick)) is not None:
                print(f"{task}: not started: {why}", flush=True)
                continue
        pending = pending_runs(task, task_models, seeds, study_dir, quick)
        print(f"{task}: {len(pending)} runs pending" + (" (after its search)" if ready else "") + ": "
              + ", ".join(run_name(model, seed) for model, seed in pending), flush=True)
        def waits(task=task):
            return waits_for_decision(task, study_dir, quick)

        jobs += [Job(task, run_name(model, seed), ["one", "--task", task, "--model", model, "--seed", str(seed)],
                     Path(work_dir) / task / "logs", ready, waits if ready else None) for model, seed in pending]
        runs += [(task, model, seed) for model, seed in pending]
        places += [2 if ready else 0] * len(pending)
    order = sorted(range(len(jobs)), key=places.__getitem__)  # stable: the order named within each place
    codes = dict(zip(order, run_processes(", ".join(tasks), [jobs[i] for i in order], locks, work_dir, study_dir,
                                          processes, quick)))
    return [(*run, codes[i][1]) for i, run in enumerate(runs) if run is not None]

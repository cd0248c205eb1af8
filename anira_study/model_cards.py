"""Model cards: the README.md of a `hub_configs/` folder and of a folder `examples/train.py` saves."""

import itertools
import json
from pathlib import Path

import yaml

from .evaluation import EVAL_SPLITS, SPLIT_LABELS, format_table
from .statistics import format_correlation

# The paper's BibTeX, as the metrics in anira_study/metrics/ cite it.
CITATION = """@inproceedings{moosa2026anira,
  title={Understanding Dynamic Compute Allocation in Recurrent Transformers},
  author={Moosa, Ibraheem Muhammad and Lohit, Suhas and Wang, Ye and Chatterjee, Moitreya and Yin, Wenpeng},
  booktitle={ICML}, year={2026}, note={arXiv:2602.08864}
}"""
# A test size answered below this greedy accuracy is one a card's Limitations say the model fails on (the validation
# accuracy the recipes' penalty gates wait for).
FAIL_ACCURACY = 0.9

DEPTH_MODE_TITLES = {
    "early": "ANIRA-E (early decision: a router picks each token's depth once, from the prelude's shallow representation)",
    "online": "ANIRA-O (online decision: after every iteration each active token decides to halt or go on)",
    "fixed": "fixed-depth recurrent baseline (every token runs max_depth iterations)",
}


def model_card(name: str, config, task: str, knob: str, model_name_or_path: str, train_args: str,
               base_model: str | None = None, results_table: str | None = None,
               extra_metadata: list[str] | None = None) -> str:
    """A model card (YAML metadata; task, knob, sizes; how to train and evaluate; citation) for `hub_configs/`
    folders and for the folders `examples/train.py` saves. `extra_metadata`: YAML lines added to the metadata."""
    metadata = ["---", "library_name: transformers", "license: apache-2.0", "pipeline_tag: text-generation", "tags:",
                "- anira", "- recurrent-transformer", "- adaptive-computation", f"- depth-mode-{config.depth_mode}",
                f"- task-{task}"]
    if base_model:
        metadata.append(f"base_model: {base_model}")
    metadata += extra_metadata or []
    lines = metadata + [
        "---",
        "",
        f"# {name}",
        "",
        f"{DEPTH_MODE_TITLES[config.depth_mode]}, on the complexity-controlled task `{task}` (knob: {knob}), from",
        '"Understanding Dynamic Compute Allocation in Recurrent Transformers" (Moosa et al., ICML 2026, arXiv 2602.08864).',
        "",
        "| field | value |",
        "|---|---|",
        f"| depth_mode | `{config.depth_mode}` |",
        f"| task | `{task}` (knob: {knob}) |",
        f"| layers | prelude {config.num_prelude_layers}, core {config.num_core_layers} (weight-tied, up to "
        f"max_depth = {config.max_depth} iterations), coda {config.num_coda_layers} |",
        f"| hidden_size | {config.hidden_size} (heads {config.num_attention_heads}, MLP {config.intermediate_size}) |",
        f"| vocab_size | {config.vocab_size} (word-level tokenizer of the task family) |",
        f"| compute_penalty | {config.compute_penalty} (" + ("weight of expected depth / max_depth in the loss"
                                                            if config.depth_mode != "fixed" else "a fixed depth makes "
                                                            "the term a constant: it adds to the loss, never to the "
                                                            "gradient") + ") |",
        *([f"| iteration_loss_weight | {config.iteration_loss_weight} (weight of the LM loss read out after every "
           "iteration before the last; docs/design.md) |"] if getattr(config, "iteration_loss_weight", 0) else []),
        "",
        "## Train and evaluate",
        "",
        "```bash",
        f"python examples/train.py --model_name_or_path {model_name_or_path} {train_args} \\",
        f"    --output_dir outputs/{name} --max_steps 20000 --per_device_train_batch_size 128 --learning_rate 1e-3 \\",
        "    --compute_penalty 0.01 --penalty_warmup_steps 2000 --penalty_ramp_steps 2000",
        f"python examples/evaluate_models.py --models outputs/{name} --output_dir outputs/{name}/eval",
        "```",
        "",
        "Load with `AutoConfig.from_pretrained` / `AutoModelForCausalLM.from_pretrained` after `import modeling_anira`;",
        "a trained folder saved by `examples/train.py` also loads with `trust_remote_code=True` (it carries the modeling files).",
    ]
    if results_table:
        lines += ["", "## Results", "", results_table]
    return "\n".join(lines + ["", *citation()]) + "\n"


def citation() -> list[str]:
    return ["## Citation", "", "```bibtex", CITATION, "```"]


def _knob_symbol(knob: str) -> str:
    """'number of hops k' -> 'k'."""
    return knob.split()[-1]


def _accuracy_key(split_report: dict) -> str:
    """The accuracy a card's table shows: greedy generation's, teacher-forced tokens' when not generated."""
    return "generated_accuracy" if "generated_accuracy" in split_report["overall"] else "token_accuracy"


def model_index(name: str, task: str, knob: str, report: dict) -> dict:
    """Hugging Face `model-index` metadata: per seen size, the accuracy and the mean answer depth on the held-out
    test prompts, and rho(depth, size) over the seen sizes where the depth varies; the numbers of `report` as they are."""
    seen, symbol = report["test_seen"], _knob_symbol(knob)
    key = _accuracy_key(seen)
    accuracy_name = "greedy answer accuracy" if key == "generated_accuracy" else "teacher-forced token accuracy"
    results = []
    for c, entry in seen["per_complexity"].items():
        results.append({
            "task": {"type": "text-generation", "name": f"{task}, {knob} = {c}"},
            "dataset": {"name": f"{task} held-out test prompts, {symbol} = {c} (seen in training)", "type": task,
                        "config": f"{symbol}={c}", "split": "test"},
            "metrics": [{"type": "accuracy", "value": entry[key], "name": f"{accuracy_name} ({entry['items']} prompts)"},
                        {"type": "mean_depth", "value": entry["mean_depth"], "name": "mean answer depth (iterations)"}],
        })
    if seen["spearman"] == seen["spearman"]:  # NaN (a fixed-depth model): undefined, not reported
        sizes = ", ".join(seen["per_complexity"])
        results.append({
            "task": {"type": "text-generation", "name": f"{task}, {knob} = {sizes}"},
            "dataset": {"name": f"{task} held-out test prompts, {symbol} = {sizes} (seen in training)", "type": task,
                        "config": "seen", "split": "test"},
            "metrics": [{"type": "spearmanr", "value": seen["spearman"],
                         "name": f"rho(depth, {symbol}) over {seen['items']} prompts"}],
        })
    return {"model-index": [{"name": name, "results": results}]}


def limitations(name: str, config, recipe: dict, summary: dict) -> list[str]:
    """A trained card's Limitations: one training seed, the test sizes it fails on, what its depth does not show."""
    report, args = summary["report"], recipe.get("train_args", [])
    symbol = _knob_symbol(recipe.get("knob", "complexity"))
    seed = args[args.index("--seed") + 1] if "--seed" in args else "the default"
    failing = []
    for split in EVAL_SPLITS:
        if split in report:
            key = _accuracy_key(report[split])
            failing += [f"{symbol} = {c} ({SPLIT_LABELS[split]}: {entry[key]:.2f} over {entry['items']} prompts)"
                        for c, entry in report[split]["per_complexity"].items() if entry[key] < FAIL_ACCURACY]
    fails = ("; ".join(failing) + "." if failing else f"none: {FAIL_ACCURACY} or more at every test size.")
    need = f"`python examples/analyze.py depth-need --models hub_configs/{name}`"
    if summary.get("depth_need"):
        pending = "The depth-need analysis (\"Needed versus allocated depth\" above) measures it."
    else:
        pending = f"That depth-need analysis is pending for this folder ({need})."
    if config.depth_mode == "fixed":
        depth = (f"Every token runs {config.max_depth} iterations, so the depth says nothing about a prompt; how few "
                 "iterations these weights need per prompt (accuracy at every uniform depth, each prompt's oracle depth) "
                 f"is not measured here. {pending}")
    else:
        depth = ("The depth is the compute the model spent, not the compute a prompt needs: rho measures how the depth "
                 f"orders with {symbol}, not whether a prompt got the iterations it needed, nor whether fewer would have "
                 "served. That needs these weights' accuracy at every uniform depth and each prompt's oracle depth. " + pending)
    if summary.get("study"):
        seeds = (f"- **One training seed of several.** The weights are one run of the study's recipe (`--seed {seed}`, the "
                 "seed the protocol ships, declared before any run): the intervals above are over test prompts, not over "
                 "training runs; what the other seeds gave is in \"Over training seeds\" above.")
    else:
        seeds = (f"- **One training seed.** The weights are one run of the recipe (`--seed {seed}`): its accuracy and depth "
                 "pattern are that run's, and the intervals above are over test prompts, not over training runs. Where other "
                 "seeds of the recipe were trained, the notes above say what they gave (experiments/seeds/).")
    lines = ["## Limitations", "", seeds,
             f"- **Sizes it fails on** (accuracy below {FAIL_ACCURACY} on the test prompts): {fails}",
             f"- **What the depth does not show.** {depth}"]
    if solved_queries_leak(args):
        lines.append("- **Its prompts give part of the answer away.** Each prompt's earlier queries share k and are shown "
                     "solved: their answers and the query's start rule out all but two or three nodes, and at k = n / 2 "
                     "they name the answer (experiments/depo_leak). The accuracy above measures hops and that "
                     "elimination together; the study's DEPO from protocol v7 on asks one query per prompt.")
    return lines


def solved_queries_leak(train_args: list[str]) -> bool:
    """Whether a recipe's DEPO prompts show solved queries that share the asked one's k (`depo.solved_queries_shown`)."""
    from anira_tasks import depo

    if "--task" not in train_args or train_args[train_args.index("--task") + 1] != "depo":
        return False
    params = json.loads(train_args[train_args.index("--task_params") + 1]) if "--task_params" in train_args else {}
    return depo.solved_queries_shown(**params)


def stage_commits(report: dict) -> list[str | None]:
    """The git commit that trained each stage (None: not recorded at training time)."""
    if "stage_commits" in report:
        return list(report["stage_commits"])
    return [report.get("training_commit")] * len(report.get("stage_steps", [report["steps"]]))


def training_provenance(report: dict) -> str:
    """The commit(s) and package version that trained the weights, or that they were not recorded. A one-stage run
    trained in pieces (resumed from its checkpoints, `training_commits`) names each piece's commit and whether its
    tree had uncommitted changes."""
    commits = stage_commits(report)
    if not any(commits):
        return "The git commit and the package version that trained these weights were not recorded at training time."
    version = report.get("package_version")
    package = f", package anira {version}." if version else ", package version not recorded."
    pieces = report.get("training_commits") or []
    if len(commits) == 1 and len(pieces) > 1:
        runs = [(commit, dirty, len(list(group))) for (commit, dirty), group in itertools.groupby(
            pieces, key=lambda piece: (piece.get("training_commit"), bool(piece.get("training_commit_dirty"))))]
        described = ", ".join(
            f"`{commit[:12] if commit else 'unrecorded'}`"
            + (f" ({'with uncommitted changes to tracked files, ' if dirty else ''}{n} pieces)" if n > 1
               else " (with uncommitted changes to tracked files)" if dirty else "")
            for commit, dirty, n in runs)
        return (f"Trained in {len(pieces)} pieces, each resumed from the previous one's last checkpoint, at commits "
                f"{described} of this repository{package}")
    grouped = _per_stage([f"commit `{commit[:12]}`" if commit else "an unrecorded commit" for commit in commits])
    dirty = " (with uncommitted changes to tracked files)" if report.get("training_commit_dirty") else ""
    return f"Trained at {grouped} of this repository{dirty}{package}"


def _usage(name: str, example_prompt: str) -> list[str]:
    return [
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer  # the folder carries its modeling code",
        f'model, tok = AutoModelForCausalLM.from_pretrained("hub_configs/{name}", trust_remote_code=True), AutoTokenizer.from_pretrained("hub_configs/{name}", trust_remote_code=True)',
        f'out = model.generate(**tok("{example_prompt}", return_tensors="pt"), max_new_tokens=8, return_dict_in_generate=True)',
        "print(list(zip(tok.convert_ids_to_tokens(out.sequences[0]), out.depths[0].tolist())))  # each token, the iterations spent at it",
        "```",
    ]


def format_shares(importance: dict) -> str:
    """'static 0.412 [0.398, 0.429]; execution_state 0.037 [...] (R^2 ..., N answer tokens of M prompts)'."""
    shares = "; ".join(f"{group} {importance['share'][group]:.3f} [{low:.3f}, {high:.3f}]"
                       for group, (low, high) in importance["share_interval"].items())
    return f"{shares} (R^2 {importance['r2_full']:.3f}, {importance['tokens']} answer tokens of {importance['items']} prompts)"


def stage_machines(report: dict) -> list[str]:
    """The machine each stage trained on. Reports written before they listed it: a continued model's earlier stages
    ran on `continued["machine"]`, the rest on `machine`."""
    if "stage_machines" in report:
        return list(report["stage_machines"])
    total, continued = len(report.get("stage_steps", [report["steps"]])), report.get("continued")
    k = continued["stages"] if continued else 0
    return [continued["machine"]] * k + [report["machine"]] * (total - k) if continued else [report["machine"]] * total


def log_missing_until(report: dict) -> int:
    """Steps at the start of training whose probe log the folder does not hold (0 when it holds all of it)."""
    if "log_missing_until" in report:
        return int(report["log_missing_until"])
    continued = report.get("continued")
    return sum(report["stage_steps"][:continued["stages"]]) if continued and not continued["log_kept"] else 0


def _stage_range(first: int, last: int) -> str:
    return f"stage {first}" if first == last else f"stages {first}-{last}"


def _per_stage(values: list[str]) -> str:
    """One value, or each value with the stages it holds for."""
    groups = []  # [value, first stage, last stage]
    for k, value in enumerate(values, 1):
        if groups and groups[-1][0] == value:
            groups[-1][2] = k
        else:
            groups.append([value, k, k])
    if len(groups) == 1:
        return groups[0][0]
    return " and ".join(f"{value} ({_stage_range(first, last)})" for value, first, last in groups)


def training_machines(report: dict) -> str:
    """Where a model trained: one machine, or each machine with the stages it ran."""
    return _per_stage(stage_machines(report))


def study_seeds(name: str, summary: dict, study_dir) -> list[str]:
    """A study-shipped card's "Over training seeds" section, from the study's runs.json under `study_dir`: which run
    the folder is (or that it was retrained from the study's recipe), every seed of the same model (pooled seen
    accuracy, accuracy per seen size, rho, adaptive gain, findings held), the compute-matched baselines' accuracy
    per seed beside it, and the seeds not yet finished as pending."""
    from pathlib import Path

    from . import ship, study, study_findings, study_report

    block, study_dir = summary["study"], Path(study_dir)
    task, model, version, quick = block["task"], block["model"], block["protocol_version"], block.get("quick", False)
    folders, missing = study.grid_state(task, study_dir, version, quick)
    if "run" in block and (model, block["seed"]) not in folders:
        raise ValueError(f"{name}/report.json says it is the study's run {block['run']}, but "
                         f"{study_dir / task / study.RUNS_FILE} holds no finished run of it (protocol {version}"
                         f"{', quick' if quick else ''}): pass the study's folder (--study_dir)")
    why = {(m["model"], m["seed"]): m["why"] for m in missing}
    numbers = {key: study_findings.run_folder_numbers(folder) for key, folder in folders.items()}
    seeds = sorted({s for (m, s) in set(folders) | set(why) if m in (model, *ship.BASELINES)})
    adaptive = study.MODELS[model][0] != "fixed"

    def held(n: dict) -> str:
        if not adaptive:
            return "-"
        gain = n.get("adaptive_gain_interval")
        pays = gain is not None and n["adaptive_gain"] > 1 and gain[0] > 1
        return ", ".join(f for f, ok in (("F1", study_findings.finding_1(n)), ("F2", study_findings.finding_2(n)), ("depth pays", pays)) if ok) or "none"

    fmt = study_report._fmt
    if "run" in block:
        head = (f"This folder is the replicated study's run `{block['run']}` ({block['protocol']}, protocol {version}"
                f"{', quick' if quick else ''}; the commits that trained it: [How it was trained](#how-it-was-trained)): seed "
                f"{block['seed']} of `{model}`. The protocol declared before any run that seed {study.SHIPPED_SEED} of "
                f"{', '.join(ship.HUB_VARIANTS)} is the model shipped here, whatever the other seeds give: it was not "
                "chosen among seeds.")
    else:
        head = (f"This folder was retrained from the replicated study's recipe (`{block['retrained_with']}`; {block['protocol']}, "
                f"protocol {version}): seed {block['seed']} of `{model}`, not the study's own run, whose numbers are the "
                f"seed-{block['seed']} row below.")
    progress = (f"The grid `{task}` has {len(folders)} of its {study.grid_size(task)} runs in; this section adds each as it lands "
                f"(every run: [experiments/study/{task}/results.md](../../experiments/study/{task}/results.md))."
                if missing else f"The grid `{task}` is complete ({len(folders)} runs: "
                f"[experiments/study/{task}/results.md](../../experiments/study/{task}/results.md)).")
    lines = ["## Over training seeds (the replicated study)", "", head, "", progress, "",
             "Every seed of the study's run of this model, on the study's test prompts (greedy accuracy pooled over the seen "
             "sizes and per seen size; rho(depth, size) on seen sizes; the adaptive gain of the depth-need analysis; the "
             "protocol's findings that hold in the seed: F1 depth follows complexity, F2 no extrapolation, depth pays):", "",
             "| seed | seen accuracy | per seen size | rho (seen) | adaptive gain | findings held |", "|---|---|---|---|---|---|"]
    for seed in seeds:
        n, shipped = numbers.get((model, seed)), " (shipped)" if seed == block["seed"] else ""
        if n is None and (model, seed) not in why:
            continue
        if n is None:
            lines.append(f"| {seed}{shipped} | pending ({why[(model, seed)]}) | - | - | - | - |")
            continue
        gain, rho = study_report.gain_cell(n) if adaptive else "-", study_report.rho_cell(n)
        lines.append(f"| {seed}{shipped} | {fmt(n['pooled_seen_accuracy'])} | "
                     f"{' / '.join(fmt(v) for v in n['seen_accuracy'].values())} | {rho} | {gain} | {held(n)} |")
    untrained = {seed: sizes for (m, seed), n in sorted(numbers.items())
                 if m == model and (sizes := study_findings.sizes_never_trained(n["trained_from_step"]))}
    if untrained:
        lines += ["", "Seen sizes a run never trained on (its size curriculum never unlocked them, so its accuracy there is "
                      "that of a size it never saw): " + "; ".join(f"seed {seed}{' (shipped)' if seed == block['seed'] else ''}: "
                                                                  f"{', '.join(map(str, sizes))}"
                                                                  for seed, sizes in untrained.items()) + "."]
    lines += ["", "Compute-matched baselines (fixed depth, trained from scratch by the same recipe): seen accuracy pooled "
                  "per seed, beside this model's.", "",
              "| model | depth | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|---|" + "---|" * len(seeds)]
    for row in (model, *ship.BASELINES):
        depth = "adaptive, up to 6" if study.MODELS[row][0] != "fixed" else str(study.MODELS[row][1].get("max_depth", 6))
        cells = [fmt(numbers[(row, s)]["pooled_seen_accuracy"]) if (row, s) in numbers
                 else ("pending" if (row, s) in why else "-") for s in seeds]
        lines.append(f"| {row} | {depth} | " + " | ".join(cells) + " |")
    for grid in ship.EARLIER_GRIDS.get(task, ()):
        lines += ["", f"The same model in an earlier protocol version's grid (`{grid}`, protocol {study.protocol_version(grid)}): "
                      f"every seed in [experiments/study/{grid}/results.md](../../experiments/study/{grid}/results.md); "
                      "why the version changed: [the protocol's versions](../../experiments/study/README.md#the-protocols-versions) "
                      "(links into the repository)."]
    return lines


def trained_model_card(name: str, config, recipe: dict, summary: dict, study_dir=None) -> str:
    """The card of a trained named model: what it is, how to use it, what it scores (with intervals and
    counts), the exact command that trained it, its wall time and the machine. A folder the replicated study shipped
    (its report's `study` block) adds every seed of its model from the study's runs under `study_dir`."""
    args = recipe.get("train_args", [])
    # the task the model was trained on (a study grid of a later protocol version, `depo-v8`, trains `depo`)
    task = args[args.index("--task") + 1] if "--task" in args else summary["task"]
    report = summary["report"]
    knob = recipe.get("knob", "complexity")
    index = model_index(name, task, knob, report) if "test_seen" in report else {}
    extra = yaml.safe_dump(index, sort_keys=False, width=1000).splitlines() if index else []
    base = model_card(name, config, task, knob, f"hub_configs/{name}", "", extra_metadata=extra)
    header = base.split("## Train and evaluate")[0].rstrip()
    seen = report.get("test_seen", {})
    lines = [header, "", "## Use it", "", *_usage(name, recipe.get("example_prompt", "<bos>")), "",
             "## Results on held-out test prompts", "",
             f"Greedy generation scored by the task; depth = mean iterations at the positions that predict answer tokens; "
             f"95 % intervals in brackets (Wilson for accuracies, bootstrap over prompts for depth and rho); n = distinct "
             f"test prompts, none of them in training or validation. Training sizes: {summary['train_sizes']}.", "",
             "```", format_table({name: summary["report"]}) if "report" in summary else summary["table"], "```", ""]
    if seen and config.depth_mode == "fixed":
        lines.append(f"Every token runs {config.max_depth} iterations (fixed depth), so rho(depth, complexity) is undefined.")
    elif seen:
        lines.append(f"rho(depth, complexity) on seen sizes: {format_correlation(seen['spearman'], seen['spearman_interval'])} "
                     f"over {seen['items']} prompts.")
    if summary.get("importance"):
        lines.append(f"Share of per-token depth variance explained: {format_shares(summary['importance'])}.")
    if summary.get("importance_within_prompt"):
        lines.append(f"Within a prompt (each prompt's mean removed): {format_shares(summary['importance_within_prompt'])}.")
    phases = summary.get("phases") or {}
    if phases:
        lines.append(f"Training dynamics (`training_dynamics.png`): validation accuracy reached 90 % of its final value at step "
                     f"{phases['learned_step']} (answer depth {phases['depth_when_learned']:.2f}), final answer depth "
                     f"{phases['final_depth']:.2f}.")
    need = summary.get("depth_need")
    if need:
        lines += ["", "## Needed versus allocated depth", "",
                  "The same weights with every token at exactly t iterations, on the first "
                  f"{need['num_prompts_per_size']} test prompts per size; a prompt's oracle depth is the smallest t that "
                  "answers it; the adaptive gain is the compute of the cheapest uniform depth that reaches this model's own "
                  "accuracy over its own compute (above 1: the allocation saves compute), the matched oracle gain what "
                  "per-prompt depth could save at the best uniform depth's accuracy (definitions: `anira_study/depth_need.py`). "
                  + (f"Measured {need['date']} on {need['machine']} with `{need['command']}`." if "command" in need else
                   f"Measured by the study's run on {summary['machine']} ({summary['date']}), on "
                   f"{need['num_prompts_per_size']} prompts per size."), "", need["table"]]
    if summary.get("study"):
        from .operating_curve import RESULT_FILE, card_section
        from .study import STUDY_DIR

        study_root = Path(STUDY_DIR if study_dir is None else study_dir)
        folder = summary["study"].get("folder")  # the study's run (a retrained folder has none)
        curve = study_root / folder / RESULT_FILE if folder else None  # protocol v3, for an ANIRA-O run
        if curve is not None and curve.exists():
            lines += ["", *card_section(json.loads(curve.read_text()))]
        lines += ["", *study_seeds(name, summary, study_root)]
    commands = summary.get("train_commands") or [summary["train_command"]]  # reports written before staged recipes
    stages = summary.get("stage_steps", [summary["steps"]])
    staged = (f" in {len(stages)} stages of {' + '.join(f'{s:,}' for s in stages)} steps, each starting from the previous "
              "stage's weights with a fresh learning-rate schedule" if len(commands) > 1 else "")
    runs = [f"# stage {k}\n{command}" for k, command in enumerate(commands, 1)] if len(commands) > 1 else commands
    retrain = summary.get("command", f"python examples/reproduce.py {name}")
    by = ""
    if "run" in (summary.get("study") or {}):  # the study's run: retrained by reproduce.py from the study's recipe
        from .reproduce import canonical_commands

        by = f"Trained by the study (`{summary['command']}`). "
        retrain, runs = f"python examples/reproduce.py {name}", canonical_commands(recipe, name)
    lines += ["", "## How it was trained", "",
              f"{summary['steps']:,} steps{staged}, {summary['parameters']:,} parameters, {summary['train_seconds'] / 60:.1f} minutes of "
              f"training on {training_machines(summary)}"
              + (f" ({summary['train_seconds_note']})" if summary.get("train_seconds_note") else "")
              + f" (folder written {summary['date']}). {training_provenance(summary)} "
              f"{by}Retrain from scratch (resumes after an interruption, then writes this folder):", "", "```bash", retrain,
              "```", "", "which runs exactly:", "", "```bash", *runs, "```", ""]
    continued = summary.get("continued")
    if continued:  # trained in sittings: the earlier stages' folder, then the later stages from its weights
        k, total = continued["stages"], len(stages)
        done = "Stage 1 was" if k == 1 else f"Stages 1-{k} were"
        missing = log_missing_until(summary)
        lines += [f"{done} trained earlier (folder written {continued['date']}); {_stage_range(k + 1, total)} then "
                  f"continued from that folder's weights, stage {k}'s final ones (`--continue_folder true`), so the model is "
                  "the recipe's. The wall time counts every stage."
                  + ("" if not missing else f" The probe log of the first {missing:,} steps was not kept with the folder "
                     "they were trained for: the figure shades those steps, and the learning phase above is the earlier "
                     "report's."), ""]
    if recipe.get("notes"):
        lines += [recipe["notes"], ""]
    lines += [*limitations(name, config, recipe, summary), "", *citation(), ""]
    return "\n".join(lines)

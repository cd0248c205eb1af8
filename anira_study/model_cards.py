"""Model cards: the README.md of a `hub_configs/` folder and of a folder `examples/train.py` saves."""

from .evaluation import format_table
from .statistics import format_correlation

DEPTH_MODE_TITLES = {
    "early": "ANIRA-E (early decision: a router picks each token's depth once, from the prelude's shallow representation)",
    "online": "ANIRA-O (online decision: after every iteration each active token decides to halt or go on)",
    "fixed": "fixed-depth recurrent baseline (every token runs max_depth iterations)",
}


def model_card(name: str, config, task: str, knob: str, model_name_or_path: str, train_args: str,
               base_model: str | None = None, results_table: str | None = None) -> str:
    """A model card (YAML metadata; task, knob, sizes; how to train and evaluate) for `hub_configs/`
    folders and for the folders `examples/train.py` saves."""
    metadata = ["---", "library_name: transformers", "license: apache-2.0", "pipeline_tag: text-generation", "tags:",
                "- anira", "- recurrent-transformer", "- adaptive-computation", f"- depth-mode-{config.depth_mode}",
                f"- task-{task}"]
    if base_model:
        metadata.append(f"base_model: {base_model}")
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
        f"| compute_penalty | {config.compute_penalty} (weight of expected depth / max_depth in the loss) |",
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
    return "\n".join(lines) + "\n"


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


def training_machines(report: dict) -> str:
    """Where a model trained: one machine, or each machine with the stages it ran."""
    groups = []  # [machine, first stage, last stage]
    for k, machine in enumerate(stage_machines(report), 1):
        if groups and groups[-1][0] == machine:
            groups[-1][2] = k
        else:
            groups.append([machine, k, k])
    if len(groups) == 1:
        return groups[0][0]
    return " and ".join(f"{machine} ({_stage_range(first, last)})" for machine, first, last in groups)


def trained_model_card(name: str, config, recipe: dict, summary: dict) -> str:
    """The card of a trained named model: what it is, how to use it, what it scores (with intervals and
    counts), the exact command that trained it, its wall time and the machine."""
    task = summary["task"]
    report = summary["report"]
    base = model_card(name, config, task, recipe.get("knob", "complexity"), f"hub_configs/{name}", "")
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
    commands = summary.get("train_commands") or [summary["train_command"]]  # reports written before staged recipes
    stages = summary.get("stage_steps", [summary["steps"]])
    staged = (f" in {len(stages)} stages of {' + '.join(f'{s:,}' for s in stages)} steps, each starting from the previous "
              "stage's weights with a fresh learning-rate schedule" if len(commands) > 1 else "")
    runs = [f"# stage {k}\n{command}" for k, command in enumerate(commands, 1)] if len(commands) > 1 else commands
    lines += ["", "## How it was trained", "",
              f"{summary['steps']:,} steps{staged}, {summary['parameters']:,} parameters, {summary['train_seconds'] / 60:.1f} minutes of "
              f"training on {training_machines(summary)} (folder written {summary['date']}). Retrain from scratch (resumes after an "
              "interruption, then writes this folder):", "", "```bash", summary.get("command", f"python examples/reproduce.py {name}"),
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
    return "\n".join(lines)

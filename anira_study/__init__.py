"""The study: training ANIRA models with the HF Trainer on tasks of known difficulty, and measuring whether
the compute they allocate follows that difficulty.

One module per concern (dependencies run one way: examples -> anira_study -> anira_tasks, modeling_anira):

- `arguments`: the argument dataclasses of the scripts, validated before anything runs;
- `data`: splits, the collators (packed by default, or padded), the probe set (validation only);
- `callbacks`: the validation probe, the compute-penalty schedule, the wall-time guard, progress;
- `trainer`: config overrides, loading, building the `Trainer`, saving a trained folder;
- `evaluation`: answer records, generated scoring, per-complexity summaries with 95 % intervals, the table;
- `statistics`: Wilson and bootstrap intervals, Spearman's rho over items;
- `analysis`: training phases, depth feature importance (static vs execution-state features);
- `depth_need`: accuracy at every uniform depth, each prompt's oracle depth, allocated vs needed depth, gains;
- `figures`: plots drawn from reports and logs;
- `model_cards`: README.md of model folders;
- `experiment`: the main job (ANIRA-E and ANIRA-O trained side by side, one process each), and
  `findings`: its statements of the paper's findings with this run's numbers;
- `study`: the replicated study's grids, recipes and runs (experiments/study/PROTOCOL.md); `study_search`: the
  recipe searches of its searched grids; `study_findings`: the per-run numbers and the protocol's rule for each
  finding; `study_report`: the tables, figures and the main job's answer over seeds; `operating_curve`: ANIRA-O's
  runs at other halting thresholds; `ship`: the shipped runs into hub_configs;
- `reproduce`: retraining a named model from its stored recipe; `cli`: the scripts' error handling;
- `metrics`: `evaluate` metric modules, loaded by path with no network.
"""

from .arguments import DataArguments, ModelArguments, ScheduleArguments
from .data import AnswerCollator, PackedAnswerCollator
from .evaluation import answer_records, evaluation_report, format_table, generated_correct, summarize_by_complexity
from .trainer import apply_config_overrides, build_trainer, load_model_and_tokenizer, save_outputs

__all__ = [
    "AnswerCollator", "DataArguments", "PackedAnswerCollator", "ModelArguments", "ScheduleArguments", "answer_records", "apply_config_overrides",
    "build_trainer", "evaluation_report", "format_table", "generated_correct", "load_model_and_tokenizer", "save_outputs",
    "summarize_by_complexity",
]

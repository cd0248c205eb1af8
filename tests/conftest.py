import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

import modeling_anira  # noqa: E402,F401  (registers the Auto classes)
from modeling_anira import AniraConfig, AniraForCausalLM  # noqa: E402

# One thread: the test tensors are tiny, and with several threads a loaded 2-core machine spends most of its
# time in thread synchronisation (measured: 23x slower per training step).
torch.set_num_threads(1)


def tiny_config(**overrides) -> AniraConfig:
    """A model small enough for a unit test; controllers start undecided so depths vary."""
    values = dict(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_prelude_layers=1,
        num_core_layers=2,
        num_coda_layers=1,
        max_depth=5,
        depth_mode="online",
        depth_init_bias=0.0,
        max_position_embeddings=64,
    )
    values.update(overrides)
    return AniraConfig(**values)


def tiny_model(dtype=torch.float64, seed: int = 0, recurrence: str = "dense", **overrides) -> AniraForCausalLM:
    """A float64 model in eval mode; `recurrence="dense"` runs the reference path even in eval. Tests of the
    inference paths pass `recurrence` explicitly (generation tests run both: test_generation.path)."""
    torch.manual_seed(seed)
    model = AniraForCausalLM(tiny_config(**overrides)).to(dtype).eval()
    model.model.recurrence = recurrence
    controller = model.model.depth_controller
    # Large random controller weights, so that tokens really get different depths in the tests.
    for name in ("router", "halting_head"):
        if hasattr(controller, name):
            torch.nn.init.normal_(getattr(controller, name).weight, std=2.0)
    return model


@pytest.fixture
def make_model():
    return tiny_model


def load_script(name: str):
    """An `examples/<name>.py` script as a module (its `main(argv)` is what tests call)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_study_processes(monkeypatch, run):
    """`subprocess.Popen` standing in for the study runner's processes (`anira_study.study_runner.run_processes`): when the
    runner waits for one, `run(command, env, process)` plays it and returns its exit code; `process.stopped` (an Event)
    is set once the runner stops it."""
    import subprocess
    import threading

    class FakeProcess:
        def __init__(self, command, cwd, env, stdout, stderr):
            self.command, self.env, self.stopped = command, env, threading.Event()

        def wait(self):
            self.returncode = run(self.command, self.env, self)
            return self.returncode

        def terminate(self):
            self.stopped.set()

    monkeypatch.setattr(subprocess, "Popen", FakeProcess)


def write_study_run(study_dir, task: str, model: str, seed: int, accuracy: dict, depth: dict, train_sizes=(1, 2),
                    oracle: dict | None = None, probe: list[dict] | None = None, rho: float = 0.7, gain: float = 1.1,
                    quick: bool = False, report: bool = True, uniform_largest: dict | None = None) -> None:
    """A finished run of the study as `anira_study.study.train_and_evaluate` records it (report.json, probe log, a line
    of runs.json), with the given numbers per size and nothing trained: for the report, figure and main-job tests.
    `uniform_largest` {t: accuracy}: the depth-need analysis's uniform-depth accuracies at the largest seen size."""
    import json
    from pathlib import Path

    from anira_study import study

    def split(sizes):
        per = {str(c): {"generated_accuracy": accuracy[c], "mean_depth": depth[c]} for c in sizes}
        overall = {"generated_accuracy": sum(accuracy[c] for c in sizes) / len(sizes),
                   "mean_depth": sum(depth[c] for c in sizes) / len(sizes)}
        return {"per_complexity": per, "overall": overall, "spearman": rho, "spearman_interval": [rho - 0.1, rho + 0.1],
                "items": 10 * len(sizes)}

    adaptive = study.MODELS[model][0] != "fixed"
    need = {"uniform": [{"depth": 1, "accuracy": 0.5}], "oracle": {"gain_matched": {"value": 1.5}}}
    if adaptive:
        need["adaptive"] = {"gain": {"value": gain, "interval": [gain - 0.1, gain + 0.1]}, "rho": 0.3,
                            "allocation": {"less": {"share": 0.2}, "more": {"share": 0.5}}}
    name = study.run_name(model, seed)
    folder = Path(study_dir) / task / "runs" / name
    folder.mkdir(parents=True, exist_ok=True)
    unseen = sorted(c for c in accuracy if c not in train_sizes)
    summary = {"run": name, "model": model, "seed": seed, "max_depth": 6, "train_sizes": list(train_sizes),
               "report": {"test_seen": split(train_sizes), **({"test_extrapolation": split(unseen)} if unseen else {})},
               "depth_need": {"overall": need, "per_split": {"test_seen": need},
                              "per_complexity": {str(c): {"oracle": {"mean_depth": v}} for c, v in (oracle or {}).items()}},
               "feature_importance": None}
    if uniform_largest is not None:
        largest = summary["depth_need"]["per_complexity"].setdefault(str(max(train_sizes)), {})
        largest["uniform"] = [{"depth": t, "accuracy": a} for t, a in uniform_largest.items()]
    if report:
        (folder / "report.json").write_text(json.dumps(summary))
    if probe is not None:
        (folder / "probe_log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in probe))
    study.record_run(task, {"run": name, "model": model, "depth_mode": study.MODELS[model][0], "max_depth": 6, "seed": seed,
                            "steps": 100, "train_seconds": 60.0, "protocol_version": study.protocol_version(task), "quick": quick,
                            "folder": f"runs/{name}"}, Path(study_dir))

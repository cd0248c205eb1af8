"""Write the named-model folders `hub_configs/anira-{e,o,fixed}-{mano,brevo,depo,clrs}` from code.

    python hub_configs/build.py [output_dir]

Each folder holds `config.json`, `generation_config.json`, the task family's tokenizer and a model card
(`README.md` with YAML metadata): everything but weights, so `AutoConfig.from_pretrained(folder)` works
and `examples/train.py --model_name_or_path hub_configs/anira-o-brevo` trains it. A test rebuilds the
folders and fails when the shipped ones differ (edit this file, then rerun it).
"""

import shutil
import sys
from pathlib import Path

HUB_CONFIGS_DIR = Path(__file__).resolve().parent
VARIANTS = {"e": "early", "o": "online", "fixed": "fixed"}
# Sizes per family: small enough to train on one GPU in minutes, positions enough for the sizes the
# family's generators allow at the evaluation sizes of TASKS.md.
FAMILY_SIZES = {
    "mano": dict(hidden_size=256, intermediate_size=1024, num_attention_heads=4, max_position_embeddings=256),
    "depo": dict(hidden_size=256, intermediate_size=1024, num_attention_heads=4, max_position_embeddings=256),
    "brevo": dict(hidden_size=256, intermediate_size=1024, num_attention_heads=4, max_position_embeddings=1024),
    "clrs": dict(hidden_size=256, intermediate_size=1024, num_attention_heads=4, max_position_embeddings=2048),
}
FAMILY_TASKS = {
    "mano": ("mano", "number of operators l", "--train_sizes 1 2 3 4 --extrapolation_sizes 5 6 --task_params '{\"modulus\": 23}'"),
    "depo": ("depo", "number of hops k", "--train_sizes 1 2 3 4 --extrapolation_sizes 5 6 --task_params '{\"num_nodes\": 8}'"),
    "brevo": ("brevo", "graph size n", "--train_sizes 3 4 5 6 7 8 9 10 11 12 --extrapolation_sizes 14 16"),
    "clrs": ("topological_sort", "input size n", "--train_sizes 4 5 7 10 12 --interpolation_sizes 6 8 9 11 --extrapolation_sizes 14 16"),
}
CORE = dict(num_prelude_layers=1, num_core_layers=2, num_coda_layers=1, max_depth=8, min_depth=1,
            injection="add", compute_penalty=0.01, depth_init_bias=3.0)


def model_name(variant: str, family: str) -> str:
    return f"anira-{variant}-{family}"


def build_config(variant: str, family: str, tokenizer):
    from modeling_anira import AniraConfig

    return AniraConfig(
        vocab_size=len(tokenizer), depth_mode=VARIANTS[variant],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        **FAMILY_SIZES[family], **CORE,
    )


def build_all(output_dir: str | Path = HUB_CONFIGS_DIR) -> list[Path]:
    from transformers import GenerationConfig

    import modeling_anira  # noqa: F401  (registers the Auto classes)
    from anira_tasks.training import model_card
    from tokenization import TOKENIZATION_DIR, load_tokenizer

    folders = []
    for family, (task, knob, sizes) in FAMILY_TASKS.items():
        tokenizer = load_tokenizer(family)
        for variant in VARIANTS:
            name = model_name(variant, family)
            folder = Path(output_dir) / name
            config = build_config(variant, family, tokenizer)
            # Plain data, no code copy: these folders are used with the installed package (`import modeling_anira`);
            # the folders `examples/train.py` saves carry the modeling files for `trust_remote_code=True`.
            folder.mkdir(parents=True, exist_ok=True)
            config.to_json_file(folder / "config.json")
            GenerationConfig(
                do_sample=False, max_new_tokens=256, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            ).save_pretrained(folder)
            for tokenizer_file in sorted((TOKENIZATION_DIR / family).iterdir()):  # the shipped files, as they are
                shutil.copyfile(tokenizer_file, folder / tokenizer_file.name)
            train_args = f"--task {task} {sizes}"
            (folder / "README.md").write_text(model_card(name, config, task, knob, f"hub_configs/{name}", train_args))
            folders.append(folder)
    return folders


if __name__ == "__main__":
    sys.path.insert(0, str(HUB_CONFIGS_DIR.parent))
    for folder in build_all(sys.argv[1] if len(sys.argv) > 1 else HUB_CONFIGS_DIR):
        print(f"wrote {folder}")

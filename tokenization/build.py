"""Rebuild the shipped tokenizer folders from the task vocabularies: `python -m tokenization.build [output_dir]`.

This build step is the one place where `tokenization` reads `anira_tasks` (each task module lists its
symbols); the library side (`tokenization/__init__.py`) loads the built folders and imports no task code,
so dependencies run one way: anira_tasks -> tokenization.
"""

import sys
from pathlib import Path

from tokenization import FAMILIES, TOKENIZATION_DIR, UNKNOWN_IS_ERROR


def family_vocabulary(family: str) -> list[str]:
    from anira_tasks import brevo, clrs, depo, mano
    from anira_tasks.common import SPECIAL_SYMBOLS

    symbols = {"mano": mano, "brevo": brevo, "depo": depo, "clrs": clrs}[family].vocabulary()
    assert len(set(symbols)) == len(symbols) and not set(symbols) & set(SPECIAL_SYMBOLS), family
    return SPECIAL_SYMBOLS + symbols


def build_tokenizer(family: str):
    """A fresh `PreTrainedTokenizerFast` over the family's symbols (see the module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from anira_tasks.common import BOS, EOS, PAD, SPECIAL_SYMBOLS, UNK

    vocabulary = family_vocabulary(family)
    assert UNKNOWN_IS_ERROR not in vocabulary
    backend = Tokenizer(models.WordLevel({s: i for i, s in enumerate(vocabulary)}, unk_token=UNKNOWN_IS_ERROR))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Each token but <bos> decodes to " " + symbol: decoding is concatenative (module docstring).
    backend.decoder = decoders.Replace(Regex(f"^(?!{BOS}$)"), " ")
    backend.add_special_tokens(SPECIAL_SYMBOLS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=8192,
        # Prompts end where the answer starts, so a batch of prompts for `generate` pads on the left (a right-padded
        # prompt would be continued after its padding). Training pads itself (anira_study.data's collators).
        padding_side="left",
    )


def build_all(output_dir: str | Path = TOKENIZATION_DIR) -> list[Path]:
    """Writes every family's tokenizer folder under `output_dir`; returns the folders."""
    folders = []
    for family in FAMILIES:
        folder = Path(output_dir) / family
        build_tokenizer(family).save_pretrained(folder)
        folders.append(folder)
    return folders


if __name__ == "__main__":
    for folder in build_all(sys.argv[1] if len(sys.argv) > 1 else TOKENIZATION_DIR):
        print(f"wrote {folder}")

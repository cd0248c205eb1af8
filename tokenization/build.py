"""Rebuild the shipped tokenizer folders: `python -m tokenization.build [output_dir]`."""

import sys

from tokenization import TOKENIZATION_DIR, build_all

if __name__ == "__main__":
    for folder in build_all(sys.argv[1] if len(sys.argv) > 1 else TOKENIZATION_DIR):
        print(f"wrote {folder}")

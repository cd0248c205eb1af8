"""What the example scripts share: checks of user input that end in one clear line, not a traceback.

`run_script(main, "evaluate_models.py")` turns the `ValueError` a user mistake raises (a missing model folder, a
malformed argument, a corrupt tokenizer file, an empty prompt) into `evaluate_models.py: error: <message>` and exit
status 2, the convention of `argparse`; programming errors keep their traceback.
"""

import json
import sys
from pathlib import Path

from tokenization import check_tokenizer_files


def check_model_dir(path: str | Path) -> Path:
    """A folder `from_pretrained` can read: it exists, has a config.json, a tokenizer.json, and every config and
    tokenizer file in it parses; the ValueError names the file."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"model folder {str(path)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder / 'config.json'} is missing: {str(path)!r} is not a saved model folder")
    for name in ("config.json", "generation_config.json"):
        file = folder / name
        if file.exists():
            try:
                json.loads(file.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{file} is corrupt ({error})") from None
    check_tokenizer_files(folder)
    return folder


def check_positive(name: str, value: int) -> int:
    if value is None or value < 1:
        raise ValueError(f"--{name} must be >= 1, got {value}")
    return value


def run_script(main, script: str):
    try:
        return main()
    except ValueError as error:
        print(f"{script}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None

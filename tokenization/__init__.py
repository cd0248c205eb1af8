"""One word-level Hugging Face fast tokenizer per task family: `mano`, `brevo`, `depo`, `clrs`.

Each folder `tokenization/<family>` is plain data (tokenizer.json + tokenizer_config.json) that
`AutoTokenizer.from_pretrained("tokenization/<family>")` loads with no custom code; they are
built from the task vocabularies by `python -m tokenization.build`, and a test fails when the
shipped folders differ from a fresh build.

Decisions:
- ids 0..3 are `<pad>`, `<bos>`, `<eos>`, `<unk>` in every family, then the family's symbols.
- No post-processor: samples carry `<bos>` (and `<eos>`) in their text, so `tokenizer(text)`
  then `tokenizer.decode(ids)` gives back exactly `text`. `clean_up_tokenization_spaces` is off
  (it would glue CLRS's `,` to the previous symbol).
- Decoding is concatenative: every token but `<bos>` decodes to a space followed by its symbol
  (a `Replace` decoder), `<bos>` to itself, so `decode(a + b) == decode(a) + decode(b)`. A text
  (it starts with `<bos>`) decodes back exactly; a piece without `<bos>` (a completion, an answer
  slice, one token, or anything decoded with `skip_special_tokens=True`) starts with a space. This
  is what `pipeline("text-generation")` needs: it returns `prompt + decode(completion ids)`.
- Unknown symbols are errors in the tokenizer itself. `<unk>` (id 3) is only an added special
  token (`tokenizer.unk_token_id == 3`); the WordLevel model's own unk token is UNKNOWN_IS_ERROR, a
  name with spaces that no whitespace-split word can equal and that is absent from the vocabulary,
  so `tokenizer(text)` / `encode` on a text with an unknown word raises the `tokenizers` library's
  `Exception("WordLevel error: Missing [UNK] token from the vocabulary")` instead of emitting
  `<unk>`. That message cannot name the word (it is fixed in the Rust library); `encode_text` /
  `encode_texts` raise a ValueError that names it, and the package's entry points encode with them.
  (Python-side lookups that never reach the Rust model, e.g. `convert_tokens_to_ids("hello")`,
  still answer `unk_token_id`.)
- MANO's vocabulary covers values 0..96 (moduli up to 97) and `<l=1>` .. `<l=32>`, so one
  tokenizer serves every modulus.
"""

import json
from pathlib import Path

TOKENIZATION_DIR = Path(__file__).resolve().parent
FAMILIES = ("mano", "brevo", "depo", "clrs")
# The WordLevel model's unk token: not in any vocabulary and never a whitespace-split word, so an
# unknown word is an error in `tokenizers` instead of `<unk>` (see the module docstring).
UNKNOWN_IS_ERROR = "<unknown symbols are errors>"


def load_tokenizer(family: str):
    """The shipped tokenizer of a task family (`mano`, `brevo`, `depo`, `clrs`; `anira_tasks.load_tokenizer`
    also takes a task name such as "bfs").

    The same object `AutoTokenizer.from_pretrained` gives, loaded through the class directly:
    AutoTokenizer would import torch first, seconds that a data-only process does not need.
    """
    from transformers import PreTrainedTokenizerFast

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r} (anira_tasks.load_tokenizer maps task names)")
    check_tokenizer_files(TOKENIZATION_DIR / family)
    return PreTrainedTokenizerFast.from_pretrained(str(TOKENIZATION_DIR / family))


def check_tokenizer_files(folder: str | Path) -> Path:
    """The folder holds a tokenizer.json, and every tokenizer file in it parses; else a ValueError naming the file.

    transformers names neither: a missing tokenizer.json gives "Couldn't instantiate the backend tokenizer" (it
    looks for a slow tokenizer to convert), a corrupt file a bare JSONDecodeError."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ValueError(f"{tokenizer_file} is missing: {folder} holds no tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).exists():
            try:
                json.loads((folder / name).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{folder / name} is corrupt ({error})") from None
    try:
        Tokenizer.from_file(str(tokenizer_file))
    except Exception as error:  # the Rust library's errors are plain Exceptions
        raise ValueError(f"{tokenizer_file} is corrupt: not a tokenizers file ({error})") from None
    return folder


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of many sample texts; a ValueError names any symbol outside the vocabulary.

    For our word-level tokenizers this is a vocabulary lookup per whitespace-separated symbol,
    which is exactly what WordLevel + WhitespaceSplit compute, and about ten times faster than
    the Rust `encode_batch` (whose offsets and added-token matching we do not need). Any other
    tokenizer goes through `encode_batch`, with `<unk>` detection.
    """
    backend = tokenizer.backend_tokenizer
    if type(backend.model).__name__ == "WordLevel" and type(backend.pre_tokenizer).__name__ == "WhitespaceSplit":
        vocabulary = tokenizer.get_vocab()
        try:
            return [[vocabulary[symbol] for symbol in text.split()] for text in texts]
        except KeyError as error:
            raise ValueError(f"symbol {error.args[0]!r} is not in the tokenizer's vocabulary") from None
    unk_id = tokenizer.unk_token_id
    ids = [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    for text, text_ids in zip(texts, ids):
        if unk_id is not None and unk_id in text_ids:
            raise ValueError(f"a symbol of {text[:80]!r}... is not in the tokenizer's vocabulary")
    return ids


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of one sample text; a ValueError names any unknown symbol."""
    return encode_texts(tokenizer, [text])[0]

"""Generate from an ANIRA model and show where the compute went: every token coloured by its depth.

    python examples/generate.py --model outputs/anira-o-depo --prompt "<bos> ..." --max_new_tokens 8
    python examples/generate.py --model outputs/anira-o-depo --prompt "..." --html depths.html --stream

Prints the prompt and the completion as a heat map in the terminal (ANSI colours, cold = few
iterations, hot = many) followed by a table of (token, depth), and with `--html` writes the same heat map
as an HTML file. By default a token is coloured by the depth *spent on predicting it*, i.e. the
iterations run at the position before it (`depths[i - 1]` in the forward's convention, where `depths[i]`
is the compute at position i that predicts token i + 1), so a completion token shows what it cost; the
first prompt token has none. `--depth_on position` colours each token by the depth of its own position.
`--stream` also prints the tokens as they are generated (`DepthStreamer`). A prompt symbol outside the
tokenizer's vocabulary is a ValueError that names it (`tokenization.encode_text`), never a silent `<unk>`.
"""

import html
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

import modeling_anira  # noqa: F401  (registers the Auto classes)
from modeling_anira import DepthStreamer
from modeling_anira.generation_anira import depth_color, paint
from anira_study.cli import check_model_dir, check_positive, run_script
from tokenization import encode_text


@dataclass
class GenerateArguments:
    model: str = field(metadata={"help": "A folder saved with save_pretrained (model and tokenizer)."})
    prompt: str = field(metadata={"help": "The prompt text."})
    max_new_tokens: int = field(default=16)
    max_depth: int | None = field(default=None, metadata={"help": "Depth budget (fixed/online models may raise it)."})
    do_sample: bool = field(default=False)
    html: str | None = field(default=None, metadata={"help": "Also write the heat map to this HTML file."})
    depth_on: str = field(default="predicted", metadata={"help": "'predicted': a token shows the depth spent "
                          "predicting it; 'position': the depth of its own position.", "choices": ["predicted", "position"]})
    stream: bool = field(default=False, metadata={"help": "Print tokens with their depths as they are generated."})
    device: str | None = field(default=None, metadata={"help": "Default: cuda when available, else cpu."})


def token_depths(depths: list[int], depth_on: str) -> list[int | None]:
    """Per token, the depth to show (None where there is none)."""
    shown = depths if depth_on == "position" else [-1] + depths[:-1]
    return [d if d >= 0 else None for d in shown]


def terminal_heat_map(tokens: list[str], depths: list[int | None], prompt_length: int, max_depth: int) -> str:
    prompt = " ".join(paint(t, d, max_depth) for t, d in zip(tokens[:prompt_length], depths[:prompt_length]))
    completion = " ".join(paint(t, d, max_depth) for t, d in zip(tokens[prompt_length:], depths[prompt_length:]))
    legend = " ".join(paint(f" {d} ", d, max_depth) for d in range(1, max_depth + 1))
    return f"prompt:     {prompt}\ncompletion: {completion}\ndepth:      {legend}"


def html_heat_map(tokens: list[str], depths: list[int | None], prompt_length: int, max_depth: int, title: str) -> str:
    def rgb(code: int) -> str:  # xterm 256-colour cube -> CSS
        code -= 16
        levels = [0, 95, 135, 175, 215, 255]
        return f"rgb({levels[code // 36]},{levels[code // 6 % 6]},{levels[code % 6]})"

    def span(token: str, depth: int | None) -> str:
        style = f"background:{rgb(depth_color(depth, max_depth))}" if depth is not None else "background:#eee"
        label = "no depth" if depth is None else f"depth {depth}"
        return f'<span class="t" style="{style}" title="{label}">{html.escape(token)}</span>'

    prompt = " ".join(span(t, d) for t, d in zip(tokens[:prompt_length], depths[:prompt_length]))
    completion = " ".join(span(t, d) for t, d in zip(tokens[prompt_length:], depths[prompt_length:]))
    legend = " ".join(span(str(d), d) for d in range(1, max_depth + 1))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:monospace;line-height:2}} .t{{padding:2px 4px;border-radius:3px}} .c{{font-weight:bold}}</style>
</head><body><h3>{html.escape(title)}</h3>
<p>prompt: {prompt}</p><p class="c">completion: {completion}</p><p>depth: {legend}</p></body></html>
"""


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(GenerateArguments).parse_args_into_dataclasses(args=argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_model_dir(args.model)
    if not args.prompt.strip():
        raise ValueError("--prompt is empty: give at least one symbol, e.g. '<bos> ...'")
    check_positive("max_new_tokens", args.max_new_tokens)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).to(device).eval()
    max_depth = args.max_depth or model.config.max_depth
    encode_text(tokenizer, args.prompt)  # a ValueError naming any symbol outside the vocabulary, before generating
    inputs = tokenizer(args.prompt, return_tensors="pt").to(device)
    streamer = DepthStreamer(tokenizer, color=True) if args.stream else None
    extra = {"max_depth": args.max_depth} if args.max_depth is not None else {}
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                             return_dict_in_generate=True, streamer=streamer, **extra)
    ids = out.sequences[0].tolist()
    tokens = [tokenizer.decode([i]).strip() for i in ids]  # word-level tokenizers decode a token as " symbol"
    depths = token_depths(out.depths[0].tolist(), args.depth_on)
    prompt_length = inputs["input_ids"].shape[1]

    print(terminal_heat_map(tokens, depths, prompt_length, max_depth))
    print(f"\n{'pos':>4} {'token':<16} depth   (shown: {args.depth_on})")
    for position, (token, depth) in enumerate(zip(tokens, depths)):
        part = "prompt" if position < prompt_length else "completion"
        print(f"{position:>4} {token:<16} {'-' if depth is None else depth:>5}   {part}")
    if args.html:
        Path(args.html).write_text(html_heat_map(tokens, depths, prompt_length, max_depth, f"{args.model}: depths"))
        print(f"\nwrote {args.html}")
    return {"tokens": tokens, "depths": out.depths[0].tolist(), "prompt_length": prompt_length}


if __name__ == "__main__":
    run_script(main, "generate.py")

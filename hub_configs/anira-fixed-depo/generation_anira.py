"""`generate()` that reports the depth of every prompt and generated token.

transformers' decoding loop keeps only logits, scores, attentions, hidden states and the cache from each
forward, so the depths a forward computes would be dropped. The cache records them instead
(`AniraCache.depths`, one column per processed position, kept aligned by beam reordering and batch
expansion), and `AniraGenerationMixin.generate` is a thin wrapper around `GenerationMixin.generate` that

- creates the `AniraCache` (slots per iteration x core layer, added as iterations run) when none is passed;
  it is the "dynamic" `cache_implementation`, and the other kinds (a fixed layer stack) are refused;
  the `max_depth` generate kwarg is forwarded to every forward (fixed and online models may raise it);
- with `return_dict_in_generate=True`, returns `AniraGenerateOutput` / `AniraGenerateBeamOutput`: the
  usual output plus `depths`, aligned with `sequences`.

`depths[b, i]` is the number of iterations the model ran at position i, the compute spent on predicting
token i+1: the same numbers as the forward's `depths` on the generated sequence. -1 where nothing ran:
padding, and a sequence's final generated token (its first EOS, or the last position) and everything
after it. Beam search keeps only the running beams in the cache, so its depths come from one forward over
the returned sequences (equal by construction: incremental decoding equals one full forward); so do
`use_cache=False` runs, which have no record.
"""

import sys
from dataclasses import dataclass
from typing import TextIO

import torch
from transformers.cache_utils import Cache
from transformers.generation import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, GenerationMixin
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput

from .cache_anira import AniraCache


def _no_continuous_batching(method: str) -> str:
    return (f"{method}() is transformers' continuous batching, which runs the model on a paged cache of a fixed layer "
            "stack; ANIRA runs its layers a per-token number of times and has its own: model.generate_stream(prompts, "
            "max_batch_size=..., max_new_tokens=...) (continuous batching, each prompt's tokens and depths as it "
            "finishes), model.generate(inputs, depth_batching=True) for one padded batch, or model.generate(inputs).")


@dataclass
class AniraGenerateOutput(GenerateDecoderOnlyOutput):
    r"""
    depths (`torch.LongTensor` [batch, sequence_length]): iterations run at each position of `sequences` (the
        compute spent on predicting the next token); -1 at padding and from each sequence's final token on.
    """

    depths: torch.LongTensor | None = None


@dataclass
class AniraGenerateBeamOutput(GenerateBeamDecoderOnlyOutput):
    r"""
    depths (`torch.LongTensor` [batch * num_return_sequences, sequence_length]): as in `AniraGenerateOutput`.
    """

    depths: torch.LongTensor | None = None


class AniraGenerationMixin(GenerationMixin):
    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, streamer=None,
                 depth_batching: bool = False, **kwargs):
        r"""`GenerationMixin.generate` with ANIRA's cache and per-token depths (see the module docstring).

        max_depth (`int`, *optional*): the depth budget of every forward (default `config.max_depth`).
        depth_batching (`bool`, *optional*): decode depth-wise batched (`depth_batching.py`): every sequence advances
            through the core on its own, so a step no longer lasts as long as the batch's deepest token. Greedy
            decoding gives each sequence what it gets alone, tokens and depths; sampling draws from one generator per
            sequence. Beam search, streamers and per-step outputs stay on the standard loop.

        A model in train mode generates in eval mode, and gets its modules' train/eval modes back afterwards: a
        training forward draws early-mode depths (Gumbel) and applies dropout, so two greedy calls would differ.
        """
        if self.training:
            modes = [(module, module.training) for module in self.modules()]
            self.eval()
            try:
                return self.generate(inputs, generation_config, streamer, depth_batching, **kwargs)
            finally:
                for module, training in modes:
                    module.training = training
        config = generation_config if generation_config is not None else self.generation_config
        self._check_cache_implementation(kwargs.get("cache_implementation", config.cache_implementation))
        if "cache_implementation" in kwargs or config.cache_implementation is not None:
            kwargs["cache_implementation"] = None  # "dynamic": the AniraCache below is that kind
        if depth_batching:
            from .depth_batching import depth_batched_generate

            return depth_batched_generate(self, inputs, generation_config, streamer, **kwargs)
        max_depth = kwargs.get("max_depth") or self.config.max_depth
        cache = kwargs.pop("cache", None)
        legacy = kwargs.pop("past_key_values", None)
        cache = legacy if cache is None else cache
        if kwargs.get("use_cache", config.use_cache) is not False:
            cache = self._depth_cache(cache, max_depth)
        if cache is not None:
            kwargs["cache"] = cache
        if isinstance(streamer, DepthStreamer):
            streamer.watch(cache)

        result = super().generate(inputs, generation_config, streamer=streamer, **kwargs)
        if not isinstance(result, ModelOutput):
            return result
        prompt = inputs if inputs is not None else kwargs.get("input_ids")
        prompt_length = prompt.shape[1] if prompt is not None and prompt.dim() == 2 else 0
        beam = isinstance(result, GenerateBeamDecoderOnlyOutput)
        if beam or cache is None:
            depths = self._forward_depths(result.sequences, prompt, kwargs, config, max_depth)
        else:
            depths = self._recorded_depths(cache, result.sequences)
        output_class = AniraGenerateBeamOutput if beam else AniraGenerateOutput
        if depths is not None:
            depths = self._end_at_final_token(depths, result.sequences, prompt_length, self._eos_ids(config, kwargs))
        return output_class(**dict(result.items()), depths=depths)

    def generate_stream(self, prompts, max_batch_size: int = 8, **kwargs):
        r"""Depth-wise batched decoding of many prompts (`depth_batching.py`): at most `max_batch_size` sequences at
        a time, each prompt taking a row as soon as one frees. Yields a `DepthBatchResult` per prompt as it finishes
        (`request_id` is the prompt's index; `.sequence`, `.generated`, `.depths`). `prompts`: an iterable of 1D token
        ids (no padding), read as rows free up; `kwargs`: generation options as for `generate()` (greedy or sampling).
        The model must be in eval mode.

            >>> for result in model.generate_stream(tokenizer(texts)["input_ids"], max_batch_size=32, max_new_tokens=16):
            ...     print(result.request_id, tokenizer.decode(result.generated), result.depths.tolist())
        """
        from .depth_batching import DepthBatcher

        batcher = DepthBatcher(self, max_batch_size, **kwargs)
        prompts = iter(prompts)
        while True:
            while len(batcher.queue) < max_batch_size:
                prompt = next(prompts, None)
                if prompt is None:
                    break
                batcher.add(prompt)
            if not batcher.busy:
                return
            yield from batcher.step()

    # transformers' continuous batching (ContinuousMixin) runs the model on a paged cache of a fixed layer stack, which
    # a looped model with per-token depth cannot fill: unguarded, each request logged an error and came back tokenless.
    def init_continuous_batching(self, *args, **kwargs):
        raise NotImplementedError(_no_continuous_batching("init_continuous_batching"))

    def continuous_batching_context_manager(self, *args, **kwargs):
        raise NotImplementedError(_no_continuous_batching("continuous_batching_context_manager"))

    def generate_batch(self, *args, **kwargs):
        raise NotImplementedError(_no_continuous_batching("generate_batch"))

    @staticmethod
    def _check_cache_implementation(implementation: str | None) -> None:
        """`cache_implementation` picks the cache transformers builds; ANIRA builds its own, a dynamic one (grown as
        positions and iterations come). "dynamic" names it; the others name caches of a fixed layer stack that a looped
        model cannot fill, and "paged" hands generation to continuous batching, which runs the model on such a cache."""
        if implementation in (None, "dynamic"):
            return
        if implementation == "paged":
            raise ValueError("cache_implementation='paged' runs continuous batching, which needs a paged cache of a "
                             "fixed layer stack; ANIRA's continuous batching is model.generate_stream(prompts, ...) "
                             "(or DepthBatcher).")
        raise ValueError(f"cache_implementation={implementation!r} is not available for ANIRA: generate() uses its own "
                         "dynamic cache (AniraCache, a slot per layer application, added as iterations run). Leave "
                         "cache_implementation unset, or 'dynamic'.")

    def _depth_cache(self, cache: Cache | None, max_depth: int) -> AniraCache:
        """A passed-in AniraCache (it serves any budget: slots are added as iterations run), else a new one;
        a filled cache of another kind is passed on, and the forward explains why it cannot be used."""
        if isinstance(cache, AniraCache):
            cache.max_depth = max(cache.max_depth, max_depth)  # the streamer's colour scale
            return cache
        if cache is not None and cache.get_seq_length() > 0:
            return cache
        return AniraCache(self.config, max_depth=max(max_depth, self.config.max_depth))

    @staticmethod
    def _recorded_depths(cache: AniraCache, sequences: torch.LongTensor) -> torch.LongTensor:
        """The cache's record covers every processed position; the final token was never processed."""
        record = cache.depths
        if record is None:
            return torch.full_like(sequences, -1)
        stream = torch.nn.functional.pad(record.to(sequences.device), (0, 1), value=-1)
        length = sequences.shape[1]
        if stream.shape[1] >= length:
            return stream[:, -length:].clone()
        return torch.nn.functional.pad(stream, (length - stream.shape[1], 0), value=-1)

    def _forward_depths(self, sequences, prompt, kwargs, config, max_depth) -> torch.LongTensor | None:
        """Depths from one forward over `sequences`: for beam search (the cache holds only the running beams)
        and for generation without a cache."""
        if prompt is None or prompt.dim() != 2:
            return None  # a prompt given as embeddings cannot be fed back as ids
        mask = kwargs.get("attention_mask")
        if mask is None:
            pad = config.pad_token_id if config.pad_token_id is not None else self.config.pad_token_id
            eos = self._eos_ids(config, kwargs)
            mask = prompt != pad if pad is not None and pad not in eos else torch.ones_like(prompt)
        mask = mask.to(sequences.device).long().repeat_interleave(sequences.shape[0] // prompt.shape[0], dim=0)
        mask = torch.nn.functional.pad(mask, (0, sequences.shape[1] - mask.shape[1]), value=1)
        with torch.no_grad():
            depths = self(input_ids=sequences, attention_mask=mask, use_cache=False, max_depth=max_depth,
                          return_dict=True).depths
        return depths.clone()

    def _eos_ids(self, config, kwargs) -> list[int]:
        for eos in (kwargs.get("eos_token_id"), config.eos_token_id, self.generation_config.eos_token_id,
                    self.config.eos_token_id):
            if eos is not None:
                return [int(e) for e in (eos.tolist() if torch.is_tensor(eos) else eos)] if not isinstance(eos, int) else [eos]
        return []

    @staticmethod
    def _end_at_final_token(depths, sequences, prompt_length: int, eos_ids: list[int]) -> torch.LongTensor:
        """-1 from each sequence's final generated token on: its first EOS, else the last position."""
        depths[:, -1] = -1
        if eos_ids:
            generated = sequences[:, prompt_length:]
            is_eos = torch.isin(generated, torch.tensor(eos_ids, device=sequences.device))
            after = is_eos.long().cumsum(-1) > 0  # the first EOS and everything after it
            depths[:, prompt_length:] = depths[:, prompt_length:].masked_fill(after, -1)
        return depths


# ------------------------------------------------------------------------------------------------ streamer

_HEAT = (21, 27, 33, 39, 45, 51, 87, 123, 159, 195, 226, 220, 214, 208, 202, 196)  # 256-colour ramp, cold -> hot


def depth_color(depth: int, max_depth: int) -> int:
    """A 256-colour ANSI code for a depth in 1..max_depth (cold = shallow, hot = deep)."""
    if max_depth <= 1:
        return _HEAT[-1]
    return _HEAT[round((depth - 1) / (max_depth - 1) * (len(_HEAT) - 1))]


def paint(text: str, depth: int | None, max_depth: int) -> str:
    """`text` on a background coloured by `depth` (plain when the depth is unknown)."""
    if depth is None or depth < 1:
        return text
    return f"\033[48;5;{depth_color(depth, max_depth)}m\033[38;5;16m{text}\033[0m"


class DepthStreamer(BaseStreamer):
    """Prints each token as it is generated, with the depth that produced it: `token[d]`.

    The depth shown with a token is the number of iterations run at the position before it (the compute
    spent on predicting it), read from the model's cache, which `generate` hands to the streamer. The
    prompt is printed once its forward has run, its first token without a depth. Batch size 1 only (as
    transformers' `TextStreamer`). `color=True` paints a heat map with ANSI colours instead of `[d]`.
    Each token is printed as the text it adds to `tokenizer.decode` of everything streamed so far (` 2` for a
    word-level tokenizer's `2`), so the stream without its depth marks is exactly the decoded sequence, spaces
    included. Everything streamed is also kept in `self.tokens` as (text, depth) pairs.

        >>> streamer = DepthStreamer(tokenizer)
        >>> model.generate(**tokenizer("3 + 4 =", return_tensors="pt"), streamer=streamer, max_new_tokens=5)
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, color: bool = False, max_depth: int | None = None,
                 file: TextIO | None = None, **decode_kwargs):
        self.tokenizer, self.skip_prompt, self.color = tokenizer, skip_prompt, color
        self.max_depth, self.file, self.decode_kwargs = max_depth, file, decode_kwargs
        self.cache: AniraCache | None = None
        self.prompt: list[int] | None = None
        self.tokens: list[tuple[str, int | None]] = []
        self.ids: list[int] = []  # every token streamed, and their decoded text: each token prints what it adds
        self.text = ""

    def watch(self, cache: AniraCache | None) -> None:
        """Called by `generate`: the cache whose depth record the streamer reads."""
        self.cache, self.prompt, self.tokens, self.ids, self.text = cache, None, [], [], ""
        if cache is not None and self.max_depth is None:
            self.max_depth = cache.max_depth

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1 and value.shape[0] > 1:
            raise ValueError("DepthStreamer supports batch size 1 only.")
        ids = value.reshape(-1).tolist()
        if self.prompt is None:  # generate's first call: the prompt, whose depths are known after its forward
            self.prompt = ids
            return
        record = self.cache.depths[0].tolist() if self.cache is not None and self.cache.depths is not None else []
        for position, token in enumerate(self.prompt):
            depth = record[position - 1] if 0 < position <= len(record) else None
            self._emit(token, depth, shown=not self.skip_prompt)
        self.prompt = []
        for token in ids:
            self._emit(token, record[-1] if record else None)

    def _emit(self, token: int, depth: int | None, shown: bool = True) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, **self.decode_kwargs)
        # what this token adds to the decoded text (a decoder that rewrites earlier text gets the new text whole)
        piece = text[len(self.text):] if text.startswith(self.text) else text
        self.text = text
        if not shown:
            return
        depth = depth if depth is not None and depth >= 0 else None
        self.tokens.append((piece, depth))
        if self.color:
            word = piece.lstrip()
            printed = piece[: len(piece) - len(word)] + paint(word, depth, self.max_depth or 1)
        else:
            printed = piece if depth is None else f"{piece}[{depth}]"
        print(printed, end="", flush=True, file=self.file or sys.stdout)

    def end(self) -> None:
        print(file=self.file or sys.stdout, flush=True)
        self.prompt = None


__all__ = ["AniraGenerateOutput", "AniraGenerateBeamOutput", "AniraGenerationMixin", "DepthStreamer"]

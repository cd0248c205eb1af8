"""The KV cache of a looped model: one slot per prelude layer, per coda layer, per (iteration, core layer).

Slot layout (P prelude, C core, K coda layers):

    0 .. P-1                    prelude layer l
    P + k                       coda layer k
    P + K + (t-1) * C + l       core layer l at iteration t (t = 1, 2, ...)

Every slot holds keys/values for every position seen so far, including tokens that halted before that
iteration: by docs/design.md's reuse rule those are the keys/values of the token's frozen state at that core
layer, the same at every later iteration, so they are computed once and written into each later slot.
That is what makes incremental decoding equal one full forward.

Iteration slots exist only for iterations that ran, plus one: after each forward the slots of iteration
(deepest iteration run so far) + 1 hold every position's frozen keys/values. So the cache grows with the
depth the tokens actually took, not with the budget (a budget of 64 whose tokens all halt after one
iteration costs two iteration slots, not 64), and a later forward that runs deeper than any before (a
raised budget, or a harder token) adds the slots it needs: the positions before it are all frozen there,
so a new slot starts as a copy of the last one's entries for them (`AniraCache.update`).

The cache also records the depth of every position it has processed (`depths`, [batch, seen]), which is
how `generate()` reports per-token depth: transformers' decoding loop keeps only the cache from a
forward's outputs. Beam reordering, batch expansion and cropping keep that record aligned.
"""

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .configuration_anira import AniraConfig


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` that appends into a buffer with spare room, so adding a chunk costs the chunk, not the
    whole history (`DynamicLayer` concatenates, copying every cached position on every update). A looped model
    updates max_depth x core slots per token, most of them for frozen tokens, so that copy would be a per-token
    cost that no halting could save. `keys`/`values` are views of the buffer's filled part; when another method
    replaces them (beam reordering, cropping, batch selection, offloading), the next update rebuilds the buffer."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer = self._value_buffer = self._keys_view = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if torch.is_grad_enabled() and (key_states.requires_grad or value_states.requires_grad):
            self._key_buffer = None  # autograd needs the earlier views intact: concatenate as DynamicLayer does
            return super().update(key_states, value_states, *args, **kwargs)
        length, new = self.get_seq_length(), key_states.shape[-2]
        if self._key_buffer is None or self.keys is not self._keys_view or length + new > self._key_buffer.shape[-2]:
            self._grow(key_states, value_states, length, capacity=2 * (length + new))
        self._key_buffer[..., length : length + new, :] = key_states
        self._value_buffer[..., length : length + new, :] = value_states
        self.keys = self._keys_view = self._key_buffer[..., : length + new, :]
        self.values = self._value_buffer[..., : length + new, :]
        return self.keys, self.values

    def _grow(self, key_states, value_states, length: int, capacity: int) -> None:
        def buffer(states, old):
            # zeros, not uninitialised memory: the spare room is never read, but then a cache's bytes do not depend
            # on the memory it was given (an exported or compiled run's cache equals an eager one's, spare room too)
            grown = states.new_zeros(*states.shape[:-2], capacity, states.shape[-1])
            if length:
                grown[..., :length, :] = old
            return grown

        self._key_buffer = buffer(key_states, self.keys)
        self._value_buffer = buffer(value_states, self.values)

    def reset(self) -> None:
        super().reset()
        self._key_buffer = self._value_buffer = self._keys_view = None


class AniraCache(Cache):
    """`max_depth` is the largest depth budget the cache has served (generate and the forward raise it); it
    sizes nothing: iteration slots are added as iterations run (see the module docstring)."""

    def __init__(self, config: AniraConfig, max_depth: int | None = None):
        self.num_prelude_layers = config.num_prelude_layers
        self.num_core_layers = config.num_core_layers
        self.num_coda_layers = config.num_coda_layers
        self.max_depth = config.max_depth if max_depth is None else max_depth
        slots = self.num_prelude_layers + self.num_coda_layers + self.num_core_layers  # iteration 1's only
        super().__init__(layers=[GrowingLayer() for _ in range(slots)])
        # The prelude and coda slots, there from the start: reads of them go here, not through `layers`, whose length
        # follows the tokens' depths (a compiled prelude or coda would be guarded on it and recompile as it grows).
        self._fixed_slots = tuple(self.layers[: self.num_prelude_layers + self.num_coda_layers])
        self._depths: torch.LongTensor | None = None

    # slot arithmetic -------------------------------------------------------------------------------
    def prelude_slot(self, layer: int) -> int:
        return layer

    def coda_slot(self, layer: int) -> int:
        return self.num_prelude_layers + layer

    def core_slot(self, iteration: int, layer: int) -> int:
        """Slot of core layer `layer` (0-based) at iteration `iteration` (1-based, as in docs/design.md)."""
        return self.num_prelude_layers + self.num_coda_layers + (iteration - 1) * self.num_core_layers + layer

    def __len__(self) -> int:
        """The model's layer count as transformers reads it from a cache (`len(cache)`, compared with
        `config.num_hidden_layers`): a token's layer applications at the largest budget the cache has served, P + C x
        max_depth + K, whatever depth the tokens reached (at the config's budget, `config.num_hidden_layers`). Each
        application has its keys/values here: the iteration slots past the stored ones are not kept, since every
        position is frozen there and each would hold what the last stored slot of its core layer holds. `layers` are
        the stored slots (fewer when the tokens stopped early; one more iteration's when some ran the whole budget)."""
        return self.num_prelude_layers + self.num_core_layers * self.max_depth + self.num_coda_layers

    @property
    def iterations(self) -> int:
        """Iterations that have slots."""
        return (len(self.layers) - self.num_prelude_layers - self.num_coda_layers) // self.num_core_layers

    def get_seq_length(self, layer_idx: int = 0) -> int:
        # Between forwards every slot holds every position seen, so slot 0 counts them (the model reads this
        # before a forward writes anything).
        if layer_idx < len(self._fixed_slots):
            return self._fixed_slots[layer_idx].get_seq_length()
        return super().get_seq_length(layer_idx)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx < len(self._fixed_slots):
            return self._fixed_slots[layer_idx].update(key_states, value_states, *args, **kwargs)
        while layer_idx >= len(self.layers):
            self._add_iteration(new=key_states.shape[-2])
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)

    def _add_iteration(self, new: int) -> None:
        """Slots for the first iteration that runs deeper than every earlier forward. The positions before this
        chunk (all but the `new` ones) are frozen there: their keys/values are those the last existing slot of
        the same core layer holds for them (the one-past-the-deepest slot, see the module docstring). That
        slot has already received this chunk, since iterations run in order."""
        iteration = self.iterations + 1
        for layer in range(self.num_core_layers):
            last = self.layers[self.core_slot(iteration - 1, layer)]
            slot = GrowingLayer()
            past = last.get_seq_length() - new
            if past > 0:
                slot.update(last.keys[..., :past, :], last.values[..., :past, :])
            self.layers.append(slot)

    # depth record ----------------------------------------------------------------------------------
    @property
    def depths(self) -> torch.LongTensor | None:
        """[batch, positions seen]: iterations each cached position ran (-1 at padding)."""
        return self._depths

    def record_depths(self, depths: torch.LongTensor) -> None:
        self._depths = depths if self._depths is None else torch.cat([self._depths, depths], dim=-1)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        if self._depths is not None:
            self._depths = self._depths.index_select(0, beam_idx.to(self._depths.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self._depths is not None:
            self._depths = self._depths.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        if self._depths is not None:
            self._depths = self._depths[indices]

    def crop(self, tokens_to_remove: int) -> None:
        """Remove the last `-tokens_to_remove` positions (transformers 5.x passes a negative count)."""
        super().crop(tokens_to_remove)
        if self._depths is not None and tokens_to_remove != 0:
            self._depths = self._depths[:, : -abs(tokens_to_remove)]

    def reset(self) -> None:
        super().reset()
        self._depths = None

"""The decoder run incrementally over a batch of sequences, with its KV cache: the one piece of the inference
engine that calls the language model. Sequences are right-padded per feed; the mask over the whole cache hides the
padding from every later position, and position ids count each sequence's own positions only. A decoder forks:
each sequence becomes several identical continuations that share what was fed before (`fork`), and a decoder over a
prefix can be copied so that the prefix is encoded once and forked many times (`copy`)."""

import copy
import inspect
from typing import Optional

import torch
from transformers import DynamicCache

def right_padded(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences `[t_i, ...]` -> (`[b, max t_i, ...]` zero-padded at the end, lengths `[b]`)."""
    lengths = torch.tensor([len(x) for x in sequences], device=sequences[0].device)
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True), lengths


def length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """`[b, width]` long: 1 on the first `lengths[i]` positions of row i."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).long()


class IncrementalDecoder:
    """The decoder run incrementally over a batch of sequences, with its KV cache. Each feed gives every sequence
    its next positions, padded at the end to the longest; the mask over the whole cache hides the padding from every
    later position, and the position ids count each sequence's own positions only."""

    def __init__(self, model):
        self.model = model
        self.decoder = model.get_decoder()
        # the decoder fills this cache in place; transformers renamed its argument `past_key_values` -> `cache`
        self.cache = DynamicCache()
        parameters = inspect.signature(self.decoder.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.last_hidden: Optional[torch.Tensor] = None  # [b, h] at the last position fed to each sequence
        self.mask: Optional[torch.Tensor] = None  # [b, positions in the cache]
        self.lengths: Optional[torch.Tensor] = None  # [b] positions of each sequence so far (padding excluded)

    def feed(self, inputs_embeds: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> None:
        """`inputs_embeds`: `[b, n, h]`, the next `lengths[i]` (default n) positions of sequence i, then padding.
        A sequence with nothing to feed (length 0) keeps its `last_hidden`."""
        b, n = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if lengths is None:
            lengths = torch.full((b,), n, device=device)
        if self.lengths is None:
            self.lengths, self.mask = torch.zeros_like(lengths), lengths.new_zeros((b, 0))
        self.mask = torch.cat([self.mask, length_mask(lengths, n)], dim=1)
        position_ids = self.lengths[:, None] + torch.arange(n, device=device)[None, :]
        out = self.decoder(inputs_embeds=inputs_embeds, attention_mask=self.mask, position_ids=position_ids,
                           use_cache=True, **{self.cache_argument: self.cache})
        last = out.last_hidden_state[torch.arange(b, device=device), (lengths - 1).clamp(min=0)]
        fed = (lengths > 0)[:, None]
        self.last_hidden = last if self.last_hidden is None else torch.where(fed, last, self.last_hidden)
        self.lengths = self.lengths + lengths

    def fork(self, times: int) -> None:
        """Each sequence becomes `times` identical ones, next to each other (each continuation goes on from its
        sequence's positions so far)."""
        if times > 1:
            self.cache.batch_repeat_interleave(times)
            self.last_hidden = self.last_hidden.repeat_interleave(times, dim=0)
            self.mask = self.mask.repeat_interleave(times, dim=0)
            self.lengths = self.lengths.repeat_interleave(times, dim=0)

    def copy(self) -> "IncrementalDecoder":
        """A decoder that goes on from the same positions, with its own cache: feeding or forking it leaves this one
        as it is (a planner forks one encoded prefix in every iteration)."""
        other = object.__new__(IncrementalDecoder)
        other.__dict__.update(self.__dict__)
        other.cache = copy.deepcopy(self.cache)
        return other


def padded_segments(segments: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the next positions of its `c` sequences `[c, n_i, h]` -> (`[rows * c, max n_i, h]` padded at the end,
    lengths `[rows * c]`)."""
    width = max(segment.shape[1] for segment in segments)
    padded = torch.cat([torch.nn.functional.pad(segment, (0, 0, 0, width - segment.shape[1]))
                        for segment in segments])
    lengths = torch.tensor([segment.shape[1] for segment in segments for _ in range(segment.shape[0])],
                           device=padded.device)
    return padded, lengths

"""A key/value cache for local generation that appends in place.

transformers' DynamicCache concatenates each layer's keys and values with the new token at every decoding step:
the whole cache is copied into freshly allocated memory once per token (for SmolLM2-135M at 16 rows x 400 tokens,
~300 MB read and written per step). Here each layer keeps its keys and values in a buffer with spare room (half
again its length, at least 64 positions) and a step writes one position; the layer's ``keys`` / ``values`` are
views of the filled part, so attention sees exactly what DynamicCache would give it and greedy outputs match.

Only for models whose layers all attend to the full sequence (sliding-window layers trim their cache, which this
does not do) and for greedy / sampled generation; beam search and assisted decoding keep transformers' cache.
Also: conversions between a transformers cache and per-layer keys/values (``cache_from``, ``stacked_keys_values``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    MIN_SPARE = 64

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buf: torch.Tensor | None = None
        self._value_buf: torch.Tensor | None = None
        self._length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self._length + key_states.shape[-2]
        if self._key_buf is None or end > self._key_buf.shape[-2]:
            self._key_buf = self._grown(self._key_buf, key_states, end)
            self._value_buf = self._grown(self._value_buf, value_states, end)
        self._key_buf[..., self._length : end, :].copy_(key_states)
        self._value_buf[..., self._length : end, :].copy_(value_states)
        self._length = end
        self.keys, self.values = self._key_buf[..., :end, :], self._value_buf[..., :end, :]
        return self.keys, self.values

    def _grown(self, old: torch.Tensor | None, new: torch.Tensor, needed: int) -> torch.Tensor:
        capacity = needed + max(self.MIN_SPARE, needed // 2)
        buf = new.new_empty((*new.shape[:-2], capacity, new.shape[-1]))
        if old is not None and self._length:
            buf[..., : self._length, :].copy_(old[..., : self._length, :])
        return buf

    def _unsupported(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the in-place cache supports greedy and sampled generation only")

    reorder_cache = crop = batch_repeat_interleave = batch_select_indices = _unsupported


class GrowingCache(DynamicCache):
    def __init__(self) -> None:
        Cache.__init__(self, layer_class_to_replicate=GrowingLayer)


def cache_argument(model: Any) -> str:
    """The name under which forward() and generate() take a cache: ``cache`` since transformers 5.2x,
    ``past_key_values`` before (deprecated since, removed in v6)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def supports_growing_cache(model: Any) -> bool:
    """Decoder-only models whose every layer is a full-attention DynamicLayer in transformers' own cache."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT-wrapped student
    config = base.config
    if config.is_encoder_decoder or not getattr(base, "_supports_default_dynamic_cache", lambda: False)():
        return False
    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # an unusual config transformers cannot lay out: keep its default
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def cache_from(keys: Any, values: Any) -> DynamicCache:
    """A transformers cache holding these keys and values, one [rows, heads, length, dim] pair per layer."""
    cache = DynamicCache()
    for layer, (k, v) in enumerate(zip(keys, values)):
        cache.update(k, v, layer)
    return cache


def stacked_keys_values(cache: Any, n_layers: int) -> torch.Tensor:
    """A transformers cache's keys and values as one tensor [2, layers, rows, heads, length, dim]."""
    layers = [cache.layers[i] for i in range(n_layers)]
    return torch.stack([torch.stack([lay.keys for lay in layers]), torch.stack([lay.values for lay in layers])])

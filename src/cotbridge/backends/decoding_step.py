"""A decoding step of a Llama-family model through the model's own modules, without transformers' forward plumbing.

The step calls the modules and functions of the model's forward in the same order with the same arguments, leaving
out the per-call Python around them (a deprecated-argument check on every layer and attention call, output capture,
mask preparation, output dataclasses), and multiplies a layer's query/key/value and its gate/up as one stacked product
each (models/stacked_projections.py, which checks those give the separate products' bits). On an AMD EPYC Zen 4 in
bf16 whole evaluations took 0.91-0.98x model()'s time (bench/results/decoding_step_zen4.md); one step 0.95x at 16
rows and 0.97x at 50, where the machine's noise (+-4%) hides how that splits between the plumbing and the stacking
(bench/results/decoding_step_parts_zen4.md: also where a step's time goes, e.g. bf16 at 16 rows attention 29%, the
products 58%, everything else 14%).

Same operations, same bits, and a decoder checks that: ``step_logits``' first call for a model runs both and keeps
``model()`` for that model where any logit bit differs (a model type whose layers do something the step does not:
extra norms, soft-capping, scaled embeddings). The registry maps ``config.model_type`` to a step function; other
model types decode through ``model()``.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Callable
from typing import Any

import torch

from cotbridge.models.stacked_projections import projections

log = logging.getLogger(__name__)

Step = Callable[[Any, torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]


def llama_step(model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> torch.Tensor:
    """Logits [rows, width, vocab] of LlamaForCausalLM-shaped models (Llama, SmolLM, Qwen2) for ``ids`` [rows, width]
    at ``positions``, attending under ``mask`` (4-D, as the attention function takes it) to ``cache``, which
    ``update(keys, values, layer)`` extends, as the layers' own forward does."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    body = model.model
    code = sys.modules[type(body.layers[0].self_attn).__module__]  # the modelling file's own helper functions
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(model.config._attn_implementation, code.eager_attention_forward)
    hidden = body.embed_tokens(ids)
    cos_sin = body.rotary_emb(hidden, position_ids=positions)
    rows_width = hidden.shape[:-1]
    for index, layer in enumerate(body.layers[: model.config.num_hidden_layers]):
        attn = layer.self_attn
        x = layer.input_layernorm(hidden)
        heads = (*rows_width, -1, attn.head_dim)
        q, k, v = (
            p.view(heads).transpose(1, 2) for p in projections(attn, (attn.q_proj, attn.k_proj, attn.v_proj), x)
        )
        q, k = code.apply_rotary_pos_emb(q, k, *cos_sin)
        k, v = cache.update(k, v, index)
        window = {"sliding_window": attn.sliding_window} if hasattr(attn, "sliding_window") else {}  # Qwen2: None
        out, _ = attend(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling, position_ids=positions, **window)
        hidden = hidden + attn.o_proj(out.reshape(*rows_width, -1).contiguous())
        mlp = layer.mlp
        gate, up = projections(mlp, (mlp.gate_proj, mlp.up_proj), layer.post_attention_layernorm(hidden))
        hidden = hidden + mlp.down_proj(mlp.act_fn(gate) * up)
    return model.lm_head(body.norm(hidden))


STEPS: dict[str, Step] = {"llama": llama_step, "qwen2": llama_step}


def step_for(model: Any) -> Step | None:
    """The registered step for the model's type (None: decode through ``model()``). PEFT wrappers are unwrapped by
    the caller; a LoRA layer inside is a module like any other."""
    return STEPS.get(getattr(model.config, "model_type", ""))


def _plain(model: Any) -> bool:
    """Whether a forward of the model is only its modules' arithmetic: in eval mode (the step leaves dropout out) and
    with no forward hooks anywhere (the step calls submodules the hooks may sit on, or skips them). Checked at every
    step: hooks come and go (a steering experiment, accelerate's offloading)."""
    from torch.nn.modules import module as torch_module

    if model.training or torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return False
    modules = _MODULES.get(model)
    if modules is None:  # listed once (walking the tree at every step cost ~0.6 ms)
        modules = _MODULES[model] = list(model.modules())
    return not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


_MODULES: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


# model -> {attention implementation: whether its registered step gives model()'s logits}: checked once per model
_SAME_BITS: weakref.WeakKeyDictionary[Any, dict[str, bool]] = weakref.WeakKeyDictionary()


def step_logits(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, cache_kw: str
) -> torch.Tensor:
    """The logits of one decoding step: through the model type's registered step where that gives ``model()``'s
    bits, else through ``model()``. The first call for a model runs both (the step first, so that the cache ends
    up holding what ``model()`` wrote) and returns ``model()``'s."""

    def full() -> torch.Tensor:
        kw = {cache_kw: cache}
        return model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kw).logits

    step = step_for(model)
    if step is None or not _plain(model):
        return full()
    verdicts = _SAME_BITS.setdefault(model, {})
    impl = model.config._attn_implementation
    if verdicts.get(impl) is False:
        return full()
    if verdicts.get(impl):
        return step(model, ids, mask, positions, cache)
    why = "its logits differ from the model's"
    try:
        lean = step(model, ids, mask, positions, cache)
    except Exception as e:  # a registered type whose modules are laid out otherwise
        lean, why = None, f"{type(e).__name__}: {e}"
    logits = full()
    verdicts[impl] = same = lean is not None and torch.equal(lean, logits)
    if not same:
        log.info("decoding through model(): the %s step does not fit this model (%s)", model.config.model_type, why)
    return logits

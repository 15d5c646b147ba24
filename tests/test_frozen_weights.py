"""Frozen linear weights cast to bf16 once: the same losses and gradients as autocast's cast at every product."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from cotbridge.train.frozen_weights import frozen_weights_cast_once


def _lora(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(model, config)


def _step(model, ids):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return loss.detach(), grads


def test_training_is_bit_identical_and_each_module_gets_its_forward_back(tiny_model_dir):
    model = _lora(tiny_model_dir)
    ids = torch.randint(0, model.config.vocab_size, (3, 24))
    frozen = [m for m in model.modules() if type(m) is torch.nn.Linear and not m.weight.requires_grad]
    before = _step(model, ids)
    with frozen_weights_cast_once(model, enabled=True) as n:
        assert n == len(frozen) > 0 and all("forward" in vars(m) for m in frozen)
        during = _step(model, ids)
        with torch.no_grad():  # outside autocast the fp32 weight is used: generation and the merge see no rounding
            x = torch.randn(2, frozen[0].in_features)
            assert torch.equal(frozen[0](x), x @ frozen[0].weight.t())
    after = _step(model, ids)
    assert not any("forward" in vars(m) for m in frozen)
    for other in (during, after):
        assert torch.equal(other[0], before[0])
        assert all(torch.equal(other[1][k], g) for k, g in before[1].items())


def test_off_or_full_fine_tuning_patches_nothing(tiny_model_dir):
    model = _lora(tiny_model_dir)
    with frozen_weights_cast_once(model, enabled=False) as n:
        assert n == 0
    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)  # every weight trains
    with frozen_weights_cast_once(full, enabled=True) as n:
        assert n == 0

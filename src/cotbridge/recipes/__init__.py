"""The methods, each a recipe of stages on :mod:`cotbridge.engine`: Fine-tune-CoT (finetune_cot),
Instruction-tuning-CoT (instruct), LM-guided CoT (lm_guided) and on-policy distillation (on_policy). Importing this
package registers all four in ``engine.RECIPES``."""

from cotbridge.recipes.finetune_cot import recipe as _finetune_cot  # noqa: F401  (registration)
from cotbridge.recipes.instruct import recipe as _instruct  # noqa: F401
from cotbridge.recipes.lm_guided import recipe as _lm_guided  # noqa: F401
from cotbridge.recipes.on_policy import recipe as _on_policy  # noqa: F401

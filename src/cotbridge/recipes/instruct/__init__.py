"""Instruction-tuning-CoT (Ranaldi & Freitas, EACL 2024): several teachers, one student, and the
in-domain x out-of-domain transfer matrix. Entry point: :func:`cotbridge.recipes.instruct.recipe.run_instruct`."""

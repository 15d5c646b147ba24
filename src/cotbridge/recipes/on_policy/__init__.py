"""On-policy distillation (GKD, Agarwal et al. 2024): an optional Fine-tune-CoT warm-up on teacher rationales, then the
student trained on its own samples toward a same-tokenizer teacher's next-token distribution; `cotbridge onpolicy`."""

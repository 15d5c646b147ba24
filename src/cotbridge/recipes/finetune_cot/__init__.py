"""Fine-tune-CoT (Ho et al. 2023): teacher rationales, curated, distilled into a small student; `cotbridge run`."""

"""LM-guided CoT (Lee et al. 2024): a small writer distilled then RL-refined, a frozen large model answers;
`cotbridge lmguided`."""

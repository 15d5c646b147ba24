"""Student training: SFT (full or LoRA) on curated rationales; see sft.py."""

"""Loading models: hub ids, folders, GGUF files (dequantised once), models shipped in PyPI packages; how students read
their input."""

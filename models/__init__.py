"""Training, export and validation of the venue models (later issues)."""

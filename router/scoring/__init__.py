"""The venue model: its contract and manifest, and the onnxruntime scorer."""

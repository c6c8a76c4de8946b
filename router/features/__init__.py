"""The routing feature vector: its catalogue (the one definition, for serving
and training) and the engine that computes it."""

"""How events reach the engine in the daemon: the threaded hop, the poll pump,
timers, the loop-lag probe and the collector's freezes. No FIX here: the
driver talks to the edge through ``Transport``."""

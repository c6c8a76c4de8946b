"""The routing engine (``core``) and the compact records it keeps of what is
finished (``clordids``). ``Engine`` and ``Step`` are its public names."""

from router.engine.core import Engine, Step

__all__ = ["Engine", "Step"]

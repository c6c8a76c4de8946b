"""What a journal row holds, and the one encoding of it (msgpack).

Events and commands are tagged unions, so a row decodes back into the very
struct that was recorded. A ``Decision``'s arrays travel as dtype, shape
and raw bytes: exact, and a few hundred bytes for a five-venue row block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, NamedTuple

import msgspec
import numpy as np

from router.domain.commands import Command
from router.domain.decision import Decision
from router.domain.events import EngineEvent

EVENT: Final = "event"
"""An engine input, in the order the engine took it."""
COMMANDS: Final = "commands"
"""What the engine returned for the event recorded just before (non-empty only)."""
DECISION: Final = "decision"
"""How the parent of the event recorded just before was routed."""
KINDS: Final = (EVENT, COMMANDS, DECISION)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"dtype": obj.dtype.str, "shape": list(obj.shape), "data": obj.tobytes()}
    raise NotImplementedError(f"cannot journal {type(obj).__name__}")


def _dec_hook(typ: type, obj: Any) -> Any:
    if isinstance(obj, dict) and set(obj) == {"dtype", "shape", "data"}:
        return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    raise NotImplementedError(f"cannot read {typ} from the journal")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_events = msgspec.msgpack.Decoder(EngineEvent)
_commands = msgspec.msgpack.Decoder(list[Command])
_decisions = msgspec.msgpack.Decoder(Decision, dec_hook=_dec_hook)


def encode(obj: EngineEvent | list[Command] | Decision) -> bytes:
    return _encoder.encode(obj)


def decode_event(body: bytes) -> EngineEvent:
    return _events.decode(body)


def decode_commands(body: bytes) -> list[Command]:
    return _commands.decode(body)


def decode_decision(body: bytes) -> Decision:
    return _decisions.decode(body)


class RecordedStep(NamedTuple):
    """One input as the journal holds it, with what the engine returned for
    it (bodies still encoded: a reader decodes only what it needs)."""

    seq: int
    event: bytes
    commands: bytes | None
    decision: bytes | None


def steps(rows: Iterable[tuple[int, str, int, bytes]]) -> Iterator[RecordedStep]:
    """A session's rows (in seq order) grouped by input: each event with the
    commands and decision recorded right after it."""
    cur: RecordedStep | None = None
    for seq, kind, _, body in rows:
        if kind == EVENT:
            if cur is not None:
                yield cur
            cur = RecordedStep(seq, body, None, None)
        elif cur is not None and kind == COMMANDS:
            cur = cur._replace(commands=body)
        elif cur is not None and kind == DECISION:
            cur = cur._replace(decision=body)
    if cur is not None:
        yield cur

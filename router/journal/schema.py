"""The journal's tables, by schema version, and the path from each version
to the next.

A journal written by an older build is migrated forward, in one
transaction per step, when a newer build opens it; a journal newer than
this build is refused (it may hold what this build cannot read).
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 3

MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    # 0 -> 1: the first schema.
    1: (
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE sessions (
            session_id INTEGER PRIMARY KEY,
            started_ns INTEGER NOT NULL,
            id_prefix TEXT NOT NULL,
            model_version TEXT NOT NULL,
            config TEXT NOT NULL
        )""",
        """CREATE TABLE records (
            seq INTEGER NOT NULL,
            session_id INTEGER NOT NULL REFERENCES sessions(session_id),
            kind TEXT NOT NULL,
            ts_ns INTEGER NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
    ),
    # 1 -> 2: a session restored from the one before it (restart recovery).
    2: (
        """ALTER TABLE sessions ADD COLUMN restored_from INTEGER NOT NULL DEFAULT 0""",
    ),
    # 2 -> 3: which router wrote a session (several may share one journal).
    3: (
        """ALTER TABLE sessions ADD COLUMN router TEXT NOT NULL DEFAULT ''""",
    ),
}
"""version -> the statements that turn version - 1 into it."""
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))

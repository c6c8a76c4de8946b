"""The decision journal: an append-only record of every engine input, every
command it returned and every routing decision, written off the engine's
thread (``writer``) into SQLite (``store``) under a versioned schema
(``schema``); ``records`` is the one encoding of what goes in."""

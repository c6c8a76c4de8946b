"""The decision journal: an append-only record of every engine input, every
command it returned and every routing decision, written off the engine's
thread (``writer``) into SQLite (``store``) or, for one journal several
routers share, PostgreSQL (``pgstore``; ``store.open_store`` picks by
``journal.url``), under a versioned schema (``schema``); ``records`` is
the one encoding of what goes in. Read back, ``story`` tells one parent's
whole story and ``export`` writes Parquet tables for analysis."""

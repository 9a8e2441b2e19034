"""Schema of the catalog, one step per version.

``STEPS[i]`` takes a catalog at ``PRAGMA user_version`` ``i`` to ``i + 1``. Each step runs
inside its own ``BEGIN IMMEDIATE ... COMMIT`` together with the version bump, so a crash
leaves the catalog at one version or the next, never between. Append new steps; never edit
a released one (libraries on disk have already run it).

Paths are stored as BLOBs of ``os.fsencode(path)``: that round-trips every name the operating
system can hand us, including non-UTF-8 bytes on Linux, which a TEXT column cannot hold.
"""

from __future__ import annotations

import sqlite3

from photofind.errors import PhotofindError

_V1 = [
    """CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE folders (
        id       INTEGER PRIMARY KEY,
        path     BLOB NOT NULL UNIQUE,
        added_ns INTEGER NOT NULL
    )""",
    """CREATE TABLE photos (
        id            INTEGER PRIMARY KEY,
        folder_id     INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        path          BLOB NOT NULL UNIQUE,
        size          INTEGER NOT NULL,
        mtime_ns      INTEGER NOT NULL,
        phash         TEXT,
        status        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'indexed', 'failed', 'offline')),
        error         TEXT,
        capture_date  TEXT,
        embedding     BLOB,
        model_id      TEXT,
        -- the catalog generation at which this row's embedding was written; lets a vector
        -- index that is behind catch up with exactly the rows it missed
        embedding_gen INTEGER NOT NULL DEFAULT 0,
        CHECK (status != 'indexed' OR embedding IS NOT NULL)
    )""",
    "CREATE INDEX photos_status ON photos(status)",
    "CREATE INDEX photos_folder ON photos(folder_id)",
    "CREATE INDEX photos_hash ON photos(size, phash)",
    "CREATE INDEX photos_embedding_gen ON photos(embedding_gen)",
    "INSERT INTO meta(key, value) VALUES ('model_id', ''), ('generation', '0')",
]

# A model change in progress: the new model's vectors are collected beside the active ones
# (search keeps using those) and swapped in, in one transaction, once every photo has one.
_V2 = [
    """CREATE TABLE staged_embeddings (
        photo_id     INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
        -- NULL when the staged model could not read the photo; error then says why
        embedding    BLOB,
        capture_date TEXT,
        error        TEXT,
        CHECK (embedding IS NOT NULL OR error IS NOT NULL)
    )""",
    "INSERT INTO meta(key, value) VALUES ('staged_model_id', '')",
]

# One list of SQL statements per schema version (a callable would do for data migrations).
STEPS: list[list[str]] = [_V1, _V2]

SCHEMA_VERSION = len(STEPS)


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, *, where: str = "catalog") -> int:
    """Bring ``conn`` (opened with ``isolation_level=None``) up to :data:`SCHEMA_VERSION`.

    Idempotent: a catalog already at the current version is left alone. Returns the number of
    steps applied. A catalog from a newer photofind is refused rather than guessed at.
    """
    applied = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read the version inside the write lock: another process may have migrated
            # between our open and now.
            version = schema_version(conn)
            if version > SCHEMA_VERSION:
                raise PhotofindError(
                    f"{where} has schema version {version}, newer than this photofind "
                    f"understands ({SCHEMA_VERSION}); upgrade photofind to open it"
                )
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return applied
            for statement in STEPS[version]:
                conn.execute(statement)
            # PRAGMA takes no parameters; version is an int we computed.
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
            applied += 1
        except BaseException:
            # SQLite may have rolled back already (a full disk): a second ROLLBACK would
            # raise "no transaction is active" and hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

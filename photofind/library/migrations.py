"""Schema of the catalog, one step per version.

``STEPS[i]`` takes a catalog at ``PRAGMA user_version`` ``i`` to ``i + 1``. Each step runs
inside its own ``BEGIN IMMEDIATE ... COMMIT`` together with the version bump, so a crash
leaves the catalog at one version or the next, never between. Append new steps; never edit
a released one (libraries on disk have already run it).

Paths are stored as BLOBs of ``os.fsencode(path)``: that round-trips every name the operating
system can hand us, including non-UTF-8 bytes on Linux, which a TEXT column cannot hold.
"""

from __future__ import annotations

import logging
import sqlite3

from photofind.errors import PhotofindError

log = logging.getLogger(__name__)

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

# An item can hold many vectors (a video one per sampled frame, with its time), and each
# analyser keeps its own per-item state. The photo row stays the item; its embedding moves to
# ``vectors``. A still's vector takes its item's id as its own (frames beyond the first draw
# ids from the same sequence as items, see catalog.py), so the labels of a vector index
# saved by v2 code, which were photo ids, are the right vector ids and nothing is rebuilt.
# The staged model change keeps its vectors in ``staged_vectors`` (the same ids, so the
# staged index becomes the library's index at the swap), its per-item outcome in
# ``analyses``. SQLite cannot drop a column a CHECK names (photos.embedding), so the photo
# table is rebuilt (SQLite's documented 12-step procedure, foreign keys off: see migrate).
_V3 = [
    """CREATE TABLE photos_v3 (
        id            INTEGER PRIMARY KEY,
        folder_id     INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        path          BLOB NOT NULL UNIQUE,
        size          INTEGER NOT NULL,
        mtime_ns      INTEGER NOT NULL,
        phash         TEXT,
        -- the item as search and the grid see it: 'indexed' once the first analyser (the
        -- CLIP image embedding) holds its vectors of the library's model
        status        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'indexed', 'failed', 'offline')),
        error         TEXT,
        capture_date  TEXT
    )""",
    """INSERT INTO photos_v3(id, folder_id, path, size, mtime_ns, phash, status, error,
                             capture_date)
       SELECT id, folder_id, path, size, mtime_ns, phash, status, error, capture_date
       FROM photos""",
    """CREATE TABLE vectors (
        id        INTEGER PRIMARY KEY,
        item_id   INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        -- the frame's time in a video or an animation; NULL for a still
        frame_ms  INTEGER,
        model_id  TEXT NOT NULL,
        embedding BLOB NOT NULL,
        -- the catalog generation at which this vector was written; lets a vector index
        -- that is behind catch up with exactly the vectors it missed
        gen       INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE staged_vectors (
        id        INTEGER PRIMARY KEY,
        item_id   INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        frame_ms  INTEGER,
        model_id  TEXT NOT NULL,
        embedding BLOB NOT NULL
    )""",
    # One row per item, analyser and model once the analyser has run there: done, or failed
    # with the reason. No row: pending. ``data`` holds an analyser's small results (bulky
    # ones, faces, get tables of their own).
    """CREATE TABLE analyses (
        item_id     INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        analyser    TEXT NOT NULL,
        model_id    TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('done', 'failed')),
        error       TEXT,
        data        BLOB,
        updated_gen INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (item_id, analyser, model_id),
        CHECK (status = 'done' OR error IS NOT NULL)
    ) WITHOUT ROWID""",
    # The data: nothing is encoded again. Vector id = photo id.
    """INSERT INTO vectors(id, item_id, frame_ms, model_id, embedding, gen)
       SELECT id, id, NULL,
              COALESCE(model_id, (SELECT value FROM meta WHERE key = 'model_id')),
              embedding, embedding_gen
       FROM photos WHERE embedding IS NOT NULL""",
    """INSERT INTO analyses(item_id, analyser, model_id, status, updated_gen)
       SELECT item_id, 'clip', model_id, 'done', gen FROM vectors""",
    """INSERT INTO analyses(item_id, analyser, model_id, status, error)
       SELECT id, 'clip', (SELECT value FROM meta WHERE key = 'model_id'), 'failed', error
       FROM photos
       WHERE status = 'failed' AND error IS NOT NULL AND embedding IS NULL
         AND (SELECT value FROM meta WHERE key = 'model_id') != ''""",
    """INSERT INTO staged_vectors(id, item_id, frame_ms, model_id, embedding)
       SELECT photo_id, photo_id, NULL,
              (SELECT value FROM meta WHERE key = 'staged_model_id'), embedding
       FROM staged_embeddings WHERE embedding IS NOT NULL""",
    """INSERT INTO analyses(item_id, analyser, model_id, status, error)
       SELECT photo_id, 'clip', (SELECT value FROM meta WHERE key = 'staged_model_id'),
              CASE WHEN embedding IS NULL THEN 'failed' ELSE 'done' END, error
       FROM staged_embeddings""",
    # A capture date is the file's, whichever model read it.
    """UPDATE photos_v3 SET capture_date = s.capture_date FROM staged_embeddings s
       WHERE s.photo_id = photos_v3.id AND photos_v3.capture_date IS NULL
         AND s.capture_date IS NOT NULL""",
    "DROP TABLE staged_embeddings",
    "DROP TABLE photos",
    "ALTER TABLE photos_v3 RENAME TO photos",
    "CREATE INDEX photos_status ON photos(status)",
    "CREATE INDEX photos_folder ON photos(folder_id)",
    "CREATE INDEX photos_hash ON photos(size, phash)",
    "CREATE INDEX vectors_item ON vectors(item_id)",
    "CREATE INDEX vectors_gen ON vectors(gen)",
    "CREATE INDEX staged_vectors_item ON staged_vectors(item_id)",
    "CREATE INDEX analyses_analyser ON analyses(analyser, model_id, status)",
]

# People: the faces the face analyser finds (many per item, each with its box, landmarks,
# 128-d embedding and a small JPEG thumbnail) and the people they are grouped into. A person
# without a name is an unnamed group the clustering made. ``assigned_by`` says whose word put
# a face on its person: 'user' (named, moved or merged by the user: it is a labelled example
# for the k-NN and is never moved by the machine), 'auto' (the k-NN or the clustering: redone
# after every face pass), NULL (no person yet). A "not this person" is remembered in
# ``face_rejections`` so that the k-NN never puts the face back there. Nothing existing is
# touched: faces come from the next face pass.
_V4 = [
    # AUTOINCREMENT: a merged or emptied person's id never comes back as another person
    # (``photofind people name 3 Anna`` must not name whoever took 3 since).
    """CREATE TABLE people (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        -- NULL: an unnamed group
        name       TEXT,
        hidden     INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
        created_ns INTEGER NOT NULL
    )""",
    # Names find people (``photofind people photos NAME``): one person per name.
    "CREATE UNIQUE INDEX people_name ON people(name) WHERE name IS NOT NULL",
    """CREATE TABLE faces (
        id          INTEGER PRIMARY KEY,
        item_id     INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        -- the frame's time in a video; NULL for a still
        frame_ms    INTEGER,
        -- the box in the upright picture's full-size pixels
        x           INTEGER NOT NULL,
        y           INTEGER NOT NULL,
        w           INTEGER NOT NULL,
        h           INTEGER NOT NULL,
        score       REAL NOT NULL,
        landmarks   BLOB NOT NULL,
        embedding   BLOB NOT NULL,
        thumb       BLOB,
        person_id   INTEGER REFERENCES people(id) ON DELETE SET NULL,
        assigned_by TEXT CHECK (assigned_by IN ('user', 'auto')),
        model_id    TEXT NOT NULL
    )""",
    "CREATE INDEX faces_item ON faces(item_id)",
    "CREATE INDEX faces_person ON faces(person_id)",
    """CREATE TABLE face_rejections (
        face_id   INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        PRIMARY KEY (face_id, person_id)
    ) WITHOUT ROWID""",
]

# Videos: an item says what it is (``kind``: 'photo', 'raw', 'video', from
# photofind.formats.kinds) and a video how long it runs. A video's frames are vectors with
# their ``frame_ms`` (v3) and its faces faces with theirs (v4), so nothing else changes.
# Every item a v4 library holds is a photo: v4 read no other kind, so the default is the
# truth and nothing is read or encoded again. ADD COLUMN rewrites no row.
_V5 = [
    "ALTER TABLE photos ADD COLUMN kind TEXT NOT NULL DEFAULT 'photo'",
    # the video's length in ms, known once it is read; NULL for a still
    "ALTER TABLE photos ADD COLUMN duration_ms INTEGER",
]

# One list of SQL statements per schema version.
STEPS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5]

# Steps that move a table's rows (v3 copies every photo and vector): the old pages stay in
# the file as free pages, doubling it (100,000 photos of 512-d vectors: 421 MB became 846 MB),
# until a VACUUM gives them back.
_REWRITES = {2}

SCHEMA_VERSION = len(STEPS)


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, *, where: str = "catalog") -> int:
    """Bring ``conn`` (opened with ``isolation_level=None``) up to :data:`SCHEMA_VERSION`.

    Idempotent: a catalog already at the current version is left alone. Returns the number of
    steps applied. A catalog from a newer photofind is refused rather than guessed at.
    """
    applied = 0
    # A step may rebuild a table others reference (v3 rebuilds photos): with foreign keys on,
    # dropping the old table would cascade-delete every row that references it. SQLite
    # ignores this pragma inside a transaction, so it is set around the steps, and each
    # step's result is checked with foreign_key_check before it commits.
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    before = schema_version(conn)
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        applied += _migrate(conn, where)
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
    if before > 0 and _REWRITES & set(range(before, before + applied)):
        _compact(conn, where)
    return applied


def _compact(conn: sqlite3.Connection, where: str) -> None:
    """VACUUM after a step that rewrote tables. The upgrade is committed already: a VACUUM
    that fails (it needs free space of about the catalog's size) leaves a catalog that is
    fine, only larger, and the free pages are used again as photos come in."""
    try:
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        log.warning(
            "%s: upgraded; compacting it failed (%s), so it keeps its free pages", where, exc
        )


def _migrate(conn: sqlite3.Connection, where: str) -> int:
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
            broken = conn.execute("PRAGMA foreign_key_check").fetchone()
            if broken is not None:
                raise PhotofindError(
                    f"{where}: upgrading to schema version {version + 1} left a row of "
                    f"{broken[0]} pointing at a missing {broken[2]} row; nothing was changed"
                )
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

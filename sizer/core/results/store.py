"""The trial cache: every trial and every per-example prediction in one SQLite file.

A re-run reuses what is there; an interrupted run resumes where it stopped. Each
`add_predictions` call is one transaction in WAL mode, so a kill -9 loses at most the batch in
flight, and `INSERT OR IGNORE` on (trial, example) means no example is ever scored twice. A damaged file is
moved aside (`trials.sqlite.corrupt-<UTC time>`) and a fresh cache started, with a one-line notice.
Secrets never reach the file: meta and summaries pass through `redact` (sizer.core.results.redact) first.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from sizer.core.errors import SizerError
from sizer.core.events import Message
from sizer.core.paths import cache_dir
from sizer.core.results.redact import redact

FILENAME = "trials.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

# Each entry upgrades the schema from version i to i + 1 (index i); append, never edit.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE trials (
        key       TEXT PRIMARY KEY,
        model     TEXT NOT NULL,
        revision  TEXT,
        strategy  TEXT,
        task      TEXT,
        meta      TEXT NOT NULL,
        summary   TEXT,
        status    TEXT NOT NULL DEFAULT 'running',
        created   REAL NOT NULL,
        finished  REAL
    );
    CREATE INDEX trials_model ON trials(model);
    CREATE TABLE predictions (
        trial_key  TEXT NOT NULL REFERENCES trials(key) ON DELETE CASCADE,
        example_id TEXT NOT NULL,
        prediction TEXT,
        gold       TEXT,
        scores     TEXT,
        latency_s  REAL,
        extra      TEXT,
        created    REAL NOT NULL,
        PRIMARY KEY (trial_key, example_id)
    ) WITHOUT ROWID;
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION

_ROW_FIELDS = ("prediction", "gold", "scores")


# --- keys ------------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and tensors become plain lists and numbers; anything else is refused
    # rather than stored by its repr, which would make keys unstable.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def content_hash(obj: Any) -> str:
    """sha256 of `obj` as canonical JSON (sorted keys, no spaces); stable across runs and machines."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def trial_key(model: str, revision: str | None, strategy: str, prompt_hash: str, settings: Mapping[str, Any]) -> str:
    """The cache key of one trial: model and revision, strategy, prompt and scoring settings."""
    return content_hash(
        {"model": model, "revision": revision, "strategy": strategy, "prompt": prompt_hash, "settings": dict(settings)}
    )


# --- the store -------------------------------------------------------------------------------


def default_path() -> Path:
    return cache_dir() / FILENAME


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class TrialStore:
    """One connection to the trial cache; safe to share between threads and processes."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        self.notices: list[str] = []  # what opening it had to repair, one line each

    @classmethod
    def open(cls, path: str | Path | None = None, sink: Callable[[Any], None] | None = None) -> TrialStore:
        """Open (creating or upgrading as needed) the cache at `path` or the default location.

        A file that is not an SQLite database, or a damaged one, is moved aside (renamed
        `trials.sqlite.corrupt-<UTC time>`, never deleted) and a fresh cache takes its place; the
        one-line notice goes to `sink` as a warning `Message` and stays in `store.notices`."""
        path = Path(path) if path is not None else default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _connect(path)
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise SizerError(f"trial cache {path} cannot be opened ({exc}); move the file aside or set "
                                 "SIZER_CACHE_DIR to another folder") from exc
            try:  # another sizer may have replaced it a moment ago
                return cls(_connect(path), path)
            except sqlite3.DatabaseError:
                pass
            kept = _move_aside(path)
            notice = (f"trial cache {path} was damaged ({exc}); kept it as {kept.name} and started a fresh cache"
                      if kept else f"trial cache {path} was damaged ({exc}); another sizer replaced it with a fresh cache")
            conn = _connect(path)
            store = cls(conn, path)
            store.notices.append(notice)
            if sink is not None:
                sink(Message(notice, level="warning"))
            return store
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # trials

    def start_trial(self, key: str, meta: Mapping[str, Any]) -> None:
        """Record a trial (model, revision, strategy, task, settings...); a second call is a no-op."""
        clean = redact(dict(meta))
        with self._lock, self._transaction():
            self._conn.execute(
                "INSERT OR IGNORE INTO trials (key, model, revision, strategy, task, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, str(clean.get("model", "")), clean.get("revision"), clean.get("strategy"),
                 clean.get("task"), _dumps(clean), time.time()),
            )

    def finish_trial(self, key: str, summary: Mapping[str, Any]) -> None:
        """Store the trial's summary (metric, interval, speed, memory); its status defaults to done."""
        clean = redact(dict(summary))
        with self._lock, self._transaction():
            cur = self._conn.execute(
                "UPDATE trials SET summary = ?, status = ?, finished = ? WHERE key = ?",
                (_dumps(clean), str(clean.get("status", "done")), time.time(), key),
            )
        if cur.rowcount == 0:
            raise LookupError(f"no trial {key} in {self.path}; call start_trial first")

    def get_trial(self, key: str) -> dict[str, Any] | None:
        rows = self._trial_rows("WHERE t.key = ?", (key,))
        return rows[0] if rows else None

    def trials(self) -> list[dict[str, Any]]:
        """Every trial, oldest first, with its prediction count."""
        return self._trial_rows("", ())

    def _trial_rows(self, where: str, params: tuple) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT t.key, t.model, t.revision, t.strategy, t.task, t.meta, t.summary, t.status,"
                " t.created, t.finished,"
                " (SELECT COUNT(*) FROM predictions p WHERE p.trial_key = t.key)"
                f" FROM trials t {where} ORDER BY t.created, t.key",
                params,
            ).fetchall()
        names = ("key", "model", "revision", "strategy", "task", "meta", "summary", "status",
                 "created", "finished", "predictions")
        out = []
        for row in rows:
            record = dict(zip(names, row))
            record["meta"], record["summary"] = _loads(record["meta"]), _loads(record["summary"])
            out.append(record)
        return out

    # predictions

    def done_examples(self, key: str) -> dict[str, dict[str, Any]]:
        """example id -> its stored record (prediction, gold, scores, latency_s and any extras)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT example_id, prediction, gold, scores, latency_s, extra FROM predictions"
                " WHERE trial_key = ?",
                (key,),
            ).fetchall()
        done = {}
        for example_id, prediction, gold, scores, latency, extra in rows:
            record = {"example_id": example_id, "prediction": _loads(prediction), "gold": _loads(gold),
                      "scores": _loads(scores), "latency_s": latency}
            record.update(_loads(extra) or {})
            done[example_id] = record
        return done

    def add_predictions(self, key: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store a batch in one transaction; examples already stored are kept as they are.
        Each row needs `example_id`; `prediction`, `gold`, `scores`, `latency_s` and any other
        JSON-able keys are stored too. Returns how many rows were new."""
        now = time.time()
        params = [self._row_params(key, row, now) for row in rows]
        with self._lock, self._transaction():
            if self._conn.execute("SELECT 1 FROM trials WHERE key = ?", (key,)).fetchone() is None:
                raise LookupError(f"no trial {key} in {self.path}; call start_trial first")
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO predictions"
                " (trial_key, example_id, prediction, gold, scores, latency_s, extra, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            return self._conn.total_changes - before

    @staticmethod
    def _row_params(key: str, row: Mapping[str, Any], now: float) -> tuple:
        if "example_id" not in row:
            raise ValueError("every prediction row needs an 'example_id'")
        extra = {k: v for k, v in row.items() if k not in (*_ROW_FIELDS, "example_id", "latency_s")}
        latency = row.get("latency_s")
        return (key, str(row["example_id"]), *(_dumps(row.get(f)) for f in _ROW_FIELDS),
                None if latency is None else float(latency), _dumps(extra) if extra else None, now)

    # housekeeping

    def info(self) -> dict[str, Any]:
        """Path, bytes on disk (database and its WAL), trial and prediction counts per model."""
        with self._lock:
            per_model = self._conn.execute(
                "SELECT t.model, COUNT(DISTINCT t.key), COUNT(p.example_id)"
                " FROM trials t LEFT JOIN predictions p ON p.trial_key = t.key"
                " GROUP BY t.model ORDER BY t.model"
            ).fetchall()
        models = {m: {"trials": t, "predictions": p} for m, t, p in per_model}
        return {
            "path": str(self.path),
            "size_bytes": disk_size(self.path),
            "schema_version": SCHEMA_VERSION,
            "trials": sum(m["trials"] for m in models.values()),
            "predictions": sum(m["predictions"] for m in models.values()),
            "models": models,
        }

    def clear(self, model: str | None = None) -> int:
        """Delete every trial (or one model's) with its predictions; returns the trials removed."""
        where, params = ("WHERE model = ?", (model,)) if model is not None else ("", ())
        with self._lock:
            with self._transaction():
                cur = self._conn.execute(f"DELETE FROM trials {where}", params)
            removed = cur.rowcount
            if model is None:
                self._shrink()
        return removed

    def _shrink(self) -> None:
        # Giving the space back needs the database to itself; while another sizer process has it
        # open the rows are still deleted and the file simply shrinks on a later clear.
        try:
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock up front, so two
    processes wait on the busy timeout instead of failing on a read-to-write upgrade."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    """A configured, migrated connection; sqlite3.DatabaseError when the file is not a usable database."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise SizerError(f"trial cache {path} cannot be opened ({exc}); check the folder's permissions") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _enable_wal(conn)
        # NORMAL in WAL mode: a committed batch survives a killed process (not a power cut).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_NOTADB ("file is not a database") or SQLITE_CORRUPT ("database disk image is malformed")."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def _move_aside(path: Path) -> Path | None:
    """Rename a damaged cache and its write-ahead log to `<name>.corrupt-<UTC time>`; drop its shared
    memory index. None when another process already moved it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while kept.exists():
        n += 1
        kept = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        path.rename(kept)
    except FileNotFoundError:
        return None
    wal = Path(f"{path}-wal")
    if wal.exists():  # a stale log must never be replayed into the fresh database
        wal.rename(Path(f"{kept}-wal"))
    Path(f"{path}-shm").unlink(missing_ok=True)
    return kept


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. SQLite answers "database is locked" at once, without the busy handler, when
    another process is creating or switching the same new file; retry until the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    if _schema_version(conn, path) == SCHEMA_VERSION:
        return
    with _Transaction(conn):
        # Re-read under the write lock: another process may have upgraded it meanwhile.
        for step in range(_schema_version(conn, path), SCHEMA_VERSION):
            for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SizerError(
            f"trial cache {path} has schema version {version}, newer than this sizer's "
            f"{SCHEMA_VERSION}; upgrade sizer or set SIZER_CACHE_DIR to another folder"
        )
    return version


def disk_size(path: Path) -> int:
    """Bytes used by the database file and its -wal/-shm companions."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def read_info(path: str | Path | None = None, sink: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """`TrialStore.info()` without creating a cache that does not exist yet."""
    path = Path(path) if path is not None else default_path()
    if not path.exists():
        return {"path": str(path), "size_bytes": 0, "schema_version": SCHEMA_VERSION,
                "trials": 0, "predictions": 0, "models": {}}
    with TrialStore.open(path, sink=sink) as store:
        return store.info()

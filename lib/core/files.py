"""Every file the project writes goes through here, under two rules.

Whole files (state, summaries, results, pictures) are whole or absent: written to a
temporary sibling, fsynced, renamed over the target, then the directory is fsynced so the
new name survives a power cut. A reader (or a resumed run after `kill -9`) never sees half
a file; the previous version stays in place until the new one is complete.

Whole directories (a trained or converted model, a serving checkpoint, a dataset, an
unpacked tool) are whole or absent the same way: built in a temporary sibling, every file
fsynced, marked `.complete` (the marker is the last thing written, so a directory holding it
is whole), renamed into place by `publish_dir`, then the parent is fsynced. Trainer's
checkpoints are written in place by Trainer itself and only marked (`mark_complete`).

JSON is written one way: strict JSON (NaN and infinities become null, so any reader
accepts it), UTF-8 kept as text, indent 1, ending in a newline.

Append-only JSONL logs (paid replies, judgments, the ledger) grow one record at a time:
each batch of records is ONE `write()` of whole lines on an O_APPEND descriptor, followed
by fsync, so the record is on disk when `append` returns and a kill leaves at most a torn
last line. The one torn-line policy: `repair_torn_tail` cuts it off (together with a last
line that does not parse) before the file is appended to again -- it was never
acknowledged, so the work that produced it is re-done on resume -- and `read_jsonl` yields
only complete lines that parse. An exclusive `flock` around every append and every repair
keeps a repair from cutting a record another process is appending at the same time.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lib.core.errors import UserError

# What a corpus directory holds: JSONL `{"text": ...}` records or plain text, one document a line.
CORPUS_SUFFIXES = (".jsonl", ".json", ".txt")


def parse_jsonl(text: str, where: str, fix: str) -> list:
    """Every non-blank line is one JSON value; the first bad line is one UserError naming
    `where:line` and the `fix`. Lines end at "\\n" only: a U+2028 inside a JSON string (which
    str.splitlines would break on) is text, not a line break."""
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{where}:{n} is not valid JSON: {fix}") from None
    return out


def atomic_write_via(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """`write(tmp_name)` fills a temporary sibling (for writers that want a file name, such
    as matplotlib's savefig); it is fsynced and renamed over `path` only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _chmod_ordinary(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def check_writable(directory: str | os.PathLike, *, need_bytes: int = 0, what: str = "the output directory") -> None:
    """Before work starts: a file can be created in `directory` (or, when it does not exist yet,
    in its nearest existing parent, where it will be made) and, with `need_bytes`, that much is
    free there. Tried for real with a scratch file, so a read-only mount refuses root too."""
    d = Path(directory)
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
            raise
        raise UserError(f"{what} {directory} is not writable ({e.strerror} at {d}): make it writable or "
                        "write elsewhere") from None
    free = shutil.disk_usage(d).free
    if need_bytes and free < need_bytes:
        raise UserError(f"{what} {directory} needs about {need_bytes / 2**20:,.0f} MiB but its disk has "
                        f"{free / 2**20:,.0f} MiB free: free space, or write elsewhere")


def _chmod_ordinary(path: str | os.PathLike, mode: int) -> None:
    """mkstemp/mkdtemp make private 0600/0700 entries; results are ordinary (the umask's) ones."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a new or renamed name in `directory` durable (its entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    atomic_write_via(path, lambda tmp: Path(tmp).write_bytes(raw))


def json_safe(obj):
    """NaN/inf -> None, recursively: what json.dumps would write as NaN is not JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """The one JSON rule (module doc): strict, NaN as null, indent 1, a final newline."""
    text = json.dumps(json_safe(obj), ensure_ascii=False, indent=1, default=str, allow_nan=False)
    atomic_write(path, text + "\n")


def read_json(path: str | os.PathLike, default=None):
    """A whole JSON file, or `default` when there is none."""
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records one JSON object a line; returns how many."""
    lines = [json.dumps(rec, ensure_ascii=False) + "\n" for rec in records]
    atomic_write(path, "".join(lines))
    return len(lines)


# ----------------------------------------------------------------------------- whole directories

COMPLETE = ".complete"


def is_complete(directory: str | os.PathLike) -> bool:
    return (Path(directory) / COMPLETE).is_file()


def mark_complete(directory: str | os.PathLike, note: str = "") -> None:
    """Fsync everything under `directory`, then write its `.complete` marker (`note`, or the
    time): the marker reaches the disk only after every file it vouches for."""
    directory = Path(directory)
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        elif p.is_dir():
            fsync_dir(p)
    atomic_write(directory / COMPLETE, note or f"complete at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")


def publish_dir(tmp: str | os.PathLike, final: str | os.PathLike, note: str = "") -> Path:
    """Mark the fully written directory `tmp` complete and rename it to `final` (module doc).

    A previous `final` is renamed aside and deleted only once the new one is in place (two
    directories cannot be swapped in one rename): a kill in between leaves no `final`, so
    the work is redone, but never a half-written one under its name."""
    tmp, final = Path(tmp), Path(final)
    mark_complete(tmp, note)
    _chmod_ordinary(tmp, 0o777)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------- append-only JSONL

def jsonl_line(record) -> str:
    """One record as one JSONL line (UTF-8 kept as text)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def repair_torn_tail(path: str | os.PathLike) -> int:
    """Cut a torn last line (no newline, or not parsable) off `path`; returns bytes removed.

    A complete-looking last line can still be garbage if a kill hit between the bytes and
    the newline of an older writer, hence the parse check; lines before the last are never
    touched (the readers skip an unparsable one rather than lose what follows it)."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # no appender may land between our read and truncate
        data = f.read()
        keep = len(data)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
        while keep:
            start = data.rfind(b"\n", 0, keep - 1) + 1
            try:
                json.loads(data[start:keep])
                break
            except ValueError:
                keep = start
        if keep != len(data):
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        return len(data) - keep


def read_jsonl(path: str | os.PathLike, *, what: str = "JSONL file", fix: str = "pass an existing file") -> list:
    """A JSONL file the user gave or an earlier phase wrote whole (data, question sets): every
    line must parse. A missing file or a bad line is one UserError naming it and `fix`.
    (Append-only logs, which a kill can leave with a torn last line, are read by `read_log`.)"""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist: {fix}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {p} is not UTF-8 text: pass a JSONL file (one JSON object a line)") from None
    return parse_jsonl(text, str(p), "fix or remove that line")


def read_log(path: str | os.PathLike) -> Iterator:
    """The records of an append-only log: complete lines that parse, in order (a torn or
    garbled line is skipped; only a killed writer leaves one, and its work is re-done)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n") or not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except ValueError:
                continue


def corpus_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The files of a text corpus: files as given, directories expanded to their text files
    (sorted); a comma-separated string names several. Training streams them and cleaning loads
    them through this one list, so both see the same documents."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [p for p in str(paths).split(",") if p]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in CORPUS_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"corpus file {p} not found: pass JSONL with a 'text' field or .txt files")
    if not files:
        raise UserError(f"no corpus files in {', '.join(map(str, paths))}: expected *.jsonl or *.txt")
    kinds = {f.suffix == ".txt" for f in files}
    if len(kinds) > 1:
        raise UserError("corpus mixes .txt and JSONL files: convert one kind so documents are read one way")
    return files


class AppendLog:
    """An append-only JSONL file; every `append` is on disk when it returns (module doc).

    `repair=False` skips the torn-tail repair on open, for a writer that reopens the same
    file for every record and repaired it once already (the ledger)."""

    def __init__(self, path: str | os.PathLike, *, repair: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if repair:
            repair_torn_tail(self.path)
        new = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            fsync_dir(self.path.parent)

    def append(self, record) -> None:
        self.append_many([record])

    def append_many(self, records) -> None:
        if records:
            self.write_lines("".join(jsonl_line(r) for r in records).encode("utf-8"))

    def write_lines(self, data: bytes) -> None:
        """Whole lines, already serialised (each ending in a newline): one write, one fsync."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:  # one write() in practice; the loop only guards against short writes
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AppendLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""One job per input over a corpus (videos, image folders): resumable, in N worker processes or
as Ray tasks, with a manifest.

Each input gets its own output folder ``OUT/<stem>/`` (its :func:`~key2mesh.safe_paths.input_stem`,
made safe and unique). A job is a picklable function ``job(input: str, out_dir: Path, options) ->
{"frames": int, "people": int}`` (``input``: an absolute path, or a name of ``names``); it may
raise, which fails that input only. Markers in the folder say whose it is and how far it got:
``.key2mesh-running.json`` when the input starts, then ``.key2mesh-done.json`` (or
``.key2mesh-failed.json``), written atomically, each with the input and a digest of the options.

A rerun skips the inputs done with the same options and, unless told to retry them, those that
failed with them; an input done or failed with other options, or left running by a killed run,
is redone from an emptied folder. A folder keeps its input across runs (the markers say which),
new inputs take names that no entry of ``OUT`` has, and a folder without a marker is never
emptied: it is not ours. ``OUT/manifest.csv`` has one row per input (:data:`FIELDS`), rewritten
atomically after every finished input (inputs not yet run are ``pending`` there).

A worker process that dies (a crash, the out-of-memory killer) takes the pool with it: the
inputs that were running are run again one at a time, so that only an input that kills a
worker on its own is ``failed`` ("worker died"); the others go on in a new pool. An input
that a killed run left running is rerun in a worker process of its own (with one worker too,
where the inputs run in this process): one that crashed the run is failed, not a crash of
every rerun. Ctrl-C or SIGTERM stops the workers at once; a worker ends when the main process
dies.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from key2mesh.errors import Key2MeshError
from key2mesh.media.video import VIDEO_SUFFIXES
from key2mesh.safe_paths import (
    atomic_write_bytes,
    atomic_write_text,
    output_stems,
    remove_stale_temps,
    temp_name,
)

MANIFEST = "manifest.csv"
RUNNING_MARKER = ".key2mesh-running.json"
DONE_MARKER = ".key2mesh-done.json"
# what an earlier outcome's options digest reads when its input changed since (redo it)
INPUT_CHANGED = "input changed"
FAILED_MARKER = ".key2mesh-failed.json"
MARKERS = (DONE_MARKER, FAILED_MARKER, RUNNING_MARKER)
FIELDS = ("input", "status", "frames", "people", "seconds", "error")
LIST_SUFFIXES = (".txt", ".csv", ".lst")
_LIST_HEADERS = ("input", "inputs", "path", "file", "video")
WORKER_DIED = "worker died"

Job = Callable[[str, Path, Any], dict]


@dataclass(frozen=True)
class Task:
    """One input of the corpus: ``input`` as given, its folder name ``stem`` and ``key``, what
    identifies it across runs and what the job gets (the resolved path, or the name)."""

    input: str
    stem: str
    key: str


@dataclass
class Outcome:
    """One manifest row: ``status`` is ok, failed, skipped (done by an earlier run) or pending."""

    input: str
    stem: str
    status: str = "pending"
    frames: int = 0
    people: int = 0
    seconds: float = 0.0
    error: str = ""


def input_key(spec: str, names: Iterable[str] = ()) -> str:
    """What identifies an input across runs: a name of ``names`` as is, else its resolved path."""
    return spec if spec in set(names) else str(Path(spec).expanduser().resolve())


def options_digest(options: Any) -> str:
    """A short digest of a job's options (a Namespace or a dict; None for none): a marker
    written with other options does not count as done."""
    data = vars(options) if hasattr(options, "__dict__") else options
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ inputs
def expand_inputs(specs: Sequence[str], names: Iterable[str] = ()) -> list[str]:
    """Input specs → the corpus, in order, without repeats.

    A spec is a name in ``names`` (kept as is: e.g. the demo videos), a glob pattern (each match
    expanded), a folder (its videos, sorted, hidden ones left out; a folder without videos is
    one image-folder input), a list file (``.txt``/``.lst``: one input per line; ``.csv``: the
    first column, an ``input``/``path`` header skipped; ``#`` comments; relative paths from the
    list's folder; a list reached again while it is read, by its own ``*`` say, is left out),
    or any other path (kept: a missing file fails as that input's row, not the whole run). An
    input reached twice (two specs, or a relative and an absolute path) is kept once.
    """
    names = set(names)
    out: list[str] = []
    reading: set[Path] = set()  # the list files being read: one that lists itself is left out

    def add(spec: str, base: Path | None = None) -> None:
        if spec in names:
            out.append(spec)
            return
        if base is not None:  # a list's entry: '~/clips/a.mp4' as a shell would read it
            spec = os.path.expanduser(spec)
            if not Path(spec).is_absolute():
                spec = str(base / spec)
        if any(c in spec for c in "*?[") and not Path(spec).exists():  # "take[1].mp4" is a file
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise Key2MeshError(f"{spec}: the pattern matches no file")
            for m in matches:
                add(m)
            return
        path = Path(spec)
        if path.is_dir():
            videos = sorted(  # hidden files left out, as by a glob ('._a.mp4': macOS metadata)
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
            )
            out.extend(str(v) for v in videos) if videos else out.append(str(path))
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            if path.resolve() in reading:  # a list reached from itself ('*' in it, say)
                return
            reading.add(path.resolve())
            for entry in _read_list(path):
                add(entry, path.parent)
            reading.discard(path.resolve())
        else:
            out.append(str(path))

    for spec in specs:
        add(str(spec))
    unique: dict[str, str] = {}  # an input given twice (a relative and an absolute path) runs once
    for spec in out:
        unique.setdefault(input_key(spec, names), spec)
    return list(unique.values())


def _read_list(path: Path) -> list[str]:
    """The entries of a list file (see :func:`expand_inputs`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Excel's CSV UTF-8) too
        rows = list(csv.reader(io.StringIO(text))) if path.suffix.lower() == ".csv" else None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Key2MeshError(f"{path}: cannot read it as a list of inputs ({exc})") from None
    if rows is not None:  # comments and blank rows out before the header is looked for
        rows = [r for r in rows if r and r[0].strip() and not r[0].strip().startswith("#")]
        if rows and rows[0][0].strip().lower() in _LIST_HEADERS:
            rows = rows[1:]
        entries = [r[0].strip() for r in rows]
    else:
        entries = [line.strip() for line in text.splitlines()]
    return [e for e in entries if e and not e.startswith("#")]


# ------------------------------------------------------------------ markers and manifest
def _read_marker(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _marker_key(data: dict) -> str:
    """The input key a marker names (markers from before keys were stored: their input)."""
    return str(data.get("key") or input_key(str(data.get("input", ""))))


def _owner(folder: Path) -> str | None:
    """The key of the input whose folder this is (from its markers), or None: not ours."""
    for marker in MARKERS:
        data = _read_marker(folder / marker)
        if data is not None:
            return _marker_key(data)
    return None


def in_outputs(key: str, out: Path) -> bool:
    """Whether the input ``key`` is ``out`` itself or lies in one of its inputs' folders (one
    with our markers): what a rerun's ``data/*`` or ``'data/**/*.mp4'`` reaches with ``--out
    data/results``. A folder of ``out`` without markers (not ours) may be an input."""
    try:
        rel = Path(key).relative_to(out.resolve())
    except ValueError:
        return False
    return not rel.parts or _owner(out / rel.parts[0]) is not None


def assign_stems(inputs: Sequence[str], out: Path, names: Iterable[str] = ()) -> list[Task]:
    """The corpus's tasks: an input that has a folder in ``out`` (its markers say so) keeps it;
    a new input takes its stem, made unique against every entry of ``out`` (a folder that is
    not ours, a file, the manifest) and the other inputs."""
    names = set(names)
    keys = [input_key(i, names) for i in inputs]
    owned: dict[str, str] = {}
    taken: list[str] = [MANIFEST]  # written before the first input runs
    if out.is_dir():
        for entry in sorted(out.iterdir()):
            taken.append(entry.name)
            key = _owner(entry) if entry.is_dir() else None
            if key is not None:
                owned.setdefault(key, entry.name)
    new = [k for k, key in enumerate(keys) if key not in owned]
    fresh = iter(output_stems([inputs[k] for k in new], taken=taken))
    stems = [owned[key] if key in owned else next(fresh) for key in keys]
    return [Task(*t) for t in zip(inputs, stems, keys, strict=True)]


def _previous(task: Task, out: Path) -> tuple[Outcome, object] | None:
    """The outcome an earlier run left for ``task`` (its done or failed marker) with the options
    digest it was made with, or None: no marker, or another input's."""
    folder = out / task.stem
    for marker, status in ((DONE_MARKER, "skipped"), (FAILED_MARKER, "failed")):
        data = _read_marker(folder / marker)
        if data is None:
            continue
        if _marker_key(data) != task.key:
            return None
        options = data.get("options")
        stored = data.get("input_stamp")  # absent in markers from before it was recorded
        if stored is not None and stored != input_stamp(task.key):
            options = INPUT_CHANGED  # replaced or edited since: matches no options digest
        outcome = Outcome(
            task.input,
            task.stem,
            status,
            int(data.get("frames", 0)),
            int(data.get("people", 0)),
            float(data.get("seconds", 0.0)),
            str(data.get("error", "")),
        )
        return outcome, options
    return None


def previous_outcome(task: Task, out: Path, digest: str | None = None) -> Outcome | None:
    """The outcome an earlier run left for ``task`` (its done or failed marker), or None: none,
    another input's, or (with ``digest``) made with other options."""
    found = _previous(task, out)
    if found is None or (digest is not None and found[1] != digest):
        return None
    return found[0]


def _write_marker(folder: Path, marker: str, task: Task, stamp: dict, **fields) -> None:
    """A marker for ``task``: the input, its key, the input file's size and modification time
    (:func:`input_stamp`), ``stamp`` (options digest, run id), ``fields``."""
    data = {"input": task.input, "key": task.key, "input_stamp": input_stamp(task.key)}
    data.update({**stamp, **fields})
    atomic_write_text(folder / marker, json.dumps(data))


def input_stamp(key: str) -> dict | None:
    """What says an input changed since its outputs were made: a file's size and modification
    time (ns), a folder's modification time (files added, removed or renamed in it); None for a
    named input (a demo) or a path that cannot be read."""
    try:
        st = os.stat(key)
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(st.st_mode):
        return {"mtime_ns": st.st_mtime_ns}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_manifest(path: Path, outcomes: Sequence[Outcome]) -> Path:
    """``manifest.csv`` (:data:`FIELDS`), written atomically. Rows end in CRLF (RFC 4180; with
    it the csv module quotes a name holding a lone CR too); UTF-8, a file name that is not UTF-8
    as its own bytes (``surrogateescape``, as Python decoded it)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(FIELDS)
    for o in outcomes:
        writer.writerow([o.input, o.status, o.frames, o.people, f"{o.seconds:.2f}", o.error])
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8", "surrogateescape"))


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """The rows of a manifest as dicts of strings."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ one input
def run_one(job: Job, options: Any, task: Task, out: Path, stamp: dict) -> Outcome:
    """Run ``job`` on one input into ``out/<stem>/`` (emptied first: a killed run's leftovers)
    and leave its markers (with ``stamp``: the options' digest and the run's id); an exception
    fails this input only (its last line in ``error``). A folder that another input's markers
    claim, or that has no marker and is not empty, is left alone: the input fails."""
    folder = out / task.stem
    result = Outcome(task.input, task.stem)
    if folder.exists():
        owner = _owner(folder) if folder.is_dir() else None
        empty = folder.is_dir() and not any(folder.iterdir())  # nothing to lose
        if owner != task.key and not empty:
            what = "another input" if owner is not None else "files key2mesh did not write"
            result.status = "failed"
            result.error = (
                f"{folder} exists and is not this input's output folder (it holds {what}); "
                "nothing was changed there"
            )
            return result
        trash = temp_name(folder)  # a kill while it is emptied leaves a temp folder, which the
        os.rename(folder, trash)  # next run removes, not a half-emptied one without markers
        shutil.rmtree(trash)
    # the folder appears with its running marker (built under a temp name, then renamed): a
    # worker killed at any point leaves no folder that looks like someone else's
    building = temp_name(folder)
    building.mkdir(parents=True)
    _write_marker(building, RUNNING_MARKER, task, stamp, pid=os.getpid())
    try:
        os.rename(building, folder)
    except OSError:  # another run on this OUT made the folder meanwhile: not ours to change
        shutil.rmtree(building, ignore_errors=True)
        if not folder.is_dir():
            raise
        result.status = "failed"
        result.error = f"{folder} was made by another run meanwhile; nothing was changed there"
        return result
    start = time.perf_counter()
    try:
        info = job(task.key, folder, options) or {}
        result.status = "ok"
        result.frames, result.people = int(info.get("frames", 0)), int(info.get("people", 0))
    except Exception as exc:  # noqa: BLE001 - one bad input must not stop the corpus
        result.status = "failed"
        result.error = _error_line(exc)
        text = traceback.format_exc()  # a name that is not UTF-8 in it: escaped
        (folder / "error.txt").write_text(text, encoding="utf-8", errors="backslashreplace")
    result.seconds = time.perf_counter() - start
    _finish_marker(folder, task, stamp, result)
    return result


def _finish_marker(folder: Path, task: Task, stamp: dict, result: Outcome) -> None:
    """The done or failed marker replaces the running one (written first, then the other
    removed: a crash in between leaves the folder claimed)."""
    marker = DONE_MARKER if result.status == "ok" else FAILED_MARKER
    fields = {k: v for k, v in asdict(result).items() if k not in ("input", "stem", "status")}
    _write_marker(folder, marker, task, stamp, **fields)
    (folder / RUNNING_MARKER).unlink(missing_ok=True)


def _worker_died(task: Task, out: Path, stamp: dict, error: str = WORKER_DIED) -> Outcome:
    """The failed row (and marker) of an input whose worker process died under it (or, on Ray,
    whose task could not run: ``error``)."""
    result = Outcome(task.input, task.stem, "failed", error=error)
    folder = out / task.stem
    if folder.is_dir() and _owner(folder) == task.key:
        _finish_marker(folder, task, stamp, result)
    return result


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, Key2MeshError) else text


def _init_worker(threads: int, parent: int) -> None:
    """A pool worker: ``threads`` CPU threads; Ctrl-C is the main process's to handle (it
    stops the workers); the worker ends when the main process ``parent`` dies (Linux)."""
    import torch

    from key2mesh.allocator import keep_large_allocations
    from key2mesh.devices import set_cpu_share

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:  # PR_SET_PDEATHSIG: SIGTERM when the parent ends
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before that
        os._exit(1)
    torch.set_num_threads(threads)
    set_cpu_share(threads)  # the detector's and the encoder's threads too
    keep_large_allocations()  # as the key2mesh command does


# ------------------------------------------------------------------ the corpus
def run_batch(
    specs: Sequence[str],
    out: str | os.PathLike,
    job: Job,
    options: Any = None,
    workers: int = 1,
    retry_failed: bool = False,
    ray: str | None = None,
    names: Iterable[str] = (),
    progress: bool = True,
) -> list[Outcome]:
    """Run ``job`` on every input of ``specs`` (:func:`expand_inputs`) into ``out/<stem>/``;
    returns the manifest rows (also in ``out/manifest.csv``).

    ``workers``: processes (1: this process; more: a spawn pool, torch threads split between
    them). ``ray``: ``"auto"`` (the running Ray cluster, else a local Ray instance) or a
    cluster address: one Ray task per input instead of local processes. Inputs finished by an
    earlier run with the same ``options`` are ``skipped``; failed ones are retried only with
    ``retry_failed`` (or when the options changed).
    """
    if workers < 1:
        raise Key2MeshError(f"--workers must be at least 1, got {workers}")
    names = tuple(names)
    out = Path(out)
    inputs = expand_inputs(specs, names)
    ours = {i for i in inputs if in_outputs(input_key(i, names), out)}
    if ours and progress:
        print(
            f"key2mesh batch: {len(ours)} input(s) left out: {out} or outputs in it",
            file=sys.stderr,
        )
    inputs = [i for i in inputs if i not in ours]
    if not inputs:
        raise Key2MeshError("no input to process")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, folders=True)  # what killed runs were building
    tasks = assign_stems(inputs, out, names)
    stamp = {"options": options_digest(options)}
    rows = [Outcome(t.input, t.stem) for t in tasks]
    todo: list[int] = []
    redone = 0
    for k, task in enumerate(tasks):
        found = _previous(task, out)  # one read of its markers
        before = found[0] if found is not None and found[1] == stamp["options"] else None
        if before is not None and (before.status == "skipped" or not retry_failed):
            rows[k] = before
        else:
            todo.append(k)
            redone += before is None and found is not None
    if redone and progress:
        print(
            f"key2mesh batch: {redone} input(s) finished before with other options or "
            "changed since: run again",
            file=sys.stderr,
        )
    manifest = out / MANIFEST
    write_manifest(manifest, rows)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="batch", unit="input", disable=not progress or not todo)

    def finished(k: int, outcome: Outcome) -> None:
        rows[k] = outcome
        write_manifest(manifest, rows)
        bar.update(1)
        failed = sum(rows[j].status == "failed" for j in todo)
        bar.set_postfix_str(f"{failed} failed" if failed else "", refresh=True)

    try:
        with _sigterm_as_exit():
            if ray is not None:
                _run_ray(ray, job, options, tasks, todo, out, stamp, finished)
            else:
                _run_local(workers, job, options, tasks, todo, out, stamp, finished)
    finally:
        bar.close()
    return rows


@contextmanager
def _sigterm_as_exit():
    """SIGTERM raises SystemExit meanwhile (in the main thread), so that the workers are
    stopped and the manifest kept as on Ctrl-C, instead of the process ending on the spot."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _run_local(workers, job, options, tasks, todo, out, stamp, finished) -> None:
    """``todo`` on this machine: first the inputs that may crash their process (an earlier run
    was killed while they ran, or their worker died) each in a worker process of its own, so
    that one that crashes is failed instead of ending every rerun at it; then the others in
    this process (one worker, or one input) or in a pool of ``workers``."""
    suspects = [k for k in todo if _suspect(tasks[k], out)]
    for k in suspects:
        _run_alone(job, options, tasks, k, out, stamp, finished)
    alone = set(suspects)
    rest = [k for k in todo if k not in alone]
    if workers == 1 or len(rest) <= 1:
        for k in rest:
            finished(k, run_one(job, options, tasks[k], out, stamp))
    else:
        _run_pool(workers, job, options, tasks, rest, out, stamp, finished)


def _suspect(task: Task, out: Path) -> bool:
    """Whether ``task`` may crash its process: an earlier run left it running (its running
    marker) or it failed there because its worker died (retried: --retry-failed)."""
    running = _read_marker(out / task.stem / RUNNING_MARKER)
    failed = _read_marker(out / task.stem / FAILED_MARKER)
    if failed is not None and failed.get("error") != WORKER_DIED:
        failed = None
    return any(d is not None and _marker_key(d) == task.key for d in (running, failed))


def _run_pool(workers, job, options, tasks, todo, out, stamp, finished) -> None:
    """``todo`` in pools of ``workers`` processes. When a worker dies, the inputs that were
    running are run again one at a time (only one that kills a worker alone fails) and the
    rest go on in a new pool; Key2MeshError when two pools in a row die before any input
    starts (workers that cannot start: an import error, a memory limit)."""
    pending, stalled = list(todo), 0
    while pending:
        broken = _pool_round(
            min(workers, len(pending)), job, options, tasks, pending, out, stamp, finished
        )
        if broken is None:
            return
        running, left = broken
        stalled = stalled + 1 if not running and len(left) == len(pending) else 0
        if stalled == 2:  # twice no input started: the workers cannot (it looped for ever)
            raise Key2MeshError(
                "the worker processes died before starting any input, twice (their error is "
                "above); with --workers 1 the inputs run in this process"
            )
        pending = left
        for k in running:
            _run_alone(job, options, tasks, k, out, stamp, finished)


def _run_alone(job, options, tasks, k, out, stamp, finished) -> None:
    """Input ``k`` in a worker process of its own: failed ("worker died") if it kills it."""
    if _pool_round(1, job, options, tasks, [k], out, stamp, finished) is not None:
        finished(k, _worker_died(tasks[k], out, stamp))


def _pool_round(workers, job, options, tasks, items, out, stamp, finished):
    """Run ``items`` in one pool; None when every item finished, else (the items that were
    running when a worker died, the items not started) once the pool is gone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from key2mesh.devices import cpu_share

    threads = max(1, cpu_share() // workers)  # the cores this process may use (a cpuset, taskset)
    round_stamp = {**stamp, "run": uuid.uuid4().hex}
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads, os.getpid()),
    )
    lost: list[int] = []
    try:
        futures = {pool.submit(run_one, job, options, tasks[k], out, round_stamp): k for k in items}
        for future in as_completed(futures):
            k = futures[future]
            try:
                finished(k, future.result())
            except BrokenProcessPool:  # a worker died (killed, out of memory, a crash)
                lost.append(k)
    except BaseException:  # Ctrl-C, SIGTERM, an error of ours: the workers stop now
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if lost:  # those that finished before the pool broke are passed to finished here
        lost = sort_lost(
            sorted(lost, key=items.index), tasks, out, stamp, round_stamp["run"], finished
        )
    return lost if any(lost) else None


def sort_lost(lost, tasks, out, stamp, run, finished) -> tuple[list[int], list[int]]:
    """The items ``lost`` with a broken pool of run ``run``, by their markers: (running when a
    worker died, not started); one that finished (its result lost with the pool) is passed to
    ``finished`` from its marker."""
    running, unstarted = [], []
    for k in lost:
        marker = _marker_of_run(out / tasks[k].stem, run)
        if marker is None:
            unstarted.append(k)
        elif marker == RUNNING_MARKER:
            running.append(k)
        else:
            done = previous_outcome(tasks[k], out, stamp["options"])
            if done is None:
                done = _worker_died(tasks[k], out, stamp)
            elif done.status == "skipped":  # done by this run, not by an earlier one
                done.status = "ok"
            finished(k, done)
    return running, unstarted


def _marker_of_run(folder: Path, run: str) -> str | None:
    """The furthest marker that run ``run`` left in ``folder`` (done, failed, running), or None."""
    for name in MARKERS:
        data = _read_marker(folder / name)
        if data is not None and data.get("run") == run:
            return name
    return None


def _stop_workers(pool) -> None:
    """Terminate a pool's worker processes (an interrupted run must not go on in them)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(5)
        if p.is_alive():
            p.kill()


def _run_ray(address, job, options, tasks, todo, out, stamp, finished) -> None:
    try:
        import ray
    except ImportError:
        raise Key2MeshError(
            "--ray needs Ray: pip install 'key2mesh[cluster]' (or pip install 'ray[default]')"
        ) from None
    if not ray.is_initialized():
        try:
            _ray_init(ray, address)
        except (ValueError, ConnectionError) as exc:  # a bad address (RAY_ADDRESS too), no cluster
            hint = ""
            if Path(address).exists():  # `--ray clip.mp4 ...`: argparse took an input
                hint = " (an input? write --ray auto, or --ray after the inputs)"
            raise Key2MeshError(
                f"--ray {address}: no Ray cluster joined: {_error_line(exc)}{hint}"
            ) from None
    # no retries: a task whose worker dies is a failed row, as with local workers
    task = ray.remote(num_cpus=1, max_retries=0)(_run_one_on_ray)
    run_stamp = {**stamp, "run": uuid.uuid4().hex}
    pending = {task.remote(job, options, tasks[k], out.resolve(), run_stamp): k for k in todo}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                k = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # no run_one there (no key2mesh...)
                    outcome = _worker_died(tasks[k], out, stamp, _ray_error(exc))
                except Exception:  # noqa: BLE001 - the task's worker died
                    outcome = _worker_died(tasks[k], out, stamp)
                finished(k, outcome)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _run_one_on_ray(job: Job, options: Any, task: Task, out: Path, stamp: dict) -> Outcome:
    """:func:`run_one` as a Ray task: its threads (torch's, and :func:`~key2mesh.devices.cpu_share`:
    the detector's and the encoder's) are the CPUs Ray gave it, not every core of the node."""
    import ray
    import torch

    from key2mesh.devices import set_cpu_share

    cpus = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    torch.set_num_threads(cpus)
    set_cpu_share(cpus)
    return run_one(job, options, task, out, stamp)


def _ray_init(ray, address: str) -> None:
    """Join the cluster at ``address``; ``"auto"``: the running one (``RAY_ADDRESS`` or the
    local head), else a local Ray instance."""
    if address != "auto":
        ray.init(address=address, log_to_driver=False)
        return
    try:
        ray.init(address="auto", log_to_driver=False)
    except ConnectionError:  # no running cluster: a local Ray instance
        ray.init(log_to_driver=False)


def _ray_error(exc: BaseException) -> str:
    """The error line of a Ray task that raised: its cause (a RaySystemError unwrapped: an
    import or unpickling error on the worker), not Ray's traceback text."""
    cause = getattr(exc, "cause", None) or exc
    cause = getattr(cause, "client_exc", None) or cause
    return _error_line(cause)


def summary(rows: Sequence[Outcome], manifest: Path) -> str:
    """One line: counts per status, the first failure, the manifest's path."""
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "failed", "skipped")}
    line = (
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
        f"(done before) of {len(rows)} input(s); manifest: {manifest}"
    )
    first = next((r for r in rows if r.status == "failed"), None)
    if first is not None:  # a name with a line break (or not UTF-8) quoted: still one line
        name = first.input if first.input.isprintable() else repr(first.input)
        line += f"; first failure: {name}: {first.error}"
    return line

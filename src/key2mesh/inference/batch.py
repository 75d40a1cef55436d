"""One job per input over a corpus (videos, image folders): resumable, in N worker processes or
as Ray tasks, with a manifest.

Each input ``i`` gets its own output folder ``OUT/<stem>/`` (stems from
:func:`key2mesh.safe_paths.output_stems`: unique, file-system safe). A job is a picklable
function ``job(input: str, out_dir: Path, options) -> {"frames": int, "people": int}``; it may
raise, which fails that input only. When a job returns, a completion marker
``OUT/<stem>/.key2mesh-done.json`` is written atomically (a failure leaves
``.key2mesh-failed.json``): a rerun skips the inputs with a done marker and, unless told to
retry them, those with a failed one. A folder without a marker (a killed run) is cleared and
redone. ``OUT/manifest.csv`` has one row per input (:data:`FIELDS`), rewritten atomically after
every finished input (inputs not yet run are ``pending`` there).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from key2mesh.errors import Key2MeshError
from key2mesh.media.video import VIDEO_SUFFIXES
from key2mesh.safe_paths import atomic_write_text, output_stems

MANIFEST = "manifest.csv"
DONE_MARKER = ".key2mesh-done.json"
FAILED_MARKER = ".key2mesh-failed.json"
FIELDS = ("input", "status", "frames", "people", "seconds", "error")
LIST_SUFFIXES = (".txt", ".csv", ".lst")
_LIST_HEADERS = ("input", "inputs", "path", "file", "video")

Job = Callable[[str, Path, Any], dict]


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


# ------------------------------------------------------------------ inputs
def expand_inputs(specs: Sequence[str], names: Iterable[str] = ()) -> list[str]:
    """Input specs → the corpus, in order, without repeats.

    A spec is a name in ``names`` (kept as is: e.g. the demo videos), a glob pattern (each match
    expanded), a folder (its videos, sorted; a folder without videos is one image-folder
    input), a list file (``.txt``/``.lst``: one input per line; ``.csv``: the first column, an
    ``input``/``path`` header skipped; ``#`` comments; relative paths from the list's folder),
    or any other path (kept: a missing file fails as that input's row, not the whole run).
    """
    names = set(names)
    out: list[str] = []

    def add(spec: str, base: Path | None = None) -> None:
        if spec in names:
            out.append(spec)
            return
        if base is not None and not Path(spec).is_absolute():
            spec = str(base / spec)
        if any(c in spec for c in "*?["):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise Key2MeshError(f"{spec}: the pattern matches no file")
            for m in matches:
                add(m)
            return
        path = Path(spec)
        if path.is_dir():
            videos = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
            )
            out.extend(str(v) for v in videos) if videos else out.append(str(path))
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            for entry in _read_list(path):
                add(entry, path.parent)
        else:
            out.append(str(path))

    for spec in specs:
        add(str(spec))
    return list(dict.fromkeys(out))


def _read_list(path: Path) -> list[str]:
    """The entries of a list file (see :func:`expand_inputs`)."""
    try:
        text = path.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text))) if path.suffix.lower() == ".csv" else None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Key2MeshError(f"{path}: cannot read it as a list of inputs ({exc})") from None
    if rows is not None:
        rows = [r for r in rows if r and r[0].strip()]
        if rows and rows[0][0].strip().lower() in _LIST_HEADERS:
            rows = rows[1:]
        entries = [r[0].strip() for r in rows]
    else:
        entries = [line.strip() for line in text.splitlines()]
    return [e for e in entries if e and not e.startswith("#")]


# ------------------------------------------------------------------ markers and manifest
def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def previous_outcome(item: Outcome, out: Path) -> Outcome | None:
    """The outcome an earlier run left for ``item`` (its marker), or None."""
    folder = out / item.stem
    for marker, status in ((DONE_MARKER, "skipped"), (FAILED_MARKER, "failed")):
        data = _read_marker(folder / marker)
        if data is not None:
            return Outcome(
                item.input,
                item.stem,
                status,
                int(data.get("frames", 0)),
                int(data.get("people", 0)),
                float(data.get("seconds", 0.0)),
                str(data.get("error", "")),
            )
    return None


def write_manifest(path: Path, outcomes: Sequence[Outcome]) -> Path:
    """``manifest.csv`` (:data:`FIELDS`), written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    for o in outcomes:
        writer.writerow([o.input, o.status, o.frames, o.people, f"{o.seconds:.2f}", o.error])
    return atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """The rows of a manifest as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ one input
def run_one(job: Job, options: Any, item: Outcome, out: Path) -> Outcome:
    """Run ``job`` on one input into ``out/<stem>/`` (cleared first: a killed run's leftovers)
    and leave its marker; an exception fails this input only (its last line in ``error``)."""
    folder = out / item.stem
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    result = Outcome(item.input, item.stem)
    try:
        info = job(item.input, folder, options) or {}
        result.status = "ok"
        result.frames, result.people = int(info.get("frames", 0)), int(info.get("people", 0))
    except Exception as exc:  # noqa: BLE001 - one bad input must not stop the corpus
        result.status = "failed"
        result.error = _error_line(exc)
        (folder / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    result.seconds = time.perf_counter() - start
    marker = DONE_MARKER if result.status == "ok" else FAILED_MARKER
    fields = {k: v for k, v in asdict(result).items() if k not in ("input", "stem", "status")}
    atomic_write_text(folder / marker, json.dumps({"input": item.input, **fields}))
    return result


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, Key2MeshError) else text


def _init_worker(threads: int) -> None:
    import torch

    from key2mesh.devices import set_cpu_share

    torch.set_num_threads(threads)
    set_cpu_share(threads)  # the detector's and the encoder's threads too


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
    earlier run are ``skipped``; failed ones are retried only with ``retry_failed``.
    """
    if workers < 1:
        raise Key2MeshError(f"--workers must be at least 1, got {workers}")
    inputs = expand_inputs(specs, names)
    if not inputs:
        raise Key2MeshError("no input to process")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [Outcome(i, s) for i, s in zip(inputs, output_stems(inputs), strict=True)]
    todo: list[int] = []
    for k, item in enumerate(rows):
        before = previous_outcome(item, out)
        if before is not None and (before.status == "skipped" or not retry_failed):
            rows[k] = before
        else:
            todo.append(k)
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
        if ray is not None:
            _run_ray(ray, job, options, rows, todo, out, finished)
        elif workers == 1 or len(todo) <= 1:
            for k in todo:
                finished(k, run_one(job, options, rows[k], out))
        else:
            _run_pool(workers, job, options, rows, todo, out, finished)
    finally:
        bar.close()
    return rows


def _run_pool(workers, job, options, rows, todo, out, finished) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        min(workers, len(todo)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(run_one, job, options, rows[k], out): k for k in todo}
        for future in as_completed(futures):
            k = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool:  # a worker died (e.g. killed, out of memory)
                outcome = Outcome(rows[k].input, rows[k].stem, "failed", error="worker died")
            finished(k, outcome)


def _run_ray(address, job, options, rows, todo, out, finished) -> None:
    try:
        import ray
    except ImportError:
        raise Key2MeshError(
            "--ray needs Ray: pip install 'key2mesh[cluster]' (or pip install 'ray[default]')"
        ) from None
    if not ray.is_initialized():
        if address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False)
            except ConnectionError:  # no running cluster: a local Ray instance
                ray.init(log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    task = ray.remote(num_cpus=1)(run_one)
    pending = {task.remote(job, options, rows[k], out.resolve()): k for k in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            k = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the task's worker died
                outcome = Outcome(rows[k].input, rows[k].stem, "failed", error=_error_line(exc))
            finished(k, outcome)


def summary(rows: Sequence[Outcome], manifest: Path) -> str:
    """One line: counts per status, the first failure, the manifest's path."""
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "failed", "skipped")}
    line = (
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
        f"(done before) of {len(rows)} input(s); manifest: {manifest}"
    )
    first = next((r for r in rows if r.status == "failed"), None)
    if first is not None:
        line += f"; first failure: {first.input}: {first.error}"
    return line

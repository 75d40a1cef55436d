"""``key2mesh batch``: inputs, manifest, failures, resume after a finished or a killed run, workers
and Ray give the same results; the per-input job is a cheap fake (no MediaPipe)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.batch_jobs import record_job

from key2mesh.errors import Key2MeshError
from key2mesh.inference.batch import (
    DONE_MARKER,
    FAILED_MARKER,
    MANIFEST,
    expand_inputs,
    read_manifest,
    run_batch,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def corpus(tmp_path):
    """Three fake videos (a.mp4, b_bad.mp4, c.mp4) and the job's call log."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b_bad", "c"):
        (videos / f"{name}.mp4").write_bytes(b"not a real video")
    return videos, tmp_path / "calls.log"


def calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def on_local_ray(num_cpus: int, run):
    """``run()`` with a local Ray instance of ``num_cpus`` CPUs up (skipped without Ray)."""
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return run()
    finally:
        ray.shutdown()


def _batch_in_child(
    videos: Path, out: Path, options: dict, workers: int = 1, retry_failed: bool = False
) -> list[str]:
    """The command of a separate Python process running ``run_batch`` with ``record_job`` (a
    run the test can kill)."""
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from key2mesh.inference.batch import run_batch;"
        "from tests.helpers.batch_jobs import record_job;"
        "run_batch([sys.argv[2]], sys.argv[3], record_job, json.loads(sys.argv[4]),"
        " workers=int(sys.argv[5]), retry_failed=sys.argv[6] == '1', progress=False)"
    )
    args = (ROOT, videos, out, json.dumps(options), workers, int(retry_failed))
    return [sys.executable, "-c", script, *map(str, args)]


def test_expand_inputs_folders_globs_lists_and_names(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("b.mp4", "a.MOV", "notes.txt"):
        (tmp_path / "clips" / name).write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0001.png").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# corpus\nclips/b.mp4\n\nsports2d\n")
    (tmp_path / "list.csv").write_text("input,comment\nclips/a.MOV,x\n/abs/missing.mp4,y\n")
    got = expand_inputs(
        [
            str(tmp_path / "clips"),  # its videos, sorted; the .txt inside is not a video
            str(tmp_path / "frames"),  # no video: one image-folder input
            str(tmp_path / "clips" / "*.mp4"),  # repeats b.mp4: kept once
            str(tmp_path / "list.txt"),
            str(tmp_path / "list.csv"),
            "pose2sim-cam01",
        ],
        names=("sports2d", "pose2sim-cam01"),
    )
    clips = tmp_path / "clips"
    assert got == [
        str(clips / "a.MOV"),
        str(clips / "b.mp4"),
        str(tmp_path / "frames"),
        "sports2d",
        "/abs/missing.mp4",
        "pose2sim-cam01",
    ]
    with pytest.raises(Exception, match="matches no file"):
        expand_inputs([str(tmp_path / "nothing*.mp4")])


def test_an_unreadable_list_file_is_one_line_naming_it(tmp_path):
    for name in ("bad.txt", "bad.csv"):
        bad = tmp_path / name
        bad.write_bytes(b"clip.mp4\n\xff\xfe\x00")
        with pytest.raises(Key2MeshError, match=f"{name}: cannot read it as a list") as err:
            expand_inputs([str(bad)])
        assert "\n" not in str(err.value)


def test_a_failing_input_does_not_stop_the_others(corpus):
    videos, log = corpus
    out = videos.parent / "out"
    rows = run_batch([str(videos)], out, record_job, {"log": str(log), "fail": "bad"})
    assert [(r.stem, r.status) for r in rows] == [("a", "ok"), ("b_bad", "failed"), ("c", "ok")]
    manifest = read_manifest(out / MANIFEST)
    assert [r["status"] for r in manifest] == ["ok", "failed", "ok"]
    assert manifest[0]["input"] == str(videos / "a.mp4")
    assert manifest[0]["frames"] == "1" and manifest[2]["people"] == "1"
    assert manifest[1]["error"] == "ValueError: cannot read b_bad.mp4 second line"  # one line
    assert (out / "a" / DONE_MARKER).exists() and (out / "b_bad" / FAILED_MARKER).exists()
    assert "Traceback" in (out / "b_bad" / "error.txt").read_text()
    assert calls(log) == ["a.mp4", "b_bad.mp4", "c.mp4"]


def test_resume_skips_complete_outputs_and_retries_failed_on_request(corpus):
    videos, log = corpus
    out = videos.parent / "out"
    broken = videos.parent / "b_bad is broken"
    broken.touch()
    options = {"log": str(log), "fail": "bad", "only_while": str(broken)}
    run_batch([str(videos)], out, record_job, options)
    again = run_batch([str(videos)], out, record_job, options)
    assert [r.status for r in again] == ["skipped", "failed", "skipped"]
    assert [r.frames for r in again] == [1, 0, 1]  # the earlier run's rows, from the markers
    assert again[1].error.startswith("ValueError: cannot read b_bad.mp4")
    assert calls(log) == ["a.mp4", "b_bad.mp4", "c.mp4"]  # nothing run twice
    broken.unlink()  # the input is repaired
    retried = run_batch([str(videos)], out, record_job, options, retry_failed=True)
    assert [r.status for r in retried] == ["skipped", "ok", "skipped"]
    assert calls(log)[3:] == ["b_bad.mp4"]
    assert not (out / "b_bad" / FAILED_MARKER).exists()


def test_other_options_redo_what_was_done_with_the_earlier_ones(corpus, capsys):
    """A marker records a digest of the options: a rerun with other options (say another
    --frames or an extra --export) redoes the inputs instead of skipping them."""
    videos, log = corpus
    out = videos.parent / "out"
    run_batch([str(videos)], out, record_job, {"log": str(log), "frames": "0:8"})
    rows = run_batch([str(videos)], out, record_job, {"log": str(log), "frames": "0:40"})
    assert [r.status for r in rows] == ["ok", "ok", "ok"]
    assert "3 input(s) finished before with other options or changed since: run again" in (
        capsys.readouterr().err
    )
    assert calls(log) == 2 * ["a.mp4", "b_bad.mp4", "c.mp4"]
    rows = run_batch([str(videos)], out, record_job, {"log": str(log), "frames": "0:40"})
    assert [r.status for r in rows] == ["skipped"] * 3


def test_an_input_replaced_since_is_done_again(corpus, capsys):
    """A marker records the input's size and modification time: a video replaced or edited at
    the same path is redone by the next run (it was skipped, its outputs those of the old
    file); the others are still skipped."""
    import os

    videos, log = corpus
    out = videos.parent / "out"
    options = {"log": str(log)}
    run_batch([str(videos)], out, record_job, options, progress=False)
    (videos / "c.mp4").write_bytes(b"another take, longer than before")
    a = videos / "a.mp4"
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))  # edited in place
    capsys.readouterr()
    rows = run_batch([str(videos)], out, record_job, options)
    assert [r.status for r in rows] == ["ok", "skipped", "ok"]
    assert calls(log)[3:] == ["a.mp4", "c.mp4"]
    assert "2 input(s) finished before with other options or changed since" in (
        capsys.readouterr().err
    )
    again = run_batch([str(videos)], out, record_job, options, progress=False)
    assert [r.status for r in again] == ["skipped"] * 3


def test_folders_keep_their_input_and_folders_not_ours_are_never_touched(tmp_path):
    """Folder names do not depend on the corpus's order: an input keeps the folder its markers
    name; a new input avoids every existing entry, so a user's folder in OUT (even an input
    of this very run) is never emptied."""
    log = tmp_path / "calls.log"
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "clip.mp4").write_bytes(d.encode())
    out = tmp_path / "out"
    first = run_batch([str(tmp_path / "b" / "clip.mp4")], out, record_job, {"log": str(log)})
    assert [r.stem for r in first] == ["clip"]
    rows = run_batch(
        [str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4")],
        out,
        record_job,
        {"log": str(log)},
    )
    assert [(r.stem, r.status) for r in rows] == [("clip_1", "ok"), ("clip", "skipped")]
    assert (out / "clip" / "result.txt").read_text().endswith(str(Path("b") / "clip.mp4"))
    assert (out / "clip_1" / "result.txt").read_text().endswith(str(Path("a") / "clip.mp4"))
    # an image-folder input inside OUT, and a user's folder named like an input's stem
    shots = out / "shots"
    shots.mkdir()
    (shots / "0001.png").write_bytes(b"image")
    (out / "take").mkdir()
    (out / "take" / "notes.txt").write_text("mine")
    (tmp_path / "take.mp4").write_bytes(b"x")
    rows = run_batch([str(shots), str(tmp_path / "take.mp4")], out, record_job, {"log": str(log)})
    assert [(r.stem, r.status) for r in rows] == [("shots_1", "ok"), ("take_1", "ok")]
    assert (shots / "0001.png").read_bytes() == b"image"
    assert (out / "take" / "notes.txt").read_text() == "mine"


def test_run_one_leaves_a_folder_that_is_not_its_own(tmp_path):
    from key2mesh.inference.batch import Task, run_one

    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    task = Task(str(tmp_path / "clip.mp4"), "clip", str(tmp_path / "clip.mp4"))
    result = run_one(record_job, {"log": str(tmp_path / "log")}, task, tmp_path, {})
    assert result.status == "failed" and "nothing was changed there" in result.error
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_killed_run_resumes_without_redoing_finished_inputs(corpus):
    videos, log = corpus
    out = videos.parent / "out"
    killing = videos.parent / "killing"
    killing.touch()
    options = {"log": str(log), "die": "c.mp4", "only_while": str(killing)}
    done = subprocess.run(_batch_in_child(videos, out, options), capture_output=True, text=True)
    assert done.returncode == -9  # killed while working on c.mp4
    assert [r["status"] for r in read_manifest(out / MANIFEST)] == ["ok", "ok", "pending"]
    assert (out / "c" / "result.txt").exists() and not (out / "c" / DONE_MARKER).exists()
    (out / "c" / "stale.tmp").write_text("left by the killed run")
    killing.unlink()
    rows = run_batch([str(videos)], out, record_job, options, progress=False)
    assert [r.status for r in rows] == ["skipped", "skipped", "ok"]
    assert calls(log) == ["a.mp4", "b_bad.mp4", "c.mp4", "c.mp4"]  # only c ran again
    assert not (out / "c" / "stale.tmp").exists()  # its folder was cleared first


def test_two_workers_give_the_same_manifest(corpus):
    videos, log = corpus
    options = {"log": str(log), "fail": "bad"}
    one = run_batch([str(videos)], videos.parent / "one", record_job, options, progress=False)
    two = run_batch(
        [str(videos)], videos.parent / "two", record_job, options, workers=2, progress=False
    )
    strip = lambda rows: [(r.input, r.status, r.frames, r.people, r.error) for r in rows]  # noqa: E731
    assert strip(two) == strip(one)
    assert sorted(calls(log)) == sorted(2 * ["a.mp4", "b_bad.mp4", "c.mp4"])


def test_cli_exit_status_and_one_line_summary(corpus, monkeypatch, capsys):
    """The command: status 1 and one summary line on stderr when an input failed; 0 when the
    rerun only skips."""
    from key2mesh import cli
    from key2mesh.commands import batch

    videos, log = corpus

    def job(input, out_dir, options):
        return record_job(input, out_dir, {"log": str(log), "fail": "bad"})

    monkeypatch.setattr(batch, "demo_job", job)
    out = videos.parent / "out"
    assert (
        cli.main(["batch", str(videos / "a.mp4"), str(videos / "b_bad.mp4"), "--out", str(out)])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("key2mesh batch: 1 ok, 1 failed, 0 skipped (done before) of 2 input(s)")
    assert "first failure: " in err and "b_bad.mp4" in err
    assert cli.main(["batch", str(videos / "a.mp4"), "--out", str(out)]) == 0
    assert "0 ok, 0 failed, 1 skipped" in capsys.readouterr().out


def test_cli_checks_the_demo_options_before_any_input(corpus, monkeypatch, capsys):
    """A bad demo option is one error before any work, not a failed row per input."""
    from key2mesh import cli
    from key2mesh.commands import batch

    videos, log = corpus
    ran = []
    monkeypatch.setattr(batch, "demo_job", lambda *a: ran.append(a) or {})
    out = videos.parent / "out"
    for bad, message in (("--max-height=5", "--max-height"), ("--export=xyz", "xyz")):
        assert cli.main(["batch", str(videos), "--out", str(out), bad]) != 0
        assert message in capsys.readouterr().err
    assert ran == [] and not out.exists()


def test_batch_takes_every_demo_option():
    """Every ``key2mesh demo`` option except its input, --out and --view parses in batch."""
    import argparse

    from key2mesh.commands import batch, demo

    d, b = argparse.ArgumentParser(), argparse.ArgumentParser()
    demo.add_arguments(d)
    batch.add_arguments(b)
    demo_opts = {o for a in d._actions for o in a.option_strings} - {
        "-h",
        "--help",
        "--view",
        "--out",
    }
    batch_opts = {o for a in b._actions for o in a.option_strings}
    assert demo_opts <= batch_opts
    args = b.parse_args(["x.mp4", "--out", "D", "--frames", "0:40:4", "--max-people", "2"])
    options = batch.demo_options(args)
    assert (options.frames, options.max_people, options.view) == ("0:40:4", 2, None)
    assert not hasattr(options, "inputs") and not hasattr(options, "out")


@pytest.mark.slow
def test_ray_gives_the_same_manifest(corpus):
    """One Ray task per input on a local Ray instance: the same rows as the local run."""
    pytest.importorskip("ray")
    videos, log = corpus
    options = {"log": str(log), "fail": "bad"}
    local = run_batch([str(videos)], videos.parent / "local", record_job, options, progress=False)
    remote = on_local_ray(
        2,
        lambda: run_batch(
            [str(videos)], videos.parent / "ray", record_job, options, ray="auto", progress=False
        ),
    )
    strip = lambda rows: [(r.input, r.status, r.frames, r.people, r.error) for r in rows]  # noqa: E731
    assert strip(remote) == strip(local)
    assert [r["status"] for r in read_manifest(videos.parent / "ray" / MANIFEST)] == [
        "ok",
        "failed",
        "ok",
    ]


@pytest.mark.slow
def test_ray_fails_a_task_whose_worker_dies_once_like_local_workers(corpus):
    """No Ray retries: an input that kills its worker runs once and is a failed row with the
    local pool's text and marker; the other inputs finish."""
    pytest.importorskip("ray")
    videos, log = corpus
    (videos / "b_bad.mp4").rename(videos / "b_die.mp4")
    out = videos.parent / "ray"
    options = {"log": str(log), "die": "b_die"}
    rows = on_local_ray(
        2, lambda: run_batch([str(videos)], out, record_job, options, ray="auto", progress=False)
    )
    assert [(r.stem, r.status, r.error) for r in rows] == [
        ("a", "ok", ""),
        ("b_die", "failed", "worker died"),
        ("c", "ok", ""),
    ]
    assert calls(log).count("b_die.mp4") == 1
    assert (out / "b_die" / FAILED_MARKER).exists()


def test_job_output_goes_to_its_log_file_descriptors_too(tmp_path, capfd):
    """The demo job's console output, C-level writes included (MediaPipe logs to fd 2), lands in
    the input's log.txt, and the streams are restored afterwards."""
    import os

    from key2mesh.commands.batch import _output_to

    log = tmp_path / "log.txt"
    with _output_to(log):
        print("from python")
        print("to stderr", file=sys.stderr)
        os.write(2, b"from C\n")
    os.write(2, b"after\n")
    print("after too")
    assert log.read_text().split("\n")[:3] == ["from python", "to stderr", "from C"]
    out, err = capfd.readouterr()
    assert "after too" in out and "after" in err and "from C" not in err


def test_list_files_with_a_bom_comments_brackets_and_repeats(tmp_path, monkeypatch):
    """Excel's CSV UTF-8 (a byte-order mark), a comment before the header, a file whose name
    holds glob characters, and one input given by a relative and an absolute path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    for name in ("take[1].mp4", "take1.mp4", "a.mp4"):
        (tmp_path / "clips" / name).write_bytes(b"x")
    (tmp_path / "list.csv").write_bytes(
        "\ufeff# exported from the lab's sheet\ninput,notes\nclips/take[1].mp4,x\n".encode()
    )
    got = expand_inputs(["list.csv", "clips/a.mp4", str(tmp_path / "clips" / "a.mp4")])
    assert got == ["clips/take[1].mp4", "clips/a.mp4"]  # not take1.mp4; a.mp4 once


def test_list_entries_with_a_tilde_are_in_the_home_folder(tmp_path, monkeypatch):
    """A list's '~/clips/a.mp4' is the home folder's file, as a shell reads it (it was taken
    as a path relative to the list: 'lists/~/clips/a.mp4', a failed row)."""
    home = tmp_path / "home"
    (home / "clips").mkdir(parents=True)
    (home / "clips" / "a.mp4").write_bytes(b"x")
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "corpus.txt").write_text("~/clips/a.mp4\n~/clips/*.mp4\n")
    assert expand_inputs([str(tmp_path / "lists" / "corpus.txt")]) == [
        str(home / "clips" / "a.mp4")
    ]


def test_a_worker_that_dies_fails_its_own_input_only(corpus):
    """A worker killed under an input (a crash, the out-of-memory killer) breaks the pool: the
    inputs that were running are run again one at a time, so only the one that kills a worker
    alone is failed (with a marker: a rerun keeps it); the others finish."""
    videos, log = corpus
    for name in ("d", "e", "f"):
        (videos / f"{name}.mp4").write_bytes(b"x")
    (videos / "b_bad.mp4").rename(videos / "b_die.mp4")
    out = videos.parent / "out"
    options = {"log": str(log), "die": "b_die"}
    rows = run_batch([str(videos)], out, record_job, options, workers=2, progress=False)
    assert [(r.stem, r.status, r.error) for r in rows] == [
        ("a", "ok", ""),
        ("b_die", "failed", "worker died"),
        ("c", "ok", ""),
        ("d", "ok", ""),
        ("e", "ok", ""),
        ("f", "ok", ""),
    ]
    assert calls(log).count("b_die.mp4") == 2  # in the pool, then alone
    assert (out / "b_die" / FAILED_MARKER).exists()
    again = run_batch([str(videos)], out, record_job, options, workers=2, progress=False)
    assert [r.status for r in again] == ["skipped", "failed"] + ["skipped"] * 4


def test_inputs_lost_with_a_broken_pool_are_sorted_by_their_markers(tmp_path):
    """After a worker died: an input whose run left no marker was not started, one with a
    running marker was running (a suspect), one with a done or failed marker finished and its
    row comes from the marker (ok, not 'skipped': this run did it)."""
    from key2mesh.inference.batch import (
        RUNNING_MARKER,
        Task,
        _finish_marker,
        _write_marker,
        options_digest,
        sort_lost,
    )
    from key2mesh.inference.batch import Outcome as Row

    stamp = {"options": options_digest({"x": 1})}
    run = {**stamp, "run": "r1"}
    tasks = [Task(f"/v/{n}.mp4", n, f"/v/{n}.mp4") for n in "abcde"]
    for t in tasks:
        (tmp_path / t.stem).mkdir()
    _write_marker(tmp_path / "b", RUNNING_MARKER, tasks[1], run)
    _finish_marker(tmp_path / "c", tasks[2], run, Row(tasks[2].input, "c", "ok", frames=7))
    _finish_marker(tmp_path / "d", tasks[3], run, Row(tasks[3].input, "d", "failed", error="e"))
    _write_marker(tmp_path / "e", RUNNING_MARKER, tasks[4], {**stamp, "run": "r0"})  # older run
    rows = {}
    running, unstarted = sort_lost(
        range(5), tasks, tmp_path, stamp, "r1", lambda k, o: rows.update({k: o})
    )
    assert (running, unstarted) == ([1], [0, 4])
    assert (rows[2].status, rows[2].frames) == ("ok", 7)
    assert (rows[3].status, rows[3].error) == ("failed", "e")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_a_stopped_run_stops_its_workers_and_keeps_the_manifest(tmp_path, sig):
    """SIGTERM (or Ctrl-C) on a run with workers: the workers stop at once instead of working
    through the queue, the manifest keeps what finished, and a rerun does the rest. SIGKILL
    (no clean-up possible): the workers end with the main process all the same."""
    import signal
    import time

    sig = getattr(signal, sig)

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(8):
        (videos / f"v{i}.mp4").write_bytes(b"x")
    log, out = tmp_path / "calls.log", tmp_path / "out"
    options = {"log": str(log), "sleep": 1.0}
    proc = subprocess.Popen(
        _batch_in_child(videos, out, options, workers=2), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len(calls(log)) < 2 and time.monotonic() < deadline:  # two inputs have started
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig)
    started = len(calls(log))
    time.sleep(2.5)  # a worker left running would start another input meanwhile
    assert len(calls(log)) == started <= 4
    statuses = [r["status"] for r in read_manifest(out / MANIFEST)]
    assert statuses.count("pending") >= 4
    rows = run_batch([str(videos)], out, record_job, {**options, "sleep": 0}, progress=False)
    assert all(r.status == "ok" for r in rows)  # other options: all run


def test_odd_file_names_round_trip_through_the_manifest(tmp_path):
    """Commas, quotes, a newline, a lone carriage return, non-ASCII and a name that is not UTF-8
    (Linux allows any bytes): each input is one manifest row that reads back as its name, and
    a failure naming such a file is that input's row, not the end of the run."""
    import os

    names = ["a,b.mp4", 'q"uote.mp4', "new\nline.mp4", "cr\rx.mp4", "ünï çødé.mp4"]
    names.append(os.fsdecode(b"bad\xff.mp4"))
    for name in names:
        (tmp_path / name).write_bytes(b"x")

    def job(input, out_dir, options):
        if "bad" in input:
            raise ValueError(f"cannot read {input}")
        return {"frames": 1, "people": 1}

    inputs = [str(tmp_path / n) for n in names]
    out = tmp_path / "out"
    rows = run_batch(inputs, out, job, None, progress=False)
    assert [r.status for r in rows] == ["ok"] * 5 + ["failed"]
    manifest = read_manifest(out / MANIFEST)
    assert [r["input"] for r in manifest] == inputs
    assert [r["status"] for r in manifest] == ["ok"] * 5 + ["failed"]
    assert "bad\\udcff.mp4" in (out / "bad" / "error.txt").read_text(encoding="utf-8")
    again = run_batch(inputs, out, job, None, progress=False)
    assert [r.status for r in again] == ["skipped"] * 5 + ["failed"]


def test_a_list_file_that_reaches_itself_is_read_once(tmp_path):
    """A list with a '*' line matches itself, and two lists may name each other: each list is
    read once (it was a RecursionError)."""
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.mp4").write_bytes(b"x")
    (tmp_path / "corpus.txt").write_text("*.mp4\n*\nsub/more.lst\n")
    (tmp_path / "sub" / "more.lst").write_text("b.mp4\n../corpus.txt\n")
    got = expand_inputs([str(tmp_path / "corpus.txt")])
    assert got == [str(tmp_path / "a.mp4"), str(tmp_path / "sub" / "b.mp4")]


def test_an_input_named_like_the_manifest_gets_another_folder(tmp_path):
    """manifest.csv.mp4's stem is the manifest's name: its folder is manifest.csv_1 (the first
    run failed it: the manifest, written before any input, took the name)."""
    (tmp_path / "manifest.csv.mp4").write_bytes(b"x")
    out = tmp_path / "out"
    rows = run_batch(
        [str(tmp_path / "manifest.csv.mp4")], out, record_job, {"log": str(tmp_path / "log")}
    )
    assert [(r.stem, r.status) for r in rows] == [("manifest.csv_1", "ok")]
    assert (out / "manifest.csv_1" / DONE_MARKER).exists() and (out / MANIFEST).is_file()


def test_a_rerun_does_not_take_its_own_outputs_as_inputs(tmp_path, capsys):
    """``data/*`` (or ``'data/**/*.mp4'``) with ``--out data/results``: on the rerun the pattern
    also reaches the output folder and the videos written in it; they are left out, so the
    rerun only skips (it ran the results folder as an image-folder input, and the rendered
    videos as new inputs)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b"):
        (data / f"{name}.mp4").write_bytes(b"x")
    out = data / "results"
    log = tmp_path / "calls.log"

    def job(input, out_dir, options):
        record_job(input, out_dir, {"log": str(log)})
        (out_dir / f"{Path(input).stem}_key2mesh.mp4").write_bytes(b"rendered")
        return {"frames": 1, "people": 1}

    first = run_batch([str(data / "*")], out, job, None, progress=False)
    assert [r.status for r in first] == ["ok", "ok"]
    for pattern in ("*", "**/*.mp4"):
        rows = run_batch([str(data / pattern)], out, job, None)
        assert [(Path(r.input).name, r.status) for r in rows] == [
            ("a.mp4", "skipped"),
            ("b.mp4", "skipped"),
        ]
    assert "input(s) left out" in capsys.readouterr().err
    assert calls(log) == ["a.mp4", "b.mp4"]
    (out / "shots").mkdir()  # a folder of OUT without markers is not ours: still an input
    (out / "shots" / "0001.png").write_bytes(b"image")
    rows = run_batch([str(out / "shots")], out, job, None, progress=False)
    assert [(r.stem, r.status) for r in rows] == [("shots_1", "ok")]


def test_workers_split_the_cores_this_process_may_use(corpus, monkeypatch):
    """On a 16-core node where the job may run on 2 cores (Slurm's cpuset, taskset), 2 workers
    get 1 torch thread each, not 16 // 2 = 8 each (os.cpu_count counts the whole node)."""
    import os

    from tests.helpers.batch_jobs import threads_job

    from key2mesh import devices

    videos, _ = corpus
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(devices, "_CPU_SHARE", None)
    rows = run_batch(
        [str(videos)], videos.parent / "out", threads_job, None, workers=2, progress=False
    )
    assert [(r.frames, r.people) for r in rows] == [(1, 1)] * 3  # torch threads, cpu_share()


def test_an_input_whose_worker_dies_after_it_finished_is_ok_once(tmp_path, monkeypatch):
    """A pool whose only worker dies after its input finished (the done marker is written; the
    result was being sent back): the round reports nothing lost and the row is 'ok', once.
    Before, the round returned ([], []), and _run_pool, rerunning a suspect alone, then also
    failed it ('worker died', a failed marker beside the done one: the next run said
    'skipped')."""
    import os

    from tests.helpers.batch_jobs import DiesWhenSent

    from key2mesh.inference.batch import Task, _pool_round, options_digest

    monkeypatch.setenv("BATCH_MAIN_PID", str(os.getpid()))
    path = str(tmp_path / "y.mp4")
    tasks = [Task(DiesWhenSent(path), "y", path)]
    stamp = {"options": options_digest({"log": str(tmp_path / "log")})}
    rows = []
    lost = _pool_round(
        1,
        record_job,
        {"log": str(tmp_path / "log")},
        tasks,
        [0],
        tmp_path,
        stamp,
        lambda k, o: rows.append((k, o.status)),
    )
    assert lost is None and rows == [(0, "ok")]
    assert (tmp_path / "y" / DONE_MARKER).exists() and not (tmp_path / "y" / FAILED_MARKER).exists()


def test_the_summary_stays_one_line_for_a_name_with_a_line_break(tmp_path):
    from key2mesh.inference.batch import summary

    name = str(tmp_path / "take\n2.mp4")
    Path(name).write_bytes(b"x")
    rows = run_batch(
        [name], tmp_path / "out", record_job, {"log": str(tmp_path / "log"), "fail": "take"}
    )
    line = summary(rows, tmp_path / "out" / MANIFEST)
    assert len(line.splitlines()) == 1 and repr(name) in line
    assert line.endswith("ValueError: cannot read take\n2.mp4 second line".replace("\n", " "))


def test_a_run_killed_while_emptying_a_folder_leaves_no_orphan(tmp_path):
    """A rerun with other options empties the input's folder first; killed meanwhile (a big
    --save-meshes folder takes seconds), after the markers went but not the rest, the next run
    finds no half-emptied folder without markers (it was left forever and the input moved to
    clip_1): the folder is emptied under a temp name, which the next run removes."""
    (tmp_path / "clip.mp4").write_bytes(b"x")
    out, log = tmp_path / "out", tmp_path / "calls.log"
    run_batch([str(tmp_path / "clip.mp4")], out, record_job, {"log": str(log)}, progress=False)
    (out / "clip" / "meshes").mkdir()
    (out / "clip" / "meshes" / "f0.obj").write_text("v 0 0 0\n")
    script = (  # shutil.rmtree removes the markers, then the process is killed
        "import os, shutil, sys, json; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from key2mesh.inference import batch; from tests.helpers.batch_jobs import record_job;"
        "shutil.rmtree = lambda p: [(Path(p) / m).unlink() for m in (batch.DONE_MARKER,)]"
        " and os.kill(os.getpid(), 9);"
        "batch.run_batch([sys.argv[2]], sys.argv[3], record_job, json.loads(sys.argv[4]),"
        " progress=False)"
    )
    options = json.dumps({"log": str(log), "other": 1})
    args = [sys.executable, "-c", script, str(ROOT), str(tmp_path / "clip.mp4"), str(out), options]
    assert subprocess.run(args).returncode == -9
    rows = run_batch([str(tmp_path / "clip.mp4")], out, record_job, json.loads(options))
    assert [(r.stem, r.status) for r in rows] == [("clip", "ok")]
    assert sorted(p.name for p in out.iterdir()) == ["clip", MANIFEST]


def test_checkpoint_files_reach_the_workers_as_absolute_paths(tmp_path, monkeypatch):
    """Ray workers run in another folder (another node, or a head started elsewhere): a
    relative --checkpoint (an ensemble's members too) is sent as an absolute path; a shipped
    model's name as it is."""
    import argparse

    from key2mesh.commands import batch

    monkeypatch.chdir(tmp_path)
    for name in ("my.pt", "b.pt"):
        (tmp_path / name).write_bytes(b"weights")
    parser = argparse.ArgumentParser()
    batch.add_arguments(parser)

    def sent(checkpoint):
        args = parser.parse_args(["x.mp4", "--out", "D", "--checkpoint", checkpoint])
        return batch.demo_options(args).checkpoint

    assert sent("my.pt") == str(tmp_path / "my.pt")
    assert sent("my.pt+b.pt") == f"{tmp_path / 'my.pt'}+{tmp_path / 'b.pt'}"
    assert sent("anny-coco17") == "anny-coco17"
    assert sent("my.pt+anny-coco17") == f"{tmp_path / 'my.pt'}+anny-coco17"


@pytest.mark.slow
def test_ray_names_the_error_of_a_task_that_could_not_run(corpus, tmp_path, monkeypatch):
    """A job the Ray workers cannot import (key2mesh missing on a node; here a module on the
    driver's path only): the row says so, not 'worker died' (no worker died)."""
    pytest.importorskip("ray")
    videos, log = corpus
    (tmp_path / "driver_only_jobs.py").write_text(
        "def job(input, out_dir, options):\n    return {'frames': 1, 'people': 1}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from driver_only_jobs import job

    rows = on_local_ray(
        1,
        lambda: run_batch(
            [str(videos / "a.mp4")], tmp_path / "ray", job, None, ray="auto", progress=False
        ),
    )
    assert [(r.status, r.error) for r in rows] == [
        ("failed", "ModuleNotFoundError: No module named 'driver_only_jobs'")
    ]


def test_ray_before_the_inputs_is_one_clear_error(corpus, capsys, monkeypatch):
    """``key2mesh batch --ray a.mp4 b.mp4``: argparse takes a.mp4 as the cluster's address; that
    is one error line naming it (it was Ray's ValueError traceback, a.mp4 silently dropped)."""
    pytest.importorskip("ray")
    from key2mesh import cli

    videos, _ = corpus
    argv = ["batch", "--ray", str(videos / "a.mp4"), str(videos / "c.mp4"), "--out"]
    assert cli.main([*argv, str(videos.parent / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--ray " in err and "a.mp4" in err and "--ray after the inputs" in err
    monkeypatch.setenv("RAY_ADDRESS", "not-an-address")  # --ray auto with a bad RAY_ADDRESS
    assert (
        cli.main(["batch", str(videos / "a.mp4"), "--out", str(videos.parent / "o2"), "--ray"]) == 2
    )
    assert "--ray auto: no Ray cluster joined" in capsys.readouterr().err


def test_a_folder_leaves_out_hidden_files_like_a_glob(tmp_path):
    """macOS writes '._a.mp4' metadata beside a.mp4 on FAT/exFAT drives: not videos (each was a
    failed row); the folder's inputs are the glob's."""
    for name in ("a.mp4", "._a.mp4", "b.mp4", ".hidden.mp4"):
        (tmp_path / name).write_bytes(b"x")
    want = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert expand_inputs([str(tmp_path)]) == want == expand_inputs([str(tmp_path / "*")])


def test_workers_that_cannot_start_end_the_run_with_one_error(corpus, monkeypatch):
    """Workers that die before any input starts (here each dies importing the job's module):
    the pool was rebuilt for ever; now, after two such pools in a row, one error, and the
    manifest keeps the inputs pending."""
    import os

    from tests.helpers.batch_job_dies_on_import import job

    monkeypatch.setenv("BATCH_MAIN_PID", str(os.getpid()))
    videos, _ = corpus
    out = videos.parent / "out"
    with pytest.raises(Key2MeshError, match="died before starting any input, twice"):
        run_batch([str(videos)], out, job, None, workers=2, progress=False)
    assert [r["status"] for r in read_manifest(out / MANIFEST)] == ["pending"] * 3


def test_an_input_that_crashes_the_default_single_worker_run_is_failed_on_the_rerun(corpus):
    """--workers 1 runs the inputs in the command's own process: an input that crashes it (a
    segfault) ended the run, and every rerun again at that input (c never ran). A rerun now
    runs the inputs left running in a worker process of their own: the crashing one is failed
    ('worker died'), the others finish."""
    videos, log = corpus
    out = videos.parent / "out"
    options = {"log": str(log), "die": "b_bad"}
    command = _batch_in_child(videos, out, options, workers=1)
    assert subprocess.run(command).returncode == -9
    assert [r["status"] for r in read_manifest(out / MANIFEST)] == ["ok", "pending", "pending"]
    assert subprocess.run(command).returncode == 0
    rows = read_manifest(out / MANIFEST)
    assert [(r["status"], r["error"]) for r in rows] == [
        ("skipped", ""),
        ("failed", "worker died"),
        ("ok", ""),
    ]
    assert calls(log) == ["a.mp4", "b_bad.mp4", "b_bad.mp4", "c.mp4"]
    # --retry-failed: the input whose worker died runs alone again (it crashed the whole run,
    # the earlier failed rows turned pending)
    retry = _batch_in_child(videos, out, options, workers=1, retry_failed=True)
    assert subprocess.run(retry).returncode == 0
    rows = read_manifest(out / MANIFEST)
    assert [(r["status"], r["error"]) for r in rows][1] == ("failed", "worker died")
    assert calls(log).count("b_bad.mp4") == 3


def test_a_folder_made_by_another_run_meanwhile_fails_that_input_only(tmp_path, monkeypatch):
    """Two runs on one OUT at once (a Slurm array whose videos share a name): the other run
    makes OUT/clip/ between this run's look and its rename. That input fails, the folder is
    left as the other run made it, the temp folder is gone, the others run (it was an OSError
    that ended the whole run)."""
    from key2mesh.inference import batch

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "d.mp4").write_bytes(b"x")
    out = tmp_path / "out"
    write_marker = batch._write_marker

    def other_run_meanwhile(folder, marker, task, stamp, **fields):
        write_marker(folder, marker, task, stamp, **fields)
        if task.stem == "clip" and not (out / "clip").exists():
            (out / "clip").mkdir()
            (out / "clip" / batch.RUNNING_MARKER).write_text('{"key": "/b/clip.mp4"}')

    monkeypatch.setattr(batch, "_write_marker", other_run_meanwhile)
    inputs = [str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "d.mp4")]
    rows = run_batch(inputs, out, record_job, {"log": str(tmp_path / "log")}, progress=False)
    assert [(r.stem, r.status) for r in rows] == [("clip", "failed"), ("d", "ok")]
    assert "made by another run meanwhile" in rows[0].error
    assert sorted(p.name for p in (out / "clip").iterdir()) == [batch.RUNNING_MARKER]
    assert sorted(p.name for p in out.iterdir()) == ["clip", "d", MANIFEST]


@pytest.mark.slow
def test_a_ray_task_uses_the_cpus_ray_gave_it(corpus):
    """One CPU per Ray task: its torch threads and its cpu_share (the detector's regions at once,
    x264's threads) are 1, not every core of the node (cpu_share was the node's cores)."""
    import os

    pytest.importorskip("ray")
    from tests.helpers.batch_jobs import threads_job

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores to tell 1 CPU from all")
    videos, _ = corpus
    rows = on_local_ray(
        2,
        lambda: run_batch(
            [str(videos)], videos.parent / "ray", threads_job, None, ray="auto", progress=False
        ),
    )
    assert [(r.frames, r.people) for r in rows] == [(1, 1)] * 3

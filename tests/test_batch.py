"""``key2mesh batch``: inputs, manifest, failures, resume after a finished or a killed run, workers
and Ray give the same results; the per-input job is a cheap fake (no MediaPipe)."""

from __future__ import annotations

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
    options = {"log": str(log), "fail": "bad"}
    run_batch([str(videos)], out, record_job, options)
    again = run_batch([str(videos)], out, record_job, options)
    assert [r.status for r in again] == ["skipped", "failed", "skipped"]
    assert [r.frames for r in again] == [1, 0, 1]  # the earlier run's rows, from the markers
    assert again[1].error.startswith("ValueError: cannot read b_bad.mp4")
    assert calls(log) == ["a.mp4", "b_bad.mp4", "c.mp4"]  # nothing run twice
    retried = run_batch([str(videos)], out, record_job, {"log": str(log)}, retry_failed=True)
    assert [r.status for r in retried] == ["skipped", "ok", "skipped"]
    assert calls(log)[3:] == ["b_bad.mp4"]
    assert not (out / "b_bad" / FAILED_MARKER).exists()


def test_a_killed_run_resumes_without_redoing_finished_inputs(corpus):
    videos, log = corpus
    out = videos.parent / "out"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from key2mesh.inference.batch import run_batch;"
        "from tests.helpers.batch_jobs import record_job;"
        "run_batch([sys.argv[2]], sys.argv[3], record_job, {'log': sys.argv[4], 'die': 'c.mp4'},"
        " progress=False)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT), str(videos), str(out), str(log)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == -9  # killed while working on c.mp4
    assert [r["status"] for r in read_manifest(out / MANIFEST)] == ["ok", "ok", "pending"]
    assert (out / "c" / "result.txt").exists() and not (out / "c" / DONE_MARKER).exists()
    (out / "c" / "stale.tmp").write_text("left by the killed run")
    rows = run_batch([str(videos)], out, record_job, {"log": str(log)}, progress=False)
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
    assert not hasattr(options, "inputs")


@pytest.mark.slow
def test_ray_gives_the_same_manifest(corpus):
    """One Ray task per input on a local Ray instance: the same rows as the local run."""
    ray = pytest.importorskip("ray")
    videos, log = corpus
    options = {"log": str(log), "fail": "bad"}
    local = run_batch([str(videos)], videos.parent / "local", record_job, options, progress=False)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        remote = run_batch(
            [str(videos)], videos.parent / "ray", record_job, options, ray="auto", progress=False
        )
    finally:
        ray.shutdown()
    strip = lambda rows: [(r.input, r.status, r.frames, r.people, r.error) for r in rows]  # noqa: E731
    assert strip(remote) == strip(local)
    assert [r["status"] for r in read_manifest(videos.parent / "ray" / MANIFEST)] == [
        "ok",
        "failed",
        "ok",
    ]


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

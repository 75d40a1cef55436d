"""Live mode (``key2mesh live``) on this machine: the sports2d demo video (1768x994, 30 fps,
two people) played as a camera stream → MediaPipe → tracking → Key2Mesh + camera fit → viewer.

Three runs of the same frames, in-process (model load and detector start-up excluded; the first
5 processed frames left out as warm-up):

- ``stream``: the video played at its frame rate, frames arriving while one is processed are
  dropped (a webcam's behaviour), no viewer;
- ``stream+viewer``: the same with the viser viewer and a headless Chromium showing the page
  (software WebGL on the same CPU: the worst case, a browser with a GPU costs the CPU less);
- ``every frame``: every frame processed as soon as the last is done (throughput), no viewer.

End-to-end latency: a frame's arrival (when the stream delivered it) → its bodies sent to the
viewer. fps: processed frames / wall time.

    .venv/bin/python benchmarks/live.py [--repeat 3] [--max-people 2]

The last line is ``RESULT live_fps=... live_latency_ms=... ...``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
RESULTS = Path(__file__).resolve().parent / "results"


def _write(text: str) -> Path:
    """``benchmarks/results/live.md``: the table under the command, commit and machine."""
    import datetime

    from _common import _commit, _machine

    command = " ".join(["python", *[shlex.quote(x) for x in sys.argv]])
    head = (
        "**Live mode: sports2d played as a camera stream**\n\n"
        f"- command: `{command}`\n- commit: {_commit()}\n"
        f"- machine: {_machine()}\n"
        f"- date: {datetime.date.today().isoformat()}\n\n"
    )
    path = RESULTS / "live.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + text + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repeat", type=int, default=3, help="stream runs play the video this often (default 3)"
    )
    p.add_argument("--max-people", type=int, default=2)
    p.add_argument("--checkpoint", default="anny-coco17-ensemble")
    a = p.parse_args()

    from key2mesh.data.demo_inputs import demo_video
    from key2mesh.devices import torch_threads
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.media.video import source_info
    from key2mesh.viewer.live import LIVE_STAGES, FileStream, run_live

    video = Path(demo_video("sports2d"))
    fps = source_info(video).fps
    frames = source_info(video).num_frames
    model = Key2Mesh.from_pretrained(a.checkpoint)
    runs = {}
    with torch_threads(1):
        runs["stream"] = run_live(
            model, FileStream(video, True, frames, a.repeat), None, a.max_people
        )
        runs["every frame"] = run_live(model, FileStream(video, False, frames), None, a.max_people)
        from key2mesh.viewer.screenshot import find_chromium

        if find_chromium() is not None:
            from key2mesh.viewer.app import LiveViewer
            from key2mesh.viewer.screenshot import (
                launch_headless,
                stop_browser,
                wait_for_client,
            )

            viewer = LiveViewer(model, port=0)
            browser = launch_headless(viewer.url, (960, 540))
            try:
                wait_for_client(viewer.server)
                runs["stream+viewer"] = run_live(
                    model, FileStream(video, True, frames, a.repeat), viewer, a.max_people
                )
            finally:
                stop_browser(browser)
                viewer.close()
    cols = [f"{s} ms" for s in LIVE_STAGES]
    lines = [
        f"The sports2d demo video ({frames} frames, {frames / fps:.1f} s at {fps:.0f} fps; the "
        f"stream runs play it {a.repeat} times in a row), at most {a.max_people} people, "
        f"checkpoint {a.checkpoint}, 1 torch thread.\n",
        "| run | frames done | fps | dropped | latency mean ms | p50 | p95 | people/frame | "
        + " | ".join(cols)
        + " |",
        "|---" + "|---:" * (7 + len(cols)) + "|",
    ]
    result = {}
    for name, stats in runs.items():
        s = stats.summary()  # the first min(5, frames - 1) left out as warm-up
        lines.append(
            f"| {name} | {stats.count} | {s['fps']:.2f} | {100 * s['dropped']:.0f} % | "
            f"{s['latency_ms']:.0f} | {s['latency_p50_ms']:.0f} | {s['latency_p95_ms']:.0f} | "
            f"{s['people']:.2f} | "
            + " | ".join(f"{s[f'{st}_ms']:.1f}" for st in LIVE_STAGES)
            + " |"
        )
        key = {"stream": "live", "stream+viewer": "live_viewer", "every frame": "every_frame"}[name]
        result[f"{key}_fps"] = s["fps"]
        result[f"{key}_latency_ms"] = s["latency_ms"]
    text = "\n".join(lines)
    text += (
        "\n\nread: waiting for a new frame from the stream; detect: MediaPipe on the tracked "
        "crops, two at a time (a crop around a change where someone may come in; the whole "
        "frame + tiles when nobody is tracked, or every 0.25 s while someone is lost or there is "
        "room and the picture moves, every 2 s while it is still); predict: "
        "Key2Mesh + camera fit; view: bone poses and the frame sent to the page."
    )
    out = "RESULT " + " ".join(f"{k}={v:.2f}" for k, v in result.items())
    print(text)
    print(out)
    path = _write(text + "\n\n```text\n" + out + "\n```")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

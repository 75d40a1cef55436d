"""Cheap per-input jobs for the ``key2mesh batch`` tests (importable by spawned workers and Ray)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def record_job(input: str, out_dir: Path, options: dict) -> dict:
    """Writes ``out_dir/result.txt`` and appends the input to ``options["log"]``; fails on inputs
    whose name holds ``options["fail"]`` (a ValueError), kills its own process on inputs whose
    name holds ``options.get("die")`` (like a killed run or a crashed worker), both only while
    the file ``options["only_while"]`` exists when that is given (the same options can then
    fail once and succeed later); sleeps ``options.get("sleep", 0)`` seconds first."""
    time.sleep(options.get("sleep", 0))
    with open(options["log"], "a", encoding="utf-8") as f:
        f.write(Path(input).name + "\n")
    (out_dir / "result.txt").write_text(input, encoding="utf-8")
    active = "only_while" not in options or Path(options["only_while"]).exists()
    if options.get("die") and options["die"] in input and active:
        os.kill(os.getpid(), signal.SIGKILL)
    if options.get("fail") and options["fail"] in input and active:
        raise ValueError(f"cannot read {Path(input).name}\nsecond line")
    return {"frames": len(Path(input).stem), "people": 1}


def threads_job(input: str, out_dir: Path, options: dict) -> dict:
    """Reports the worker's torch threads as ``frames`` and its CPU share as ``people``."""
    import torch

    from key2mesh.devices import cpu_share

    return {"frames": torch.get_num_threads(), "people": cpu_share()}


class DiesWhenSent(str):
    """An input whose pickling in a process other than ``$BATCH_MAIN_PID`` kills that process:
    its worker dies after the input finished (done marker written), sending the result back."""

    def __deepcopy__(self, memo):  # dataclasses.asdict copies the row: not a pickling
        return self

    def __reduce__(self):
        if os.getpid() != int(os.environ["BATCH_MAIN_PID"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return (DiesWhenSent, (str(self),))

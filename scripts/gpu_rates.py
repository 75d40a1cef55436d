"""The RESULT line of scripts/gpu_check.sh: the last ``"samples_per_s"`` of its pre-training and
adaptation logs (``OUT.pretrain.log``, ``OUT.adapt.log``).

    .venv/bin/python scripts/gpu_rates.py runs/gpu_check
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def rate(out: str, log: str) -> float:
    text = Path(f"{out}.{log}.log").read_text()
    return float(re.findall(r'"samples_per_s": ([0-9.]+)', text)[-1])


def main() -> None:
    out = sys.argv[1]
    print(
        f"RESULT gpu_pretrain_samples_per_s={rate(out, 'pretrain'):.0f} "
        f"gpu_adapt_samples_per_s={rate(out, 'adapt'):.0f}"
    )


if __name__ == "__main__":
    main()

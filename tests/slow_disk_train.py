"""train.py on a slow disk: every checkpoint file write and move takes 20 ms longer.

Run by tests/test_train_crash.py, which kills it at random moments; the delay makes a save last
long enough for the kills to land inside it (before its commit, and while its files are moved).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train

DELAY_S = 0.02


def slowly(function):  # wraps torch.save and os.replace alike
    def wrapper(*args, **kwargs):
        time.sleep(DELAY_S)
        return function(*args, **kwargs)

    return wrapper


if __name__ == "__main__":
    torch.save = slowly(torch.save)
    os.replace = slowly(os.replace)
    sys.exit(train.main(sys.argv[1:]))

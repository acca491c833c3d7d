"""Random option values: each is accepted, or refused with a message naming the flag; nothing else happens."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from options.train_options import TrainOptions
from util.errors import OptionError

NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "abc", "1e400", "-0", "0x10", " 3", "½"]),
)
#: The smallest valid value of each flag (0 epochs at the initial rate, or an empty pool, are allowed).
MINIMUM = {"--batch_size": 1, "--crop_size": 1, "--load_size": 1, "--lr": 1e-300, "--ngf": 1, "--n_epochs": 0,
           "--print_freq": 1, "--pool_size": 0, "--lambda_A": 0, "--lambda_identity": 0, "--beta1": 0}  # fmt: skip
FLAGS = list(MINIMUM)


@settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    values=st.lists(st.tuples(st.sampled_from(FLAGS), NUMBERS), min_size=1, max_size=3),
    preprocess=st.sampled_from(["crop", "resize_and_crop", "scale_width_and_crop", "none"]),
)
def test_random_values_are_accepted_or_refused_by_name(values: list[tuple[str, str]], preprocess: str) -> None:
    arguments = ["--dataroot", "data", "--checkpoints_dir", str(Path("/nonexistent/checkpoints")), "--gpu_ids", "-1"]
    arguments += ["--preprocess", preprocess]
    for flag, value in values:
        arguments += [f"{flag}={value}"]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            opt = TrainOptions().parse(arguments)
    except SystemExit as exit_info:  # argparse: "argument --flag: ..." and status 2
        assert exit_info.code == 2
        assert any(f"argument {flag}" in errors.getvalue() for flag, _ in values), errors.getvalue()
        return
    except OptionError as error:  # a check across options names the flags involved
        assert "--" in str(error)
        return
    for flag, _ in values:  # accepted: a finite number in the flag's range
        value = getattr(opt, flag[2:])
        assert MINIMUM[flag] <= value < float("inf"), (flag, value)
    if preprocess == "resize_and_crop":
        assert opt.crop_size <= opt.load_size

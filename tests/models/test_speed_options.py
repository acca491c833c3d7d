"""--amp, --channels_last and --compile: each trains, and changes speed, not results."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers import losses_of
from tests.models.test_cycle_gan_model import make_model
from util import runtime


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_a_step_with_finite_losses(amp: str, small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path, "--amp", amp, "--model", "seg_cycle_gan")
    before = [parameter.detach().clone() for parameter in model.networks["G_A"].parameters()]
    model.set_input(batch)
    steps = 0
    # fp16's loss scale starts high; steps whose scaled gradients overflow are skipped while it calibrates.
    while steps < 30 and all(
        torch.equal(old, new) for old, new in zip(before, model.networks["G_A"].parameters(), strict=True)
    ):
        model.optimize_parameters()
        steps += 1
    assert steps == 1 or (amp == "fp16" and model.runtime.scaler.get_scale() < 2.0**16)
    assert model.runtime.amp_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert model.visuals["fake_B"].dtype == model.runtime.amp_dtype  # the forward really ran in reduced precision
    assert model.runtime.scaler.is_enabled() == (amp == "fp16")
    losses = losses_of(model)
    assert {"GT_fake", "color_fake", "structure_fake"} <= losses.keys()
    assert all(math.isfinite(value) for value in losses.values()), losses
    assert steps < 30, "the generator never changed"


def test_channels_last_gives_the_same_outputs_and_losses(small_root: Path, tmp_path: Path) -> None:
    results = []
    for index, flags in enumerate(([], ["--channels_last"])):
        model, batch = make_model(small_root, tmp_path / str(index), *flags)
        model.set_input(batch)
        model.optimize_parameters()
        model.test()
        results.append((losses_of(model), model.visuals["fake_B"].float()))
    (losses, fake), (losses_nhwc, fake_nhwc) = results
    assert fake_nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fake, fake_nhwc, atol=1e-4)
    for name, value in losses.items():
        assert losses_nhwc[name] == pytest.approx(value, rel=1e-3, abs=1e-5), name


def test_compile_falls_back_with_a_warning_where_unavailable(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime, "compile_unavailable_reason", lambda device: "no C++ compiler (test)")
    model, batch = make_model(small_root, tmp_path, "--compile")
    assert "--compile ignored: no C++ compiler (test)" in caplog.text
    model.set_input(batch)
    model.optimize_parameters()
    assert all(math.isfinite(value) for value in losses_of(model).values())

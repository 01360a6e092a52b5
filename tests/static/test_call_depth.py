"""The call path from the module to the assignment stays short: at most 5 package frames from a
``StaticYoloXLoss`` call to the first function in ``static/`` (outside the module's own file) that assigns, and at
most 10 package frames stacked anywhere in one forward, in every mode, with ``max_gt`` None and fixed. Counted with
``sys.setprofile``: every Python frame whose code lives in the package."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import yolox_export
from yolox_export import StaticYoloXLoss
from yolox_export.config import MODES
from yolox_export.scenarios import make_scenario

from support import box_format_of

PACKAGE = str(Path(yolox_export.__file__).parent)
MODULE_FILE = str(Path(yolox_export.static.loss.__file__))


def package_depths(call) -> tuple[int | None, int, list[str]]:
    """(depth at the first assigning call into static/ outside the module's file, deepest package depth, the
    deepest chain's function names) while ``call()`` runs."""
    stack: list[bool] = []
    first: list[int] = []
    deepest = [0, []]

    def profile(frame, event, arg):
        if event == "call":
            path = frame.f_code.co_filename
            stack.append(path.startswith(PACKAGE))
            depth = sum(stack)
            if stack[-1] and depth > deepest[0]:
                chain, f = [], frame
                while f is not None:
                    if f.f_code.co_filename.startswith(PACKAGE):
                        chain.append(f.f_code.co_name)
                    f = f.f_back
                deepest[:] = [depth, chain[::-1]]
            if (stack[-1] and not first and f"{Path(PACKAGE) / 'static'}" in path and path != MODULE_FILE
                    and "assign" in frame.f_code.co_name):
                first.append(depth)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return (first[0] if first else None), deepest[0], deepest[1]


@pytest.mark.parametrize("max_gt", [None, 16])
@pytest.mark.parametrize("mode", MODES)
def test_few_frames_from_the_call_to_the_assignment(mode, max_gt):
    s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=3, seed=0, box_format=box_format_of(mode))
    module = StaticYoloXLoss(s.strides, 3, mode=mode, use_l1=True, max_gt=max_gt)
    to_assign, deepest, chain = package_depths(lambda: module(s.predictions, s.targets))
    assert to_assign is not None and to_assign <= 5, to_assign
    assert deepest <= 10, " > ".join(chain)
    torch.testing.assert_close(module(s.predictions, s.targets)[0].isfinite(), torch.tensor(True))

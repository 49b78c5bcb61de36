"""The serving process's collector settings (messenger.runtime), in a process of its
own: freezing this test process's objects would leak what later tests free."""

from __future__ import annotations

import subprocess
import sys

from messenger.runtime import YOUNG_GENERATION

PROBE = """
import gc
import messenger.node  # what a server has imported by the time it serves
from messenger.runtime import tune_for_serving
before = gc.get_freeze_count()
tune_for_serving()
print(before, gc.get_freeze_count(), gc.get_threshold()[0], len(gc.get_objects(generation=2)))
"""


def test_startup_objects_are_frozen_and_the_young_generation_widened() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    before, frozen, young, oldest = (int(value) for value in out)
    assert before == 0
    assert frozen > 10_000  # the imported modules' objects, out of every full collection
    assert young == YOUNG_GENERATION
    assert oldest < 1_000  # a full collection has next to nothing left to walk

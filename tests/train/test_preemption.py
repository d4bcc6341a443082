"""SIGTERM and SIGINT during training: the first asks for a checkpoint at the end of the step, a second one later
ends the process at once, a repeat right after the first (a launcher forwarding it) is the same request."""

import signal
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import os, signal, sys
    from wmfactory.train.preemption import PreemptionCallback
    from transformers import TrainerControl

    callback = PreemptionCallback(repeat_window_s=float(sys.argv[3]))
    callback.on_train_begin(None, None, None)
    first, second = signal.Signals[sys.argv[1]], signal.Signals[sys.argv[2]]
    os.kill(os.getpid(), first)
    control = callback.on_step_end(None, None, TrainerControl())
    print("after first", callback.requested, control.should_save, control.should_training_stop, callback.signal_name,
          flush=True)
    os.kill(os.getpid(), second)
    print("after second", flush=True)
""")


def run_child(first: str, second: str, window: float):
    return subprocess.run([sys.executable, "-c", CHILD, first, second, str(window)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("first, second", [("SIGTERM", "SIGTERM"), ("SIGINT", "SIGTERM")])
def test_the_first_signal_asks_for_a_save_and_a_second_ends_the_process_at_once(first, second):
    child = run_child(first, second, window=0.0)
    assert f"after first True True True {first}" in child.stdout
    assert "after second" not in child.stdout
    assert child.returncode == -signal.Signals[second]  # killed by the signal itself
    assert "stopping at once, without saving" in child.stderr


def test_a_repeat_within_the_window_is_the_same_request():
    child = run_child("SIGTERM", "SIGTERM", window=3600.0)
    assert "after first True True True SIGTERM" in child.stdout
    assert "after second" in child.stdout and child.returncode == 0

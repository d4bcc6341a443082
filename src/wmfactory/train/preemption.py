"""SIGTERM, which schedulers send before they preempt a job, and SIGINT (Ctrl-C): save a checkpoint at the end of
the current step, then stop. All processes of a distributed run agree on the step (the flag is reduced across ranks
each step).

A second SIGTERM or SIGINT ends the process at once, without saving (its status says which signal killed it), for
a run that is stuck or whose step never ends. A repeat within `repeat_window_s` of the first is taken as the same
request: launchers forward the signal they receive (torchrun sends its workers the SIGTERM or SIGINT it got, and a
scheduler or Ctrl-C signals the workers too), so each worker often sees one preemption twice."""

import os
import signal
import sys
import time
from typing import Optional

import torch
import torch.distributed as dist
from transformers import TrainerCallback

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionCallback(TrainerCallback):
    def __init__(self, repeat_window_s: float = 1.0):
        self.repeat_window_s = repeat_window_s
        self.requested = False
        self.stopped = False
        self.signal_name = "SIGTERM"  # the signal that asked for the stop
        self._first_at: Optional[float] = None
        self._previous: dict[int, object] = {}

    def _on_signal(self, signum, frame) -> None:
        now = time.monotonic()
        name = signal.Signals(signum).name
        if self._first_at is None:
            self.requested, self.signal_name, self._first_at = True, name, now
            print(f"[wmfactory] {name}: saving a checkpoint at the end of this step, then stopping. Send SIGTERM "
                  "or SIGINT (Ctrl-C) again to stop at once without saving.", file=sys.stderr, flush=True)
        elif now - self._first_at > self.repeat_window_s:
            print(f"[wmfactory] {name} again: stopping at once, without saving.", file=sys.stderr, flush=True)
            signal.signal(signum, signal.SIG_DFL)  # die of the signal itself, as without any handler
            os.kill(os.getpid(), signum)

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous = {handled: signal.signal(handled, self._on_signal) for handled in HANDLED_SIGNALS}

    def on_train_end(self, args, state, control, **kwargs):
        for handled, previous in self._previous.items():
            if previous is not None:
                signal.signal(handled, previous)
        self._previous = {}

    def on_step_end(self, args, state, control, **kwargs):
        requested = self.requested
        if dist.is_available() and dist.is_initialized():
            flag = torch.tensor([int(requested)], device=args.device if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            requested = bool(flag.item())
        if requested:
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control

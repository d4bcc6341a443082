"""SIGTERM, which schedulers send before they preempt a job: save a checkpoint at the end of the current step,
then stop. All processes of a distributed run agree on the step (the flag is reduced across ranks each step)."""

import signal

import torch
import torch.distributed as dist
from transformers import TrainerCallback


class PreemptionCallback(TrainerCallback):
    def __init__(self):
        self.requested = False
        self.stopped = False
        self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        self.requested = True

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

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

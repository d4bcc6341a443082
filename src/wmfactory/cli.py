"""`wmfactory <command>`: the commands registered in `wmfactory.commands` (train, check, predict, eval, encode,
retrieve, plan, export, api, webui), and version."""

import os
import sys

from .commands import COMMANDS
from .extras.errors import guarded


def usage() -> str:
    lines = ["usage: wmfactory <command> [CONFIG.yaml] [key=value ...]   (or --key value ...)", "", "commands:"]
    lines += [f"  {command.name:9} {command.summary}" for command in COMMANDS.values()]
    lines += ["  version   print the version", "", "`wmfactory <command> --help` lists the keys a command reads, with their defaults."]
    return "\n".join(lines)


TORCHRUN_VARIABLES = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


def wants_torchrun() -> bool:
    """LLaMA-Factory's convention: `FORCE_TORCHRUN=1`, or any torchrun variable set, or several GPUs; never when
    already running under torchrun."""
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return False
    if os.environ.get("FORCE_TORCHRUN", "0").lower() in ("1", "true", "yes"):
        return True
    if any(name in os.environ for name in TORCHRUN_VARIABLES):
        return True
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() > 1


def launch_torchrun(args: list[str]) -> int:
    """Re-run `wmfactory train ARGS` as `torchrun ... -m wmfactory.train.tuner ARGS`; returns its exit status."""
    import random
    import subprocess

    nproc = os.environ.get("NPROC_PER_NODE")
    if nproc is None:
        import torch

        nproc = str(max(torch.cuda.device_count(), 1))
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", os.environ.get("NNODES", "1"),
        "--node_rank", os.environ.get("NODE_RANK", "0"),
        "--nproc_per_node", nproc,
        "--master_addr", os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "--master_port", os.environ.get("MASTER_PORT", str(random.randint(20001, 29999))),
        "-m", "wmfactory.train.tuner", *args,
    ]
    print("wmfactory: launching " + " ".join(command[1:]), file=sys.stderr)
    return subprocess.run(command).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name == "version":
        from . import __version__

        print(f"wmfactory {__version__}")
        return 0
    if name not in COMMANDS:
        print(f"wmfactory: unknown command '{name}'.\n\n{usage()}", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        from .hparams.parser import print_help

        print_help(name, COMMANDS[name].summary)
        return 0
    if name == "train" and wants_torchrun():
        return launch_torchrun(rest)
    return guarded(COMMANDS[name].load(), rest)


if __name__ == "__main__":
    sys.exit(main())

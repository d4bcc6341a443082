"""`wmfactory train CONFIG.yaml [key=value ...]`, `wmfactory version`."""

import sys

USAGE = """usage: wmfactory <command> [arguments]

commands:
  train CONFIG.yaml [key=value ...]   train (stage sft or wm), LLaMA-Factory-style YAML plus overrides
  train --key value ...               the same with command-line flags
  version                             print the version
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "version":
        from . import __version__

        print(f"wmfactory {__version__}")
        return 0
    if command == "train":
        from .train.tuner import main as train_main

        return train_main(rest)
    print(f"wmfactory: unknown command '{command}'.\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

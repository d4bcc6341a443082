from dataclasses import dataclass, field
from typing import Optional


@dataclass
class WebuiArguments:
    """Keys of `wmfactory webui`: where the board listens and which folders it reads."""

    _argument_group_name = "webui"

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address to listen on. Anything but a loopback address (127.0.0.1, localhost, ::1) needs "
                          "`auth`."},
    )
    port: int = field(default=7860, metadata={"help": "Port to listen on."})
    saves_dir: str = field(
        default="saves",
        metadata={"help": "Folder of the training runs: the Runs, Evaluate, Explore and Plan tabs list the run "
                          "folders under it, and a run started from the board trains into it by default."},
    )
    dataset_dir: str = field(
        default="data", metadata={"help": "Folder holding dataset_info.json: the datasets the forms offer."}
    )
    auth: Optional[str] = field(
        default=None, metadata={"help": "`user:password`: the board asks for them before showing anything."}
    )

    def __post_init__(self):
        if self.auth is not None and (":" not in self.auth or not self.auth.split(":", 1)[0]
                                      or not self.auth.split(":", 1)[1]):
            raise ValueError("`auth` must look like user:password.")
        if not 0 < self.port < 65536:
            raise ValueError(f"`port` must be between 1 and 65535, got {self.port}.")

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..extras.errors import ConfigError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ApiArguments:
    """Keys of `wmfactory api` (with the model keys and `bank`, `top_k` of predict): how the HTTP server listens,
    who may call it and how much it takes at once."""

    _argument_group_name = "api"

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address to listen on. Loopback by default; any other address needs `api_key` (or "
                          "`allow_unauthenticated`)."},
    )
    port: int = field(default=8000, metadata={"help": "TCP port to listen on."})
    api_key: Optional[str] = field(
        default=None,
        metadata={"help": "Callers must send `Authorization: Bearer <api_key>` (default: the `API_KEY` environment "
                          "variable, as in LLaMA-Factory; none means no key is asked for)."},
    )
    allow_unauthenticated: bool = field(
        default=False, metadata={"help": "Listen on a non-loopback address without an API key (anyone who reaches "
                                         "the port can use the model)."}
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda when available), cpu, cuda, cuda:1, mps."})
    log_level: Literal["debug", "info", "warning", "error"] = field(
        default="info", metadata={"help": "Log level of the server (`info`: one line per request)."}
    )
    batch_window_ms: float = field(
        default=5.0,
        metadata={"help": "How long the engine waits after a rollout arrives for others to batch with it."},
    )
    max_batch_size: int = field(default=64, metadata={"help": "Rows stepped together in one batch at most."})
    max_queue: int = field(
        default=256, metadata={"help": "Requests waiting for the engine at most; more get 429 with Retry-After."}
    )
    request_timeout: float = field(
        default=60.0, metadata={"help": "Seconds a request may take, waiting included; past it, 504."}
    )
    max_body_mb: float = field(default=16.0, metadata={"help": "Largest request body in MiB; larger get 413."})
    max_samples: int = field(default=256, metadata={"help": "Largest `num_samples` a request may ask for."})

    def __post_init__(self):
        if self.api_key is None and os.environ.get("API_KEY"):
            self.api_key = os.environ["API_KEY"]
        if self.api_key == "":
            self.api_key = None
        if not 0 < self.port < 65536:
            raise ConfigError(f"`port` must be in 1..65535, got {self.port}.")
        if not is_loopback(self.host) and self.api_key is None and not self.allow_unauthenticated:
            raise ConfigError(f"`host` {self.host} is not a loopback address: set `api_key` (or the API_KEY "
                              "environment variable), or `allow_unauthenticated: true` to serve without one.")
        for key in ("max_batch_size", "max_queue", "max_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"`{key}` must be at least 1, got {getattr(self, key)}.")
        for key in ("request_timeout", "max_body_mb"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"`{key}` must be positive, got {getattr(self, key)}.")
        if not self.batch_window_ms >= 0:
            raise ConfigError(f"`batch_window_ms` must be >= 0, got {self.batch_window_ms}.")

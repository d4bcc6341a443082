"""`wmfactory webui`: the web board (gradio), on the loopback address unless `auth` guards it. Registered in
`commands/__init__.py` by name only: the board sits above the commands (it runs `eval`), so they never import it."""

import ipaddress
import importlib.util
from typing import Any, Union

from ..extras.errors import ConfigError
from ..hparams.parser import parse_dict, read_args
from ..hparams.webui_args import WebuiArguments

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def webui_args(args: Union[dict[str, Any], list[str], None] = None) -> WebuiArguments:
    """The checked keys: a host that other machines reach (0.0.0.0, a LAN address, a name) needs `auth`, since
    the board starts processes and reads and writes files as the user who runs it."""
    (parsed,) = parse_dict(read_args(args), (WebuiArguments,))
    if not is_loopback(parsed.host) and parsed.auth is None:
        raise ConfigError(f"`host` {parsed.host} is reachable from other machines: set `auth user:password` too "
                          "(the board trains, evaluates and writes files as you), or keep the default 127.0.0.1.")
    return parsed


def run_webui(args: Union[dict[str, Any], list[str], None] = None) -> int:
    parsed = webui_args(args)
    if importlib.util.find_spec("gradio") is None:
        raise ConfigError("the web board needs gradio: `pip install 'wmfactory[webui]'`.")
    from .app import create_app, launch_app

    app = create_app(saves_dir=parsed.saves_dir, dataset_dir=parsed.dataset_dir)
    launch_app(app, host=parsed.host, port=parsed.port, auth=parsed.auth, saves_dir=parsed.saves_dir, block=True)
    return 0

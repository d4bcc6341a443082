"""`wmfactory api`: load the trained world model (and the bank, when given), start the engine's worker and serve
the HTTP API with uvicorn. SIGTERM or SIGINT stops taking requests, lets those in flight finish, and exits 0."""

import logging
import os
import signal
from typing import Any, Union

from ..extras.logging import get_logger
from ..hparams import get_api_args

logger = get_logger(__name__)


def run_api(args: Union[dict[str, Any], list[str], None] = None) -> int:
    import uvicorn

    from ..commands.common import load_trained_world_model
    from .app import Limits, create_app
    from .batching import Engine

    parsed = get_api_args(args)
    settings = parsed.api
    logging.getLogger("wmfactory").setLevel(settings.log_level.upper())
    model = load_trained_world_model(parsed.model, _device(settings.device))
    bank = None
    if parsed.inference.bank:
        from ..encode.retrieval import load_bank

        bank = load_bank(parsed.inference.bank)
    engine = Engine(model, settings.batch_window_ms / 1000, settings.max_batch_size, settings.max_queue)
    limits = Limits(int(settings.max_body_mb * 2**20), settings.request_timeout, settings.max_samples)
    model_id = os.path.basename(os.path.normpath(parsed.model.adapter_name_or_path or
                                                 parsed.model.model_name_or_path))
    app = create_app(model, engine, limits, settings.api_key, bank, model_id)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, timeout_graceful_shutdown=int(settings.request_timeout) + 5)
    server = uvicorn.Server(config)
    # uvicorn raises the signal it caught again once it has shut down; with this handler in place that ends in
    # `return 0`, not in the default action (death by the signal)
    for caught in (signal.SIGTERM, signal.SIGINT):
        signal.signal(caught, lambda number, frame: None)
    key = "with an API key" if settings.api_key else "without an API key"
    logger.info(f"serving '{model_id}' on http://{settings.host}:{settings.port} {key}")
    server.run()
    logger.info("stopped")
    return 0


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

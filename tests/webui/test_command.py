"""`wmfactory webui`: its keys, the refusal to listen beyond loopback without auth, and gradio's login."""

import socket

import numpy as np
import pytest

from wmfactory.cli import main
from wmfactory.webui.command import is_loopback, webui_args
from wmfactory.extras.errors import ConfigError


def test_loopback_by_default_and_no_open_host_without_auth():
    assert webui_args([]).host == "127.0.0.1" and webui_args([]).port == 7860
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "192.168.1.5", "example.org", "::"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="reachable from other machines: set `auth user:password`"):
            webui_args(["--host", host])
    assert webui_args(["--host", "0.0.0.0", "--auth", "ana:secret"]).auth == "ana:secret"
    with pytest.raises(ConfigError, match="user:password"):
        webui_args(["--auth", "ana"])
    with pytest.raises(ConfigError, match="Unknown key `prot`. Did you mean `port`"):
        webui_args(["--prot", "80"])


def test_help_lists_the_webui_keys(capsys):
    assert main(["webui", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("--host", "--port", "--saves_dir", "--dataset_dir", "--auth"):
        assert key in out
    assert main(["webui", "--host", "0.0.0.0"]) == 1
    assert "set `auth user:password`" in capsys.readouterr().err


def test_auth_guards_the_board(tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    from wmfactory.webui import create_app, launch_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(saves_dir=str(tmp_path / "saves"), dataset_dir=str(tmp_path))
    launch_app(app, port=port, auth="ana:secret", saves_dir=str(tmp_path / "saves"), block=False)
    try:
        from gradio_client.exceptions import AuthenticationError

        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            gradio_client.Client(app.local_url, verbose=False)
        client = gradio_client.Client(app.local_url, auth=("ana", "secret"), verbose=False)
        assert "**idle**" in client.predict(api_name="/train_status")[1]
    finally:
        app.close()


def test_fan_chart_numbers_are_the_samples_quantiles():
    from wmfactory.webui.rollouts import StreamVectors, panels, rollout_numbers

    rng = np.random.default_rng(0)
    draws = {"s": rng.normal(size=(200, 3, 2))}  # [S, steps, d]
    truth = {"s": StreamVectors(np.zeros((2, 2)), np.ones((3, 2)))}
    table = rollout_numbers(truth, draws, None, sampled=True)
    assert len(table) == 3 * 2 and table["true"].tolist() == [1.0] * 6
    row = table[(table.step == 2) & (table.dim == 1)].iloc[0]
    assert row["factual_q50"] == pytest.approx(np.median(draws["s"][:, 1, 1]))
    assert row["factual_q05"] == pytest.approx(np.quantile(draws["s"][:, 1, 1], 0.05))
    assert row["factual_mean"] == pytest.approx(draws["s"][:, 1, 1].mean())
    drawn = panels(truth, draws, None, sampled=True)
    assert [p["title"] for p in drawn] == ["stream s, dimension 0", "stream s, dimension 1"]
    assert drawn[1]["factual"]["samples"].shape == (200, 3) and drawn[1]["start"] == 2

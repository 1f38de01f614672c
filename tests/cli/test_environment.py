"""The CLI's own environment variables and the settings' overrides never meet: overrides are
``DSO_<SECTION>__<KEY>``, the CLI's variables have no double underscore; with ``DSO_ADMIN_URL`` and
``DSO_ADMIN_TOKEN`` alone (no config file) the CLI reaches a running server."""

from __future__ import annotations

import os

from support import dso, dso_json

from server.cli.common import CLI_VARIABLES
from server.config import ENV_SEPARATOR, SECTIONS, load_settings, setting_env_names


def test_setting_overrides_and_cli_variables_are_disjoint_by_construction():
    names = setting_env_names()
    assert len(names) == len(set(names)) > 50
    for name in names:  # DSO_<SECTION>__<KEY>: the section is one of the sections, then the separator
        section, sep, key = name.removeprefix("DSO_").partition(ENV_SEPARATOR)
        assert sep and section.lower() in SECTIONS and key
    for variable in CLI_VARIABLES:
        assert variable.startswith("DSO_") and ENV_SEPARATOR not in variable
    assert not set(names) & set(CLI_VARIABLES)


def test_cli_variables_are_never_read_as_settings(tmp_path):
    env = {"DSO_ADMIN_URL": "http://127.0.0.1:1", "DSO_ADMIN_TOKEN": "t0ken", "DSO_ADMIN__PORT": "9555"}
    settings = load_settings(None, env=env)
    assert settings.admin.token == "" and settings.admin.port == 9555


def _env_without_config() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DSO_")}


def test_admin_url_and_token_without_a_config_file(live_server, tmp_path):
    env = {
        **_env_without_config(),
        "DSO_ADMIN_URL": live_server.info["admin_url"],
        "DSO_ADMIN_TOKEN": live_server.info["admin_token"],
    }
    status = dso_json("status", "--json", env=env, clear_env=True, cwd=tmp_path)
    assert status["devices"] == 0 and status["admin_url"] == live_server.info["admin_url"]
    cert = live_server.issue_device("remote-1")
    enrolled = dso_json(
        "device", "enroll", "--lfdi", cert["lfdi"], "--json", env=env, clear_env=True, cwd=tmp_path
    )
    assert enrolled["lfdi"] == cert["lfdi"]
    # the commands that work on a data directory are not confused by the variables either
    init = dso_json("init", str(tmp_path / "other"), "--json", env=env, clear_env=True, cwd=tmp_path)
    assert init["config"] == str(tmp_path / "other" / "dso.toml")
    dso_json("certs", "device", "x", "--json", "-c", init["config"], env=env, clear_env=True, cwd=tmp_path)
    # a wrong token is a one-line 401, not a traceback
    proc = dso("status", env={**env, "DSO_ADMIN_TOKEN": "wrong"}, clear_env=True, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "401" in proc.stderr and proc.stderr.count("\n") == 1

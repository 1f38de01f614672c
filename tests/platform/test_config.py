"""Settings: TOML file, DSO_* environment overrides, clear errors naming file and key."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings, load_settings, write_settings


def test_defaults_and_sqlite_beside_the_config(tmp_path):
    cfg = tmp_path / "dso.toml"
    write_settings(Settings(base_dir=tmp_path), cfg)
    s = load_settings(cfg, env={})
    assert s.server.port == 8443 and s.admin.port == 8444 and s.admin.host == "127.0.0.1"
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'dso.sqlite3'}"
    assert s.path(s.pki.ca) == tmp_path / "pki" / "ca.pem"
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"


def test_environment_overrides_file(tmp_path):
    cfg = tmp_path / "dso.toml"
    cfg.write_text('[server]\nport = 9000\n[database]\nurl = "sqlite:///x.db"\n')
    s = load_settings(
        cfg,
        env={
            "DSO_SERVER__PORT": "9443",
            "DSO_DATABASE__URL": "postgresql://h/db",
            "DSO_OPENADR__SELF_REGISTER": "true",
            "DSO_SERVER__TRUSTED_PROXIES": "10.0.0.1, ::1",
        },
    )
    assert s.server.port == 9443
    assert s.database_url == "postgresql://h/db"
    assert s.openadr.self_register is True
    assert s.server.trusted_proxies == ["10.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[server\nport=1", "not valid TOML"),
        ("[server]\nport = 'abc'\n", "[server] port: expected an integer"),
        ("[server]\nbogus = 1\n", "[server] bogus: unknown setting"),
        ("[nosuch]\nx = 1\n", "unknown section [nosuch]"),
        ("[sep2]\nregistration = 'sometimes'\n", "sep2.registration"),
        ("[server]\nport = 70000\n", "server.port"),
    ],
)
def test_corrupt_config_names_file_and_key(tmp_path, content, needle):
    cfg = tmp_path / "dso.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert str(cfg) in str(err.value) and needle in str(err.value)


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="DSO_ADMIN__PORT"):
        load_settings(None, env={"DSO_ADMIN__PORT": "eighty"})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_number_settings_take_fractions_and_refuse_the_rest():
    from server.config import _coerce

    assert _coerce("2.5", 1.0, "x") == 2.5 and _coerce(3, 1.0, "x") == 3.0
    for bad in ("fast", True, "nan", "inf"):
        with pytest.raises(ConfigError, match="x: expected a"):
            _coerce(bad, 1.0, "x")


def test_delivery_allow_networks_from_file_and_environment(tmp_path):
    cfg = tmp_path / "dso.toml"
    cfg.write_text('[delivery]\nallow_networks = ["10.20.0.0/16", "fd00:20::/32"]\n')
    assert load_settings(cfg, env={}).delivery.allow_networks == ["10.20.0.0/16", "fd00:20::/32"]
    s = load_settings(cfg, env={"DSO_DELIVERY__ALLOW_NETWORKS": "192.168.7.0/24, 10.9.0.0/16"})
    assert s.delivery.allow_networks == ["192.168.7.0/24", "10.9.0.0/16"]
    assert load_settings(None, env={}).delivery.allow_networks == []
    written = tmp_path / "again.toml"
    write_settings(s, written)  # a list survives being written by `dso init` and read back
    assert load_settings(written, env={}).delivery.allow_networks == ["192.168.7.0/24", "10.9.0.0/16"]
    for bad in ('["10.20.0.0/33"]', '["intranet"]', "[1]", '"10.0.0.0/8"'):
        cfg.write_text(f"[delivery]\nallow_networks = {bad}\n")
        if bad.startswith('"'):  # a TOML string is read as a comma-separated list, like the environment
            assert load_settings(cfg, env={}).delivery.allow_networks == ["10.0.0.0/8"]
            continue
        with pytest.raises(ConfigError, match="allow_networks"):
            load_settings(cfg, env={})

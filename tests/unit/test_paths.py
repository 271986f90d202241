"""Where config and state are found: a checkout, or an installed package told by setting."""

import pytest

from citybrain import paths


def test_a_checkout_finds_its_config_and_state_beside_the_code(monkeypatch):
    monkeypatch.delenv("CITYBRAIN_CONFIG_DIR", raising=False)
    monkeypatch.delenv("CITYBRAIN_STATE_DIR", raising=False)
    assert paths.IN_CHECKOUT
    assert paths.config_dir() == paths.PROJECT_ROOT / "config"
    assert paths.state_dir() == paths.PROJECT_ROOT / "var"


def test_settings_win(monkeypatch, tmp_path):
    monkeypatch.setenv("CITYBRAIN_CONFIG_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("CITYBRAIN_STATE_DIR", str(tmp_path / "s"))
    assert paths.config_dir() == tmp_path / "c" and paths.state_dir() == tmp_path / "s"


def test_an_installed_package_needs_its_config_set_and_keeps_state_in_the_users_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "IN_CHECKOUT", False)
    monkeypatch.delenv("CITYBRAIN_CONFIG_DIR", raising=False)
    monkeypatch.delenv("CITYBRAIN_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    with pytest.raises(paths.ConfigNotFound, match="CITYBRAIN_CONFIG_DIR"):
        paths.config_dir()
    assert paths.state_dir() == tmp_path / "citybrain"

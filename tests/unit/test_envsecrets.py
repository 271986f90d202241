"""A secret from the variable or from the file its ``…_FILE`` twin names (envsecrets.py)."""

import pytest

from citybrain.envsecrets import SecretFileError, env_secret
from citybrain.notify.settings import secret
from citybrain.platforms.settings import Platform


def test_the_variable_wins_then_the_file_then_nothing(tmp_path):
    f = tmp_path / "smtp-password"
    f.write_text("from-the-file\n")
    assert env_secret("CITYBRAIN_SMTP_PASSWORD", {"CITYBRAIN_SMTP_PASSWORD": "direct",
                                                  "CITYBRAIN_SMTP_PASSWORD_FILE": str(f)}) == "direct"
    assert env_secret("CITYBRAIN_SMTP_PASSWORD", {"CITYBRAIN_SMTP_PASSWORD_FILE": str(f)}) == "from-the-file"
    assert env_secret("CITYBRAIN_SMTP_PASSWORD", {}) is None


def test_a_mounted_secret_that_cannot_be_read_names_its_variable(tmp_path):
    with pytest.raises(SecretFileError, match="CITYBRAIN_WEBHOOK_SECRET_FILE .*missing"):
        env_secret("CITYBRAIN_WEBHOOK_SECRET", {"CITYBRAIN_WEBHOOK_SECRET_FILE": str(tmp_path / "missing")})
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(SecretFileError, match="is empty"):
        env_secret("CITYBRAIN_WEBHOOK_SECRET", {"CITYBRAIN_WEBHOOK_SECRET_FILE": str(empty)})


def test_the_notifier_and_the_platforms_read_their_keys_from_mounted_files(tmp_path, monkeypatch):
    (tmp_path / "smpp").write_text("smpp-pw")
    (tmp_path / "hotline").write_text("hotline-key")
    monkeypatch.delenv("CITYBRAIN_SMPP_PASSWORD", raising=False)
    monkeypatch.delenv("CITYBRAIN_PLATFORM_12345_SECRET", raising=False)
    monkeypatch.setenv("CITYBRAIN_SMPP_PASSWORD_FILE", str(tmp_path / "smpp"))
    monkeypatch.setenv("CITYBRAIN_PLATFORM_12345_SECRET_FILE", str(tmp_path / "hotline"))
    assert secret("CITYBRAIN_SMPP_PASSWORD") == "smpp-pw"
    platform = Platform(name="hotline-12345", system="12345", url="https://hotline.example.invalid/cb",
                        secret_env="CITYBRAIN_PLATFORM_12345_SECRET")
    assert platform.key() == b"hotline-key"

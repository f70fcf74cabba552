"""KEY=VALUE credentials files: one parser (backupd/config/envfile.py) for the S3 and the SMTP credentials, with
errors that name file and line and never quote a secret."""

from __future__ import annotations

import pytest

from backupd.config import envfile
from backupd.config.credentials import read_credentials
from backupd.errors import ConfigError
from backupd.notify import smtp

SECRET = "hunter2-Secret"


def _file(tmp_path, text: str | bytes, name: str = "creds.env"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_comments_blank_lines_export_and_one_pair_of_quotes(tmp_path):
    path = _file(tmp_path, "# S3 keys\n\nexport A=1\n  B = 'two words' \nC=\"x=y\"\nD='it\"s'\nE=\"mixed'\n")
    assert envfile.read(path) == {"A": "1", "B": "two words", "C": "x=y", "D": 'it"s', "E": "\"mixed'"}


@pytest.mark.parametrize("text, message", [
    (f"A=1\n{SECRET}\n", r"creds.env:2: expected KEY=VALUE$"),
    (f"A=1\n\n=  {SECRET}\n", r"creds.env:3: expected KEY=VALUE$"),
    (f"A=1\nA={SECRET}\n", r"creds.env:2: A is given twice$"),
    (f"BAD KEY={SECRET}\n", r"creds.env:1: expected KEY=VALUE$"),
])
def test_malformed_lines_name_file_and_line_never_the_value(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        envfile.read(_file(tmp_path, text))
    assert SECRET not in str(info.value)


def test_allowed_and_required_keys(tmp_path):
    path = _file(tmp_path, f"A=1\nX={SECRET}\n")
    with pytest.raises(ConfigError, match=r"creds.env:2: unknown key X; expected A=\.\.\. or B=\.\.\.$"):
        envfile.read(path, allowed=("A", "B"))
    with pytest.raises(ConfigError, match=r"creds.env: needs B and C \(KEY=VALUE lines\)$"):
        envfile.read(_file(tmp_path, "A=1\n"), required=("A", "B", "C"))


def test_unreadable_or_binary_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.env: cannot read \(No such file or directory\)"):
        envfile.read(tmp_path / "missing.env")
    with pytest.raises(ConfigError, match=r"creds.env: cannot read \(not UTF-8 text\)"):
        envfile.read(_file(tmp_path, b"A=\xff\xfe\n"))


def test_s3_credentials_use_the_parser(tmp_path):
    path = _file(tmp_path, f"export AWS_ACCESS_KEY_ID=AKIA\nAWS_SECRET_ACCESS_KEY='{SECRET}'\n")
    assert read_credentials(path) == {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": SECRET}
    with pytest.raises(ConfigError, match=r"creds.env:2: unknown key AWS_REGION; expected AWS_ACCESS_KEY_ID"):
        read_credentials(_file(tmp_path, "AWS_ACCESS_KEY_ID=AKIA\nAWS_REGION=x\n"))
    with pytest.raises(ConfigError, match=r"creds.env: needs AWS_SECRET_ACCESS_KEY"):
        read_credentials(_file(tmp_path, "AWS_ACCESS_KEY_ID=AKIA\n"))


def test_smtp_credentials_use_the_parser(tmp_path):
    """The SMTP file used to be parsed apart: a line without '=' or an unknown key was silently skipped."""
    path = _file(tmp_path, f"SMTP_USER=backupd\nSMTP_PASSWORD=\"{SECRET}\"\n", "smtp.env")
    assert smtp._credentials(path) == ("backupd", SECRET)
    with pytest.raises(ConfigError, match=r"smtp.env:2: expected SMTP_USER=\.\.\. or SMTP_PASSWORD=\.\.\.$"):
        smtp._credentials(_file(tmp_path, f"SMTP_USER=u\nSMTP_PASSWORD {SECRET}\nSMTP_PASSWORD=p\n", "smtp.env"))
    with pytest.raises(ConfigError, match=r"smtp.env:3: unknown key SMTP_PASS"):
        smtp._credentials(_file(tmp_path, "SMTP_USER=u\nSMTP_PASSWORD=p\nSMTP_PASS=p\n", "smtp.env"))

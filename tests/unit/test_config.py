"""backupd.yaml schema: every bad value is exit 2 with file:line: field, never a traceback or a silent default."""

import re

import pytest

from backupd.config import loader as config
from backupd.daemon import settings
from backupd.errors import ConfigError
from backupd.evidence import settings as evidence_settings
from tests.unit.cli_helper import cli, write_secrets


@pytest.fixture
def make(tmp_path):
    """make(text) -> path of a backupd.yaml whose first line names a policy directory that exists."""
    (tmp_path / "policies").mkdir()
    write_secrets(tmp_path / "secrets")

    def write(text: str, head: bool = True) -> str:
        path = tmp_path / "backupd.yaml"
        path.write_text(("policies: [policies/*.yaml]\nsecrets_dir: secrets\n" if head else "") + text)
        return str(path)

    return write


BAD = [
    ("retry_attempts: 0\n", 3, "retry_attempts", "greater than or equal to 1"),
    ("retry_attempts: -4\n", 3, "retry_attempts", "greater than or equal to 1"),
    ("retry_attempts: '3'\n", 3, "retry_attempts", "valid integer"),
    ("retry_wait_seconds: -5\n", 3, "retry_wait_seconds", "greater than or equal to 0"),
    ("state_dir: [a, b]\n", 3, "state_dir", "valid string"),
    ("state_dir: afile/state\n", 3, "state_dir", "is not a directory"),
    ("state_dir: afile\n", 3, "state_dir", "is not a directory"),
    ("\n\nbogus: 1\n", 5, "bogus", "unknown key 'bogus'"),
    ("daemon:\n  concurrency: 2\n  jitter: 5\n", 5, "daemon.jitter", "unknown key 'jitter'; known: concurrency"),
    ("notify:\n  smtp: {host: mail, to: nobody}\n", 4, "notify.smtp.to", "not an e-mail address"),
    ("notify: {webhook: ftp://x}\n", 3, "notify.webhook", "http:// or https://"),
    ("metrics:\n  listen: nope\n", 4, "metrics.listen", "HOST:PORT"),
    ("metrics: 5\n", 3, "metrics", "must be a mapping"),
    ("metrics: {listen: '0.0.0.0:9187'}\n", 3, "metrics.listen", "not a loopback address"),
    ("evidence: {audit_period: 3x}\n", 3, "evidence.audit_period", "invalid duration"),
    ("host: ../etc\n", 3, "host", "path separators"),
    ("a: &anchor 1\n", 3, "(file)", "anchors"),
    ("\nhosts: [tos-01]\n", 4, "hosts", "only used with role: verifier"),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD)
def test_bad_value_is_exit_2_with_file_line_field(make, tmp_path, text, line, field, message):
    (tmp_path / "afile").write_text("x")
    path = make(text)
    code, doc = cli("status", "--config", path)
    assert code == 2, doc
    assert f"{path}:{line}: {field}: " in doc["error"] and message in doc["error"], doc["error"]
    assert not (tmp_path / "['a', 'b']").exists()


def test_policies_must_be_globs(make):
    path = make("policies: 42\n", head=False)
    code, doc = cli("backup", "--config", path)
    assert code == 2 and f"{path}:1: policies: must be a glob or a list of globs" in doc["error"]


@pytest.mark.parametrize("text", ["", "\n# only a comment\n"])
def test_empty_file_is_an_error(make, text):
    path = make(text, head=False)
    code, doc = cli("status", "--config", path)
    assert code == 2 and f"{path}:1: (file): file is empty" in doc["error"]


def test_every_error_is_listed(make):
    path = make("retry_attempts: 0\nretry_wait_seconds: -1\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert re.findall(r":(\d+): (\w+):", str(caught.value)) == [("3", "retry_attempts"), ("4", "retry_wait_seconds")]


def test_valid_file_resolves_relative_paths(make, tmp_path):
    cfg = config.load(make("state_dir: state\nretry_attempts: 1\nretry_wait_seconds: 0\n"
                           "daemon: {concurrency: 2}\nnotify: {smtp: {host: mail, to: ops@example.jp}}\n"
                           "metrics: {listen: '127.0.0.1:9187'}\nevidence: {audit_period: 2y}\n"))
    assert cfg.state_dir == tmp_path / "state" and cfg.policies == [str(tmp_path / "policies/*.yaml")]
    assert (cfg.retry_attempts, cfg.retry_wait_seconds) == (1, 0.0)
    assert settings.daemon(cfg).concurrency == 2
    assert settings.notify(cfg).smtp.to == ["ops@example.jp"]
    assert settings.metrics(cfg).listen == ("127.0.0.1", 9187)
    assert evidence_settings.of(cfg).audit_period.days == 730


def test_missing_file_names_the_way_out(tmp_path):
    code, doc = cli("status", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "config file not found" in doc["error"]


def test_smtp_ca_file_reaches_the_settings(make, tmp_path):
    cfg = config.load(make("notify: {smtp: {host: mail, to: ops@example.jp, starttls: true, ca_file: /etc/ca.pem}}\n"))
    assert str(settings.notify(cfg).smtp.ca_file) == "/etc/ca.pem"

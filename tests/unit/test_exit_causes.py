"""restic's failures classified by cause: rejected S3 keys, wrong password, no repository (restic 0.14 text)."""

import pytest

from backupd.engine import exitcodes
from backupd.errors import EXIT_CONFIG, EXIT_FINDING, BackupdError
from backupd.process.execute import Completed
from tests.unit.cli_helper import cli

CASES = [
    ("Fatal: unable to open config file: Stat: Access Denied.\nIs there a repository at the following location?\n"
     "s3:http://127.0.0.1:8333/bkt/repo", exitcodes.StorageAccessDenied, EXIT_CONFIG),
    ("Fatal: unable to open config file: Stat: The request signature we calculated does not match the signature "
     "you provided. Check your key and signing method.", exitcodes.StorageAccessDenied, EXIT_CONFIG),
    ("Fatal: unable to open config file: Stat: The access key ID you provided does not exist in our records.",
     exitcodes.StorageAccessDenied, EXIT_CONFIG),
    ("Fatal: wrong password or no key found", exitcodes.WrongPassword, EXIT_CONFIG),
    ("Fatal: unable to open config file: Stat: The specified key does not exist.\n"
     "Is there a repository at the following location?", exitcodes.RepositoryMissing, EXIT_FINDING),
]


@pytest.mark.parametrize(("stderr", "kind", "code"), CASES)
def test_each_cause_has_its_own_error_and_exit_code(stderr, kind, code):
    with pytest.raises(BackupdError) as caught:
        exitcodes.classify(Completed(["restic", "cat", "config"], 1, stderr=stderr), "open worm", (0, 14, 0))
    assert type(caught.value) is kind and caught.value.exit_code == code
    if kind is exitcodes.StorageAccessDenied:
        assert "no repository" not in str(caught.value) and "refused the credentials" in str(caught.value)


def test_a_snapshot_id_that_is_not_hex_is_refused_before_restic_could_read_it_as_an_option(tmp_path):
    config = tmp_path / "absent.yaml"
    for args in (["drill", "--full", "--snapshot", "--password-command=id"],
                 ["restore", "--target", "t", "--to", str(tmp_path / "r"), "--snapshot", "-h"],
                 ["accept", "--target", "t", "--snapshot", "../x", "--reason", "r"]):
        code, doc = cli(*args, "--config", str(config))
        assert code == 2 and "a snapshot id is 1 to 64 hex digits" in doc["error"], (args, doc)

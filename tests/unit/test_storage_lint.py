"""Lint: destinations of a target that share one failure_domain are a warning (isolation, 2.7.2)."""

from backupd.policy.lint import lint_paths

POLICY = """version: 1
site: {{name: T, port: other}}
destinations:
  a: {{kind: s3, endpoint: http://127.0.0.1:1, bucket: bkt-a, object_lock: true, credentials_file: k,
       password_file: p, failure_domain: {a}}}
  b: {{kind: local, path: /mnt/usb, password_file: p, failure_domain: {b}}}
targets:
  - {{name: db, category: container_data, owner: o, rto: 4h, frequency: 1d, sources: {{paths: [/srv]}},
     retention: {{keep_daily: 60}}, destinations: [a, b]}}
"""


def _warnings(tmp_path, a, b):
    (tmp_path / "k").write_text("AWS_ACCESS_KEY_ID=x\nAWS_SECRET_ACCESS_KEY=y\n")
    (tmp_path / "p").write_text("pw\n")
    for f in ("k", "p"):
        (tmp_path / f).chmod(0o600)
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.format(a=a, b=b))
    return [f.message for f in lint_paths([path], tmp_path).findings if "failure_domain" in f.message]


def test_shared_failure_domain_warns(tmp_path):
    assert _warnings(tmp_path, "room-1", "room-1")


def test_distinct_failure_domains_do_not_warn(tmp_path):
    assert not _warnings(tmp_path, "room-1", "offsite")

"""Loader: hostile input, YAML restrictions, interpolation, and field -> line mapping."""

import threading
from pathlib import Path

import pytest

from backupd.policy.loader import MAX_BYTES, load_policy_file

VALID = """\
version: 1
site:
  name: T
  port: nagoya
destinations:
  worm:
    kind: s3
    endpoint: ${S3_ENDPOINT:-http://127.0.0.1:8333}
    bucket: bkt-1
    object_lock: true
    credentials_file: s3.env
    password_file: /abs/restic-password
targets:
  - name: db
    category: container_data
    owner: o
    rto: 4h
    frequency: 1h
    sources:
      dump:
        kind: pg_dump
        database: ${PGDATABASE:-tos}
        port: ${PGPORT:-5432}
    retention:
      keep_weekly: 8
    destinations: [worm]
"""


def load(tmp_path, text, env=None, name="p.yaml"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_policy_file(path, tmp_path / "secrets", env or {})


def only(loaded):
    assert len(loaded.findings) == 1, [str(f) for f in loaded.findings]
    return loaded.findings[0]


def test_valid_file_loads_with_lines(tmp_path):
    loaded = load(tmp_path, VALID)
    assert loaded.findings == [] and not loaded.unreadable
    assert loaded.policy.targets[0].sources.dump.port == 5432
    assert loaded.line_of(("targets", 0, "retention", "keep_weekly")) == 25
    assert loaded.line_of(("targets", 0, "retention", "min_history")) == 24  # nearest parent
    assert loaded.line_of(("targets", 0, "destinations", 0)) == 26
    assert loaded.line_of(("nope",)) == 1
    dest = loaded.policy.destinations["worm"]
    assert dest.credentials_file == tmp_path / "secrets" / "s3.env"
    assert dest.password_file == Path("/abs/restic-password")


def test_interpolation_uses_env_and_coerces(tmp_path):
    env = {"S3_ENDPOINT": "https://s3.example", "PGDATABASE": "tos_prod", "PGPORT": "6543"}
    policy = load(tmp_path, VALID, env).policy
    assert policy.destinations["worm"].endpoint == "https://s3.example"
    assert policy.targets[0].sources.dump.database == "tos_prod"
    assert policy.targets[0].sources.dump.port == 6543


def test_interpolation_escape_and_bad_number(tmp_path):
    text = VALID.replace("owner: o", r"owner: \${NOT_A_VAR}").replace("${PGPORT:-5432}", "${PGPORT:-abc}")
    loaded = load(tmp_path, text)
    assert loaded.policy is None
    assert str(only(loaded)).startswith(f"{tmp_path / 'p.yaml'}:23: targets[0].sources.dump.port: error:")


def test_undefined_env_variable(tmp_path):
    finding = only(load(tmp_path, VALID.replace("${PGDATABASE:-tos}", "${PGDATABASE}")))
    assert (finding.line, finding.field, finding.severity) == (22, "targets[0].sources.dump.database", "error")
    assert "PGDATABASE is not set" in finding.message


def test_unknown_key_names_file_line_field(tmp_path):
    finding = only(load(tmp_path, VALID.replace("      keep_weekly: 8", "      keep_weekly: 8\n      keep_wekly: 2")))
    assert str(finding) == (f"{tmp_path / 'p.yaml'}:26: targets[0].retention.keep_wekly: error: "
                            "unknown key 'keep_wekly' (check the spelling; see policy.schema.json)")


def test_missing_key_and_discriminated_union_paths(tmp_path):
    loaded = load(tmp_path, VALID.replace("    bucket: bkt-1\n", "").replace("    owner: o\n", ""))
    found = {(f.field, f.line) for f in loaded.findings}
    assert found == {("destinations.worm.bucket", 6), ("targets[0].owner", 13)}


def test_bad_duration_line(tmp_path):
    finding = only(load(tmp_path, VALID.replace("frequency: 1h", "frequency: hourly")))
    assert (finding.line, finding.field) == (18, "targets[0].frequency")
    assert "invalid duration" in finding.message


def test_relative_source_path(tmp_path):
    dump = "      dump:\n        kind: pg_dump\n        database: ${PGDATABASE:-tos}\n        port: ${PGPORT:-5432}\n"
    text = VALID.replace(dump, "      paths: [/ok, srv/tos]\n")
    finding = only(load(tmp_path, text))
    assert finding.field == "targets[0].sources.paths[1]" and "relative" in finding.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("version: 1\nsite: [unclosed\n", 3, "invalid YAML"),
        ("version: 1\n  bad: indent\n", 2, "invalid YAML"),
        ("version: 1\nversion: 1\n", 2, "duplicate key"),
        ("version: 1\nsite:\n  name: a\n  name: b\n", 4, "duplicate key"),
        ("", 1, "empty"),
        ("# only a comment\n", 1, "empty"),
        ("- a\n- b\n", 1, "top level must be a mapping"),
        ("just a string\n", 1, "top level must be a mapping"),
        ("version: 1\n---\nversion: 1\n", 2, "one YAML document"),
        ("version: 1\nsite: &s {name: x}\n", 2, "anchors"),
        ("a: 1\nb: *nothing\n", 2, "aliases"),
        ("version: !!str 1\n", 1, "explicit YAML tags"),
        ("version: !foo 1\n", 1, "explicit YAML tags"),
        ("version: ! 1\n", 1, "explicit YAML tags"),
        ("%TAG !e! tag:example.com,2000:\n---\nversion: !e!x 1\n", 3, "explicit YAML tags"),
        ("? [a, b]\n: 1\n", 1, "must be a string"),
        ("[" * 200 + "]" * 200 + "\n", 1, "nesting deeper"),
    ],
)
def test_refused_yaml(tmp_path, text, line, message):
    loaded = load(tmp_path, text)
    assert loaded.policy is None and not loaded.unreadable
    finding = loaded.findings[0]
    assert finding.line == line and message in finding.message, str(finding)


def test_python_object_tag_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    text = f'version: 1\nx: !!python/object/apply:os.system ["touch {marker}"]\n'
    loaded = load(tmp_path, text)
    assert loaded.policy is None and "explicit YAML tags" in only(loaded).message
    assert not marker.exists()


def run_with_guard(fn, seconds=30):
    """Run fn in a thread so a regression hangs the test for at most `seconds` instead of forever."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert "value" in result, "loader did not return"
    return result["value"]


def test_billion_laughs_refused(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    loaded = run_with_guard(lambda: load(tmp_path, "\n".join(lines) + "\n"))
    assert loaded.policy is None and "anchors" in only(loaded).message


def test_binary_file_unreadable(tmp_path):
    loaded = load(tmp_path, b"version: 1\n\x00\x01\x02\xff")
    assert loaded.unreadable and loaded.policy is None and "NUL" in only(loaded).message


def test_non_utf8_unreadable(tmp_path):
    loaded = load(tmp_path, "version: 1\nsite:\n  name: ターミナル\n".encode("shift_jis"))
    assert loaded.unreadable and "UTF-8" in only(loaded).message and only(loaded).line == 3


def test_utf8_bom_and_japanese_accepted(tmp_path):
    loaded = load(tmp_path, "\ufeff" + VALID.replace("name: T", "name: 名古屋ターミナル"))
    assert loaded.findings == [] and loaded.policy.site.name == "名古屋ターミナル"


def test_oversized_file_unreadable(tmp_path):
    loaded = load(tmp_path, b"# " + b"x" * (2 * MAX_BYTES) + b"\n")
    assert loaded.unreadable and "larger than" in only(loaded).message


def test_missing_file_and_directory_unreadable(tmp_path):
    for path in (tmp_path / "absent.yaml", tmp_path):
        loaded = load_policy_file(path, tmp_path, {})
        assert loaded.unreadable and loaded.policy is None and len(loaded.findings) == 1


def test_huge_document_refused(tmp_path):
    loaded = run_with_guard(lambda: load(tmp_path, "a: [" + ",".join(["x"] * 30000) + "]\n"))
    assert loaded.policy is None and "split the policy" in only(loaded).message

"""Evidence records hold file names that are not UTF-8 without crashing, readably and reproducibly."""

import json
import os

from backupd.evidence import canonical

BAD = os.fsdecode(b"bad\xff.txt")  # how Python hands such a name over: 'bad\udcff.txt'


def test_non_utf8_name_becomes_escaped_text():
    doc = canonical.normalise({"notes": [BAD], BAD: {"path": BAD}})
    data = canonical.dumps(doc)
    assert json.loads(data) == {"notes": ["bad\\xff.txt"], "bad\\xff.txt": {"path": "bad\\xff.txt"}}
    assert canonical.dumps(json.loads(data)) == data  # what verify re-encodes


def test_dumps_never_crashes_on_a_surrogate():
    data = canonical.dumps({"path": BAD})
    assert json.loads(data)["path"] == BAD

"""restic-style excludes and content manifests with the hash cache."""

import os
import shutil

from backupd.files import manifest
from backupd.files.excludes import is_excluded
from backupd.files.verify import verify_tree


def test_excludes_follow_restic_rules():
    assert is_excluded("/srv/tos/app/x.tmp", ["*.tmp"])
    assert is_excluded("/srv/tos/cache/a/b", ["cache"])
    assert is_excluded("/srv/tos/a/b/c.o", ["/srv/**/*.o"])
    assert not is_excluded("/srv/tos/a", ["/tos"])
    assert not is_excluded("/srv/tos/keep.log", ["*.tmp"])


def _tree(tmp_path):
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(os.urandom(1000))
    (root / "skip.tmp").write_text("no")
    os.symlink("a.txt", root / "link")
    return root


def test_manifest_lists_hashes_and_honours_excludes(tmp_path):
    root = _tree(tmp_path)
    cache = manifest.HashCache(tmp_path / "cache.json")
    entries = manifest.build([str(root)], ["*.tmp"], cache)
    paths = {e.path: e for e in entries}
    assert str(root / "skip.tmp") not in paths
    assert paths[str(root / "a.txt")].sha256 == manifest.sha256_file(str(root / "a.txt"))
    assert paths[str(root / "link")].type == "symlink"


def test_hash_cache_notices_a_change(tmp_path):
    root = _tree(tmp_path)
    cache = manifest.HashCache(tmp_path / "cache.json")
    manifest.build([str(root)], [], cache)
    cache.save()
    (root / "a.txt").write_text("changed!")
    again = manifest.build([str(root)], [], manifest.HashCache(tmp_path / "cache.json"))
    entry = next(e for e in again if e.path.endswith("a.txt"))
    assert entry.sha256 == manifest.sha256_file(str(root / "a.txt"))


def test_verify_detects_changed_missing_and_mode(tmp_path):
    root = _tree(tmp_path)
    entries = manifest.build([str(root)], [], manifest.HashCache(tmp_path / "c.json"))
    doc = manifest.document("t", "h", entries, {})
    restored = tmp_path / "restored"
    base = restored / str(root).lstrip("/")
    shutil.copytree(root, base, symlinks=True)
    assert verify_tree(restored, doc).ok
    (base / "a.txt").write_text("alphb")
    (base / "sub" / "b.bin").unlink()
    v = verify_tree(restored, doc)
    assert v.mismatched == [str(root / "a.txt")] and v.missing == [str(root / "sub" / "b.bin")]
    (base / "a.txt").write_text("alpha")
    os.chmod(base / "a.txt", 0o777)
    assert str(root / "a.txt") in verify_tree(restored, doc).mismatched


def test_a_snapshot_that_links_its_data_to_the_live_host_does_not_verify(tmp_path):
    """A planted snapshot holding only a directory symlink to the live source (or a manifest path with
    `..`) must not pass by having the host's own files verified in place of restored ones."""
    root = _tree(tmp_path)
    entries = manifest.build([str(root)], [], manifest.HashCache(tmp_path / "c.json"))
    doc = manifest.document("t", "h", entries, {})
    restored = tmp_path / "restored"
    restored.mkdir()
    top = str(root).lstrip("/").split("/")[0]
    (restored / top).symlink_to("/" + top)  # the whole data tree is the live host's
    linked = verify_tree(restored, doc)
    files = [e["path"] for e in doc["files"] if e["type"] != "symlink"]
    assert not linked.ok and set(files) <= set(linked.mismatched), linked.to_dict()
    escape = os.path.relpath(root / "a.txt", restored)  # ../.. up to / and down to the live file
    entry = next(e for e in doc["files"] if e["path"] == str(root / "a.txt"))
    outside = verify_tree(restored, {"files": [{**entry, "path": escape}]})
    assert outside.mismatched == [escape]


def _reference_walk(root: str, excludes: list[str]) -> list[str]:
    """What walk() listed when it was built on os.walk (kept here as the reference)."""
    import os

    from backupd.files.excludes import is_excluded

    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_excluded(os.path.join(dirpath, d), excludes))
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            if not is_excluded(os.path.join(dirpath, name), excludes):
                out.append(os.path.join(dirpath, name))
    return out


def test_the_scandir_walk_lists_what_the_os_walk_did(tmp_path):
    import os

    from backupd.files import manifest

    for d in ("a/b/c", "a/x", "b", "cache/deep", "z"):
        (tmp_path / d).mkdir(parents=True)
    for f in ("a/1", "a/b/2", "a/b/c/3", "a/x/4", "b/5", "cache/deep/6", "z/7", "0"):
        (tmp_path / f).write_text(f)
    os.symlink(tmp_path / "a", tmp_path / "b" / "link-to-dir")
    os.symlink("nowhere", tmp_path / "z" / "dangling")
    os.mkfifo(tmp_path / "z" / "fifo")
    for excludes in ([], ["cache"], ["/**/b/c", "*.tmp", "link-to-dir"]):
        got = [p for p, _ in manifest.walk([str(tmp_path)], excludes)]
        assert got == _reference_walk(str(tmp_path), excludes)
    assert str(tmp_path / "b" / "link-to-dir") in got or "link-to-dir" in excludes


def test_a_source_nested_deeper_than_pythons_stack_is_walked(tmp_path):
    import os

    from backupd.files import manifest

    deep = tmp_path
    for _ in range(1200):  # deeper than the default recursion limit of 1000 (os.makedirs recurses too)
        deep = deep / "d"
        os.mkdir(deep)
    (deep / "leaf").write_text("x")
    try:
        assert [p for p, _ in manifest.walk([str(tmp_path)], [])] == [str(deep / "leaf")]
    finally:  # removed here: shutil.rmtree (pytest's clean-up) recurses per level too
        (deep / "leaf").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent

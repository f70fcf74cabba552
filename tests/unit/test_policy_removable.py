"""Policy: the removable destination kind (a rotation set of media) and per-target offline.max_age."""

import copy

import pytest

from tests.unit.test_policy_lint import CLEAN, has, lint, secrets, target  # noqa: F401 (fixture)

MEDIA = {"kind": "removable", "password_file": "restic-password",
         "media": [{"name": "weekly-a", "uuid": "0F0E0D0C-1111-2222-3333-444455556666"},
                   {"name": "weekly-b", "label": "weekly-b"},
                   {"name": "weekly-c", "uuid": "aaaaaaaa-1111-2222-3333-444455556666", "label": "wc"}]}


def with_media(media=MEDIA, **offline):
    data = copy.deepcopy(CLEAN)
    data["destinations"]["offsite"] = copy.deepcopy(media)
    data["targets"][0]["offline"] = {"max_age": "8d", **offline}
    return data


def test_removable_destination_and_offline_lint_clean(tmp_path, secrets):
    result = lint(tmp_path, secrets, with_media())
    assert result.findings == []
    dest = result.policies[0].policy.destinations["offsite"]
    assert dest.medium("weekly-a").uuid == "0f0e0d0c-1111-2222-3333-444455556666"  # compared lower-case
    assert result.policies[0].policy.targets[0].offline.max_age.days == 8


@pytest.mark.parametrize("medium, text", [
    ({"name": "weekly-x"}, "needs 'uuid' or 'label'"),
    ({"name": "weekly-x", "uuid": "/dev/sdb1"}, "is not a filesystem UUID"),
    ({"name": "weekly-x", "label": "-rf"}, "must not start with '-'"),
    ({"name": "../x", "label": "x"}, "medium name"),
    ({"name": "weekly-a", "label": "x"}, "name 'weekly-a' is given to more than one medium"),
])
def test_a_medium_is_identified_by_uuid_or_label_only(tmp_path, secrets, medium, text):
    media = copy.deepcopy(MEDIA)
    media["media"].append(medium)
    result = lint(tmp_path, secrets, with_media(media))
    assert any(text in f.message and f.field.startswith("destinations.offsite") for f in result.errors), \
        [str(f) for f in result.findings]


def test_removable_destination_is_never_a_backup_destination(tmp_path, secrets):
    data = with_media()
    data["targets"][1]["destinations"] = ["worm", "offsite"]
    result = lint(tmp_path, secrets, data)
    assert has(result, "targets[1].destinations[1]", "is a removable destination, filled by `backupd media sync`")


def test_offline_needs_a_removable_destination(tmp_path, secrets):
    data = copy.deepcopy(CLEAN)
    data["targets"][0]["offline"] = {"max_age": "8d"}
    assert has(lint(tmp_path, secrets, data), "targets[0].offline", "no removable destination")
    data = with_media(destination="worm")
    assert has(lint(tmp_path, secrets, data), "targets[0].offline.destination", "'worm' is not a removable")
    data = with_media()
    data["destinations"]["second"] = copy.deepcopy(MEDIA)
    assert has(lint(tmp_path, secrets, data), "targets[0].offline", "several removable destinations")
    data = with_media(max_age="0s")
    assert any("max_age must be greater than zero" in f.message for f in lint(tmp_path, secrets, data).errors)


def test_removable_copy_from_must_be_listed_by_the_target(tmp_path, secrets):
    media = {**copy.deepcopy(MEDIA), "copy_from": "other"}
    data = with_media(media)
    data["destinations"]["other"] = copy.deepcopy(CLEAN["destinations"]["worm"])
    assert has(lint(tmp_path, secrets, data), "targets[0].offline", "copies from 'other', which this target does not list")

"""Shared test settings: the repository root is importable (for the demo stack package); the order
the modules run in and how pytest-xdist (scripts/test.sh) shares them out among its workers."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The longest modules start first (scripts/test.sh: pytest-xdist workers), so that no worker is still busy with
#: one of them while the others have finished (measured: scripts/test.sh prints the slowest tests).
LONGEST = ("test_systemd_boot", "test_offline_bundle", "test_estate_cluster", "test_clean_points", "test_daemon",
           "test_incident", "test_media", "test_storage", "test_drill", "test_backup")

#: Modules that share a session fixture too costly to build on two workers: one worker runs them one after the
#: other (the offline bundle, built once: tests/integration/conftest.py offline_bundle).
TOGETHER = {"tests/integration/test_systemd_boot.py": "offline-bundle",
            "tests/integration/test_offline_bundle.py": "offline-bundle"}


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(LONGEST)))  # stable: the rest keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with TOGETHER's modules as one unit of work: a module stays on one worker (its module
    fixtures are built once), TOGETHER's modules on the same one."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return TOGETHER.get(module, module)

    return ByModule(config, log)

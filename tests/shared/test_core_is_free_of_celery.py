"""The domain core (`shared/`) imports nothing from Celery, kombu or `services/`: the steps, claims and
progress can run under any queue (or none, as `kpromote rollback --backup` runs them), and the Celery
app, canvases and task hooks live with the processes in `services/`."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
FORBIDDEN = ("celery", "kombu", "services")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_domain_core_imports_nothing_from_celery_or_the_services() -> None:
    found = {
        f"{path.relative_to(SHARED.parent)}: {name}"
        for path in SHARED.rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in FORBIDDEN
    }
    assert not found, sorted(found)


def test_the_check_sees_an_import() -> None:
    probe = SHARED.parent / "tests" / "shared" / "test_core_is_free_of_celery.py"
    assert "ast" in _imports(probe) and "pathlib" in _imports(probe)

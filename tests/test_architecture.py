"""The layers of ARCHITECTURE.md, as import-linter contracts (.importlinter): they hold, they list every
library module, and they catch an import that breaks them."""
from __future__ import annotations

import configparser
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import scar_core

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
ORCHESTRATION = {"cli", "jobs", "__main__"}


def lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=folder, capture_output=True, text=True, timeout=120)


def test_the_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_the_library_contract_names_every_library_module():
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    listed = set(config["importlinter:contract:library"]["source_modules"].split())
    present = {f"scar_core.{m.name}" for m in pkgutil.iter_modules(scar_core.__path__) if m.name not in ORCHESTRATION}
    assert listed == present


def broken_copy(tmp_path, module: str, line: str):
    """lint-imports over a copy of the tree where `module` (a path) gains one import line."""
    for name in ("scar_core", "db", "pages", ".importlinter"):
        source = ROOT / name
        (shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
         if source.is_dir() else shutil.copy(source, tmp_path / name))
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # a deliberate bad import\n")
    return lint(tmp_path)


def test_a_library_module_importing_the_store_breaks_a_contract(tmp_path):
    result = broken_copy(tmp_path, "scar_core/select.py", "from db import runs")
    assert result.returncode != 0
    assert "The library never imports the store, orchestration or the UI BROKEN" in result.stdout
    assert "scar_core.select -> db.runs" in result.stdout


def test_a_page_writing_labels_itself_breaks_a_contract(tmp_path):
    result = broken_copy(tmp_path, "pages/explore.py", "from db import labels")
    assert result.returncode != 0
    assert "pages is not allowed to import db.labels" in result.stdout
    assert "pages.explore -> db.labels" in result.stdout

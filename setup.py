"""Build step of the spreadedge package: the SQL goes into the wheel as package data.

migrations/, functions/ and schema/ live at the repository root (the project reads them there),
but an installed package runs from anywhere: the wheel carries a copy in spreadedge/sql/, which
spreadedge.settings.code_sql_dir() finds. An editable install (make bootstrap) copies nothing:
the code finds them in the checkout it runs from. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SQL_DIRS = ("migrations", "functions", "schema")
SQL_FILES = ("*.sql", "*.sql.j2")


class BuildPyWithSql(build_py):
    """build_py, then a copy of the SQL directories into build/lib/spreadedge/sql/."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "spreadedge" / "sql"
        shutil.rmtree(target, ignore_errors=True)
        for name in SQL_DIRS:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"setup.py: {source} is not a directory; the package needs its SQL")
            for path in sorted(p for pattern in SQL_FILES for p in source.rglob(pattern)):
                copied = target / name / path.relative_to(source)
                copied.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copied)


setup(cmdclass={"build_py": BuildPyWithSql})

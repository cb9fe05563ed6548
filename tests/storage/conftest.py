from __future__ import annotations

import os

import pytest

from storage import ENGINES, open_store


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def data_dir(tmp_path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def store(engine: str, data_dir: str):
    db = open_store(data_dir, engine=engine)
    yield db
    db.close()


def disk_usage(directory: str) -> int:
    """Bytes of every file under `directory`."""
    total = 0
    for root, _, files in os.walk(directory):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total

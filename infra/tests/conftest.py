"""Shared fixtures of the infrastructure checks (run them with infra/tests/run.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from checks import Infra  # noqa: E402

INFRA = HERE.parent
REPO = INFRA.parent


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def infra_root() -> Path:
    return INFRA


@pytest.fixture(scope="session")
def infra() -> Infra:
    return Infra.load(INFRA)

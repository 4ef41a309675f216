"""The wiring of infra/: every check of checks.py on the real tree, and the cross-checks with the Rust code."""

from __future__ import annotations

import pytest

from checks import ALL_CHECKS, ENV_CONSTANTS, ENV_SOURCES, LAMBDA_ENV, check_rust_topics, ingest_function, lambda_env, rust_env_names


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_infra(infra, check):
    problems = check(infra)
    assert problems == [], "\n".join(problems)


def test_contract_list_is_complete():
    # Each variable of the contract says where it comes from, and nothing else is described.
    assert len(set(LAMBDA_ENV)) == len(LAMBDA_ENV) == 16
    assert set(ENV_SOURCES) | set(ENV_CONSTANTS) == set(LAMBDA_ENV)
    assert not set(ENV_SOURCES) & set(ENV_CONSTANTS)


def test_lambda_sets_exactly_the_contract(infra):
    env = lambda_env(ingest_function(infra.pipeline))
    assert sorted(env) == sorted(LAMBDA_ENV)


def test_lambda_env_covers_what_the_rust_code_reads(infra, repo):
    names = rust_env_names(repo)
    if not names:
        pytest.skip("no \"VIGIL_*\" literal in functions/ or crates/aws/src yet")
    env = lambda_env(ingest_function(infra.pipeline))
    missing = sorted(n for n in names if n not in env)
    assert not missing, f"the Rust code reads {missing}, which the Lambda's environment does not set"
    unknown = sorted(names - set(LAMBDA_ENV))
    assert not unknown, f"{unknown}: add to LAMBDA_ENV and ENV_SOURCES in infra/tests/checks.py"


def test_topics_the_rust_code_uses(infra, repo):
    problems, checked = check_rust_topics(infra, repo)
    if checked == 0:
        pytest.skip("no dt/vigil/ topic template in crates/ or functions/ yet")
    assert problems == [], "\n".join(problems)

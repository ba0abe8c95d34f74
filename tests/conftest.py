"""Fixtures shared by several test packages."""

import pytest


@pytest.fixture(scope="session")
def synthetic_reward(tmp_path_factory):
    """The reward of the synthetic learning test, trained once per session (about 2.5 CPU minutes)."""
    from tests.synthetic_reward import train_synthetic_reward

    return train_synthetic_reward(tmp_path_factory.mktemp("synthetic-reward"))

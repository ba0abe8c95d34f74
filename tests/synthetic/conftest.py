"""Shared fixtures of the synthetic-benchmark tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """The procedural fields are elementwise and memory-bound; one thread avoids oversubscribing shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

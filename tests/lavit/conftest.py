"""One intra-op thread for these small models: on a shared, busy machine torch's thread pool spends more
time waiting at barriers than computing (measured 10-20x slower steps with 2 threads under load)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

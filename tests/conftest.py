"""One intra-op thread per test: the tensors in these tests are tiny, and two threads on a
loaded 2-core machine spin against each other (a 100x slowdown measured for the GRU)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI explores the same examples every run; locally hypothesis keeps searching.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

torch.set_num_threads(min(2, torch.get_num_threads()))

# The harness's tests hand this folder's implementations to measuring processes as a plugin.
# Importing it registers them; in this process they exist only inside the `test_impls`
# fixture, so that nothing iterating over the registry (conformance, claims) meets them.
sys.path.insert(0, str(Path(__file__).parent / "plugins"))
import rnnbench_test_impls  # noqa: E402

rnnbench_test_impls.unregister_all()


@pytest.fixture
def test_impls():
    """The misbehaving implementations of tests/plugins, registered here for one test."""
    rnnbench_test_impls.register_all()
    yield rnnbench_test_impls.__name__
    rnnbench_test_impls.unregister_all()

import os
import sys
from pathlib import Path

import torch
from hypothesis import HealthCheck, settings

# CI explores the same examples every run; locally hypothesis keeps searching.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

torch.set_num_threads(min(2, torch.get_num_threads()))

# The harness's tests hand this folder's implementations to measuring processes as a plugin.
sys.path.insert(0, str(Path(__file__).parent / "plugins"))

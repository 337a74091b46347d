"""asv benchmarks: the speed and memory history of every registered implementation.

These modules run against whatever commit asv installed, so they may use only `impls` and its
registry (present in every commit) and this checkout's ``bench/workload.py``, loaded by path;
never `bench.*` as a package (an older commit's may differ or be absent).
"""

"""asv benchmarks: the speed history of every registered implementation, commit by commit.

These modules run against whatever commit asv installed, so they may use only `impls` and its
registry (present in every commit), never `bench.*` (which older commits lack).
"""

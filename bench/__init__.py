"""rnnbench's measuring side: cases, timing, memory, statistics, results and reports.

``python -m bench --help`` is the entry point. `bench` reaches implementations only through
the `impls` registry, so anything registered there (a user's own kernel included, loaded with
``--plugin``) is measured the same way as the built-in ones.
"""

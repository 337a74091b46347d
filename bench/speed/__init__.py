"""The speed harness: cases, timing in worker processes, fresh-process memory, statistics,
resumable results files. `runner.run` is the entry point; `bench.cli` drives it."""

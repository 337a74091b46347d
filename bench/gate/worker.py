"""The regression gate's measuring process for one source tree: a small fork server.

The gate runs this file (through runpy, so that bench/ is not put on sys.path) with PYTHONPATH
and the working directory set to the tree under test, so `import impls` is that tree's. It
must therefore stay free of `bench` imports: the base commit may have no `bench` package, or a
different one. What is timed comes from the workload file whose path the spec carries (the
gate's own `bench/workload.py`), loaded by path under a private module name: both trees are
timed by that one definition (`Workload.call`, `calls_per_block`, `seconds_per_call`,
`unsupported_reason`), while the layers come from each tree's `impls`.

torch and `impls` are imported once (importing torch costs more than measuring); each sample
is then a forked child, a fresh process that builds, compiles and calibrates every case and
then times one block of every case per command, so that the gate can alternate the blocks of
a base child and a head child that are alive at the same time. Protocol, one JSON line each:

    gate -> server: spec (see `bench.gate.run.worker_spec`)
    child -> gate:  {impls_file, registered, missing}
    gate -> child:  "block"                              child -> gate: {case: seconds per call}
    gate -> child:  "done"                               child -> gate: {"done": true}, exits
"""

import importlib.util
import json
import os
import sys
import traceback

#: The name the workload file is loaded under: never `bench.workload`, which is not imported.
WORKLOAD_MODULE = "_rnnbench_gate_workload"
DEVICE = "cpu"


def load_workload(path):
    """The workload module at `path`, loaded by path (the gate's definition of the call)."""
    spec = importlib.util.spec_from_file_location(WORKLOAD_MODULE, path)
    if spec is None or not os.path.isfile(path):
        raise FileNotFoundError(f"no workload file at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[WORKLOAD_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[WORKLOAD_MODULE]
        raise
    return module


def _cases(impls, workload, spec):
    """The requested cases this tree can run, and a reason for each one it cannot."""
    runnable, missing = [], {}
    registered = impls.names()
    for impl_name in spec["impls"] or registered:
        for cell in spec["cells"]:
            for mode in spec["modes"]:
                case_id = f"{impl_name}/{cell}/{mode}"
                if impl_name not in registered:
                    missing[case_id] = "not registered"
                    continue
                reason = workload.unsupported_reason(impls.get(impl_name), cell, mode,
                                                     spec["dtype"], DEVICE)
                if reason is None:
                    runnable.append((case_id, impl_name, cell, mode))
                else:
                    missing[case_id] = reason
    return runnable, missing


def prepare(torch, impls, workload, spec):
    """Build every case's workload, make its first call (JIT compilation), size its block.

    Returns ([(case, the bound `Workload.call`, calls per block)], {case: why n/a}).
    """
    if spec["clock"] not in workload.CLOCKS:
        raise ValueError(f"clock must be one of {sorted(workload.CLOCKS)}, got {spec['clock']!r}")
    torch.set_num_threads(spec["threads"])
    T, B, size = spec["shape"]
    runnable, missing = _cases(impls, workload, spec)
    prepared = []
    for case_id, impl_name, cell, mode in runnable:
        torch.manual_seed(0)
        call = workload.Workload(impl_name, cell, mode, T=T, B=B, I=size, H=size,
                                 dtype=spec["dtype"], device=DEVICE).call
        call()
        calls = workload.calls_per_block(call, spec["block_seconds"], device=DEVICE,
                                         clock=spec["clock"])
        prepared.append((case_id, call, calls))
    return prepared, missing


def block(workload, prepared, clock):
    """One timed block of every case: {case: seconds per call}."""
    return {case_id: workload.seconds_per_call(call, calls, device=DEVICE, clock=clock)
            for case_id, call, calls in prepared}


def _reply(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def sample(torch, impls, spec):
    """One forked child's life: prepare, then one block of every case per "block" command."""
    workload = load_workload(spec["workload"])
    prepared, missing = prepare(torch, impls, workload, spec)
    _reply({"impls_file": impls.__file__, "registered": impls.names(), "missing": missing})
    while sys.stdin.readline().strip() == "block":
        _reply(block(workload, prepared, spec["clock"]))
    _reply({"done": True})


def serve(threads):
    """Fork a child per spec line on stdin; the child answers the gate directly."""
    # Before anything imports numba: its thread count (numba.get_num_threads(), which sizes
    # the numba implementation's team) follows the gate's --threads, as torch's does.
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    import torch

    import impls

    # readline, not iteration: nothing may be read ahead that belongs to the child.
    while line := sys.stdin.readline():
        pid = os.fork()
        if pid == 0:
            try:
                try:
                    sample(torch, impls, json.loads(line))
                except BaseException:
                    _reply({"error": traceback.format_exc()})
            finally:  # never return into the server's loop, whatever happened
                sys.stderr.flush()
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:  # killed before it could answer (a crash in native code)
            _reply({"error": f"the measuring process died, wait status {status}"})


if __name__ == "__main__":
    serve(int(sys.argv[1]))

"""The regression gate's measuring process for one source tree: a small fork server.

The gate runs this file (through runpy, so that bench/ is not put on sys.path) with PYTHONPATH
and the working directory set to the tree under test, so `import impls` is that tree's. It
must therefore stay free of `bench` imports: the base commit may have no `bench` package, or a
different one, and both sides must be timed by the same code.

torch and `impls` are imported once (importing torch costs more than measuring); each sample
is then a forked child, a fresh process that builds, compiles and calibrates every case and
then times one block of every case per command, so that the gate can alternate the blocks of
a base child and a head child that are alive at the same time. Protocol, one JSON line each:

    gate -> server: spec (see `bench.gate.run.worker_spec`)  child -> gate: {impls_file, missing}
    gate -> child:  "block"                              child -> gate: {case: seconds per call}
    gate -> child:  "done"                               child -> gate: {"done": true}, exits
"""

import json
import os
import sys
import time
import traceback

#: cpu: seconds this process ran on a CPU, all its threads together. Other processes on a
#: busy machine delay a call but add little to this; more work in the call adds to it.
#: wall: elapsed seconds, which also see waiting (locks, sleeps, a starved thread pool).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def _cases(impls, spec, dtype):
    """The requested cases this tree can run, and a reason for each one it cannot."""
    runnable, missing = [], {}
    for impl_name in spec["impls"] or impls.names():
        for cell in spec["cells"]:
            for mode in spec["modes"]:
                case_id = f"{impl_name}/{cell}/{mode}"
                if impl_name not in impls.names():
                    missing[case_id] = "not registered"
                    continue
                impl = impls.get(impl_name)
                if not impl.supports(cell, "cpu", dtype):
                    missing[case_id] = f"{cell} on cpu in {dtype} unsupported"
                elif mode == "training" and not impl.trainable:
                    missing[case_id] = "no backward pass"
                else:
                    runnable.append((case_id, impl, cell, mode))
    return runnable, missing


def _call(torch, layer, x, mode):
    if mode == "inference":
        with torch.no_grad():
            layer(x)
    else:
        layer.zero_grad(set_to_none=True)
        y, _ = layer(x)
        y.sum().backward()


def _block(torch, layer, x, mode, calls, clock):
    """Seconds per call, averaged over `calls` calls."""
    start = clock()
    for _ in range(calls):
        _call(torch, layer, x, mode)
    return (clock() - start) / calls


def prepare(torch, impls, spec):
    """Build every case, make its first call (JIT compilation), size its timed block."""
    torch.set_num_threads(spec["threads"])
    dtype = getattr(torch, spec["dtype"])
    clock = CLOCKS[spec["clock"]]
    T, B, size = spec["shape"]
    runnable, missing = _cases(impls, spec, dtype)
    prepared = []
    for case_id, impl, cell, mode in runnable:
        torch.manual_seed(0)
        layer = impl.build(cell, input_size=size, hidden_size=size, device="cpu", dtype=dtype)
        x = torch.randn(T, B, size, dtype=dtype)
        _call(torch, layer, x, mode)
        calls = 1
        while _block(torch, layer, x, mode, calls, clock) * calls < spec["block_seconds"]:
            calls *= 2
        prepared.append((case_id, layer, x, mode, calls))
    return prepared, missing, clock


def _reply(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def sample(torch, impls, spec):
    """One forked child's life: prepare, then one block of every case per "block" command."""
    prepared, missing, clock = prepare(torch, impls, spec)
    _reply({"impls_file": impls.__file__, "missing": missing})
    while sys.stdin.readline().strip() == "block":
        _reply({case_id: _block(torch, layer, x, mode, calls, clock)
                for case_id, layer, x, mode, calls in prepared})
    _reply({"done": True})


def serve(threads):
    """Fork a child per spec line on stdin; the child answers the gate directly."""
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))  # before anything imports numba
    import torch

    import impls

    # readline, not iteration: nothing may be read ahead that belongs to the child.
    while line := sys.stdin.readline():
        pid = os.fork()
        if pid == 0:
            try:
                sample(torch, impls, json.loads(line))
            except BaseException:
                _reply({"error": traceback.format_exc()})
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:  # killed before it could answer (a crash in native code)
            _reply({"error": f"the measuring process died, wait status {status}"})


if __name__ == "__main__":
    serve(int(sys.argv[1]))

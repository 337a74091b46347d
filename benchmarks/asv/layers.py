"""Speed and memory of one layer call, per implementation x cell x shape x device.

Every registered implementation is measured, so one that lands later (or a user's own) joins
the history without an edit here. A combination the commit cannot run (implementation not
registered yet, cell or dtype unsupported, no backward pass, no GPU) raises
NotImplementedError in setup, which asv records as n/a rather than as a number.

One thread everywhere: the history compares commits measured months apart on a shared
machine, and a single thread is the setting whose timings move least with the load.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # read once, when numba is first imported

import time  # noqa: E402

import torch  # noqa: E402

import impls  # noqa: E402

THREADS = 1
DTYPE = torch.float32
#: name shown on the dashboard -> (T, B, I = H)
SHAPES = {"T32-B8-H64": (32, 8, 64), "T64-B32-H128": (64, 32, 128)}
DEVICES = ["cpu", "cuda"]
#: A throughput figure is the median of this many timed blocks of at least BLOCK_SECONDS each.
BLOCKS = 5
BLOCK_SECONDS = 0.05


def _synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _check_runnable(impl_name, cell, device, training):
    """Raise NotImplementedError (asv: n/a) for a combination this commit cannot run."""
    if impl_name not in impls.names():
        raise NotImplementedError(f"{impl_name!r} is not registered at this commit")
    impl = impls.get(impl_name)
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA GPU is visible")
    if not impl.supports(cell, device, DTYPE):
        raise NotImplementedError(f"{impl_name} does not support {cell} on {device} in {DTYPE}")
    if training and not impl.trainable:
        raise NotImplementedError(f"{impl_name} has no backward pass")
    return impl


class _LayerCall:
    """Shared setup and measurements of a layer and its input; a subclass defines `step`."""

    params = (impls.names(), list(impls.CELLS), list(SHAPES), DEVICES)
    param_names = ["impl", "cell", "shape", "device"]
    # Explicit, so that editing this file does not discard the history; bump it when what
    # is measured changes.
    version = "1"
    repeat = (3, 10, 2.0)
    warmup_time = 0.05
    timeout = 120
    training = False

    def setup(self, impl_name, cell, shape, device):
        impl = _check_runnable(impl_name, cell, device, self.training)
        torch.set_num_threads(THREADS)
        torch.manual_seed(0)
        T, B, size = SHAPES[shape]
        self.device = device
        self.tokens = T * B
        self.layer = impl.build(cell, input_size=size, hidden_size=size, device=device,
                                dtype=DTYPE)
        self.x = torch.randn(T, B, size, device=device, dtype=DTYPE)
        self.step()  # the first call compiles (TorchScript, numba): keep it out of the timings

    def time_call(self, *_):
        self.step()

    def peakmem_call(self, *_):
        self.step()

    def track_tokens_per_second(self, *_):
        """Throughput, comparable across shapes: time-steps x batch rows per second."""
        calls = 1
        while True:
            start = time.perf_counter()
            for _ in range(calls):
                self.step()
            if time.perf_counter() - start >= BLOCK_SECONDS:
                break
            calls *= 2
        blocks = []
        for _ in range(BLOCKS):
            start = time.perf_counter()
            for _ in range(calls):
                self.step()
            blocks.append((time.perf_counter() - start) / calls)
        return self.tokens / sorted(blocks)[BLOCKS // 2]

    track_tokens_per_second.unit = "tokens/s"


class Inference(_LayerCall):
    """Forward only, without autograd: serving."""

    def step(self):
        with torch.no_grad():
            self.layer(self.x)
        _synchronize(self.device)


class Training(_LayerCall):
    """Forward and backward through time, gradients into the parameters: one training step."""

    training = True

    def step(self):
        self.layer.zero_grad(set_to_none=True)
        y, _ = self.layer(self.x)
        y.sum().backward()
        _synchronize(self.device)


class FirstCall:
    """Build plus first forward in a fresh process: what JIT compilation costs a user."""

    params = (impls.names(), list(impls.CELLS), DEVICES)
    param_names = ["impl", "cell", "device"]
    version = "1"
    timeout = 300

    def setup(self, impl_name, cell, device):
        self.impl = _check_runnable(impl_name, cell, device, training=False)
        torch.set_num_threads(THREADS)

    def track_seconds(self, impl_name, cell, device):
        T, B, size = SHAPES["T32-B8-H64"]
        x = torch.randn(T, B, size, device=device, dtype=DTYPE)
        _synchronize(device)
        start = time.perf_counter()
        layer = self.impl.build(cell, input_size=size, hidden_size=size, device=device,
                                dtype=DTYPE)
        with torch.no_grad():
            layer(x)
        _synchronize(device)
        return time.perf_counter() - start

    track_seconds.unit = "seconds"

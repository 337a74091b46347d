"""Implementations for the harness's own tests, registered on import (as a user's --plugin).

Each is torch's own kernel (`torch-native`) with one thing changed in its forward: it logs
the call, raises, hangs (in Python or in numba's compiled code), crashes its process, holds
a known amount of extra memory, or returns NaN, a sequence one step short, or values
shifted by 0.5.
A measuring process knows only what it imports, so the tests pass this module as a plugin.
"""

import os
import signal
import time

import torch
from torch.nn.utils.rnn import PackedSequence

import impls

BALLAST_MIB = 48
#: Where "test-log-*" implementations log their calls, a line each: "<pid> <name> forward
#: <autograd on> <input requires grad>" and "<pid> <name> backward <output grad all ones>".
LOG_ENV = "RNNBENCH_TEST_LOG"


def _native(cell, input_size, hidden_size, **options):
    return impls.get("torch-native").build(cell, input_size, hidden_size, **options)


def _with(call_instead):
    """A factory of torch-native layers whose call is `call_instead(the call, layer)`."""
    def factory(cell, input_size, hidden_size, **options):
        layer = _native(cell, input_size, hidden_size, **options)
        layer.forward = call_instead(layer.forward, layer)
        return layer
    return factory


def _ballast(call, layer):
    def heavy(*args):
        extra = torch.ones(BALLAST_MIB * 2 ** 20 // 4)  # written, so resident
        out = call(*args)
        del extra
        return out
    return heavy


def _raises(call, layer):
    def broken(*args):
        raise RuntimeError("broken kernel")
    return broken


def _killed(call, layer):
    def killed(*args):
        os.kill(os.getpid(), signal.SIGKILL)
    return killed


def _segfault(call, layer):
    def segfault(*args):
        os.kill(os.getpid(), signal.SIGSEGV)
    return segfault


def _nan(call, layer):
    def nan(*args):
        y, *rest = call(*args)
        return (y * float("nan"), *rest)
    return nan


def _short(call, layer):
    def short(*args):
        y, *rest = call(*args)
        return (y[:-1], *rest)
    return short


def _off(call, layer):
    def off(*args):
        y, *rest = call(*args)
        return (y + 0.5, *rest)
    return off


def _spins(call, layer):
    """Loops forever inside numba's compiled code, where no Python signal handler runs."""
    from numba import njit

    @njit(cache=False)
    def spin(n):
        total = 0
        while total != -1:  # a loop the compiler cannot prove endless, so cannot drop
            total += n
        return total

    def spins(*args):
        spin(1)
        raise AssertionError("the spin ended")
    return spins


def _hangs(call, layer):
    def hangs(*args):
        time.sleep(600)
    return hangs


def _log(line: str) -> None:
    with open(os.environ[LOG_ENV], "a") as f:
        f.write(f"{os.getpid()} {line}\n")


def _logged(name):
    """Log each forward (autograd on? input requires grad?) and the gradient the output gets
    in the backward (all ones, as from y.sum().backward(), or not)."""
    def wrap(call, layer):
        def logged(x, *state):
            rows = x[0] if isinstance(x, PackedSequence) else x
            _log(f"{name} forward {int(torch.is_grad_enabled())} {int(rows.requires_grad)}")
            out, *rest = call(x, *state)
            y = out[0] if isinstance(out, PackedSequence) else out
            if y.requires_grad:
                y.register_hook(lambda g: _log(f"{name} backward "
                                               f"{int(bool((g == 1).all()))}"))
            return (out, *rest)
        return logged
    return wrap


NAMES = []


def register_all() -> None:
    """Register every test implementation (importing this module does it once)."""
    NAMES.clear()
    for name, wrap in (("ballast", _ballast), ("raises", _raises), ("killed", _killed),
                       ("segfault", _segfault), ("hangs", _hangs), ("spins", _spins),
                       ("nan", _nan), ("short", _short), ("off", _off),
                       *((f"log-{k}", _logged(f"test-log-{k}")) for k in "abc")):
        _register("test-" + name, _with(wrap), frozenset(impls.CELLS), torch.float32, True)
    _register("test-float64", _native, frozenset(impls.CELLS), torch.float64, True)
    _register("test-forward-only", _native, frozenset({"lstm"}), torch.float32, False)


def _register(name, factory, cells, dtype, trainable) -> None:
    impls.register(impls.Implementation(
        name=name, factory=factory, cells=cells, devices=frozenset({"cpu"}),
        dtypes=frozenset({dtype}), trainable=trainable), replace=True)
    NAMES.append(name)


def unregister_all() -> None:
    """Take them out again, so that tests iterating over the registry never meet them."""
    for name in NAMES:
        if name in impls.names():
            impls.unregister(name)


register_all()

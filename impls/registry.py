"""The registry: every implementation is a named factory of drop-in recurrent layers.

The benchmark talks to implementations only through this module, so a user's own kernel
plugs in with one `register(...)` call and is measured exactly like the built-in ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from impls.layer import CELLS, check_options

#: Floating dtypes an implementation may declare.
FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


@dataclass(frozen=True)
class Implementation:
    """One way of computing a recurrent layer, and what it can do.

    `factory(cell, input_size, hidden_size, *, device, dtype, num_layers, bias, batch_first,
    dropout, bidirectional, proj_size)` returns the layer (a `RecurrentLayer` subclass takes
    exactly these); it may also be given as ``"module:attribute"`` so that heavy imports
    (numba) happen on first build only. The options arrive checked and complete.
    """

    name: str
    factory: Callable[..., torch.nn.Module] | str
    cells: frozenset[str]
    devices: frozenset[str]
    dtypes: frozenset[torch.dtype]
    trainable: bool
    description: str = ""
    _loaded: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.cells) - set(CELLS)
        if unknown:
            raise ValueError(
                f"implementation {self.name!r}: unknown cells {sorted(unknown)}; "
                f"expected a subset of {sorted(CELLS)}"
            )
        unknown_dev = set(self.devices) - {"cpu", "cuda"}
        if unknown_dev:
            raise ValueError(
                f"implementation {self.name!r}: unknown devices {sorted(unknown_dev)}; "
                "expected a subset of ['cpu', 'cuda']"
            )

    def supports(self, cell: str, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> bool:
        """Whether `build` would accept this combination (CUDA also needs a visible GPU)."""
        dev = torch.device(device).type
        return (
            cell in self.cells
            and dev in self.devices
            and dtype in self.dtypes
            and (dev != "cuda" or torch.cuda.is_available())
        )

    def build(self, cell: str, input_size: int, hidden_size: int, *,
              device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              **options) -> torch.nn.Module:
        """A drop-in for `nn.LSTM`/`nn.GRU`/`nn.RNN(nonlinearity=...)` with nn's options
        (`num_layers`, `bias`, `batch_first`, `dropout`, `bidirectional`, `proj_size`)."""
        if cell not in self.cells:
            raise ValueError(
                f"{self.name}: argument 'cell' must be one of {sorted(self.cells)}, got {cell!r}"
            )
        options = check_options(self.name, cell, input_size, hidden_size, options, warn=False)
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"{self.name}: argument 'device' must name a device such as 'cpu' or 'cuda', "
                f"got {device!r} ({exc})"
            ) from None
        if dev.type not in self.devices:
            raise ValueError(
                f"{self.name}: argument 'device' must be one of {sorted(self.devices)}, "
                f"got {str(dev)!r}"
            )
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"{self.name}: argument 'device' is {str(dev)!r} but no CUDA GPU is visible"
            )
        if dtype not in self.dtypes:
            raise TypeError(
                f"{self.name}: argument 'dtype' must be one of "
                f"{sorted(str(d) for d in self.dtypes)}, got {dtype}"
            )
        return self._factory()(cell, input_size, hidden_size, device=dev, dtype=dtype, **options)

    def _factory(self) -> Callable[..., torch.nn.Module]:
        if callable(self.factory):
            return self.factory
        if "fn" not in self._loaded:
            module, _, attr = self.factory.partition(":")
            self._loaded["fn"] = getattr(importlib.import_module(module), attr)
        return self._loaded["fn"]


_REGISTRY: dict[str, Implementation] = {}


def register(impl: Implementation, *, replace: bool = False) -> Implementation:
    """Add an implementation; a name already taken is an error unless `replace`."""
    if impl.name in _REGISTRY and not replace:
        raise ValueError(f"an implementation named {impl.name!r} is already registered")
    _REGISTRY[impl.name] = impl
    return impl


def unregister(name: str) -> None:
    """Remove an implementation (tests register throwaway ones)."""
    get(name)
    del _REGISTRY[name]


def names() -> list[str]:
    """Registered implementation names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Implementation:
    """The implementation called `name`; an unknown name lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown implementation {name!r}; known implementations: {', '.join(names())}"
        ) from None

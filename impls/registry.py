"""The registry: every implementation is a named factory of drop-in recurrent layers.

The benchmark talks to implementations only through this module, so a user's own kernel
plugs in with one `register(...)` call and is measured exactly like the built-in ones.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from impls.layer import CELLS, OPTIONS, check_options

#: What an implementation may declare it cannot express: nn's options, and a PackedSequence.
EXPRESSIBLE = frozenset(OPTIONS) | {"packed_input"}


class Unavailable(RuntimeError):
    """The implementation's packages are not installed here."""

#: Floating dtypes an implementation may declare.
FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


@dataclass(frozen=True)
class Implementation:
    """One way of computing a recurrent layer, and what it can do.

    `factory(cell, input_size, hidden_size, *, device, dtype, num_layers, bias, batch_first,
    dropout, bidirectional, proj_size)` returns the layer (a `RecurrentLayer` subclass takes
    exactly these); it may also be given as ``"module:attribute"`` so that heavy imports
    (numba) happen on first build only. The options arrive checked and complete.

    `requires`: modules it needs that the project does not install by default (its
    `available` is False without them, and reports and tests say so instead of failing).
    `lacks`: what its backend cannot express (names from `EXPRESSIBLE`); asking for it is
    an error naming the option, and reports show N/A.
    """

    name: str
    factory: Callable[..., torch.nn.Module] | str
    cells: frozenset[str]
    devices: frozenset[str]
    dtypes: frozenset[torch.dtype]
    trainable: bool
    description: str = ""
    requires: tuple[str, ...] = ()
    lacks: frozenset[str] = frozenset()
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
        unknown_lacks = set(self.lacks) - EXPRESSIBLE
        if unknown_lacks:
            raise ValueError(
                f"implementation {self.name!r}: unknown lacks {sorted(unknown_lacks)}; "
                f"expected a subset of {sorted(EXPRESSIBLE)}"
            )

    @property
    def unavailable_reason(self) -> str | None:
        """Why this implementation cannot run here (a package missing), or None."""
        if "missing" not in self._loaded:
            self._loaded["missing"] = [m for m in self.requires
                                       if importlib.util.find_spec(m) is None]
        missing = self._loaded["missing"]
        if missing:
            return (f"not installed: {', '.join(missing)} "
                    "(pip install -e '.[peers]' installs every peer)")
        return None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    def lacked(self, **options) -> list[str]:
        """The options among these (nn's, or packed_input=True) this backend cannot express."""
        return sorted(k for k, v in options.items()
                      if k in self.lacks and v != OPTIONS.get(k, False))

    def supports(self, cell: str, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> bool:
        """Whether `build` would accept this combination (CUDA also needs a visible GPU)."""
        dev = torch.device(device).type
        return (
            cell in self.cells
            and dev in self.devices
            and dtype in self.dtypes
            and (dev != "cuda" or torch.cuda.is_available())
            and self.available
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
        if self.unavailable_reason:
            raise Unavailable(f"{self.name}: {self.unavailable_reason}")
        options = check_options(self.name, cell, input_size, hidden_size, options, warn=False)
        lacked = self.lacked(**options)
        if lacked:
            raise ValueError(f"{self.name}: argument {lacked[0]!r} cannot be expressed by this "
                             f"backend (declared N/A), got {options[lacked[0]]!r}")
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

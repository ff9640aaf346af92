"""Decoder backends by name. Only the reference is built in this version; the registry is where
the C++ and Triton backends plug in, each imported only when asked for."""
from __future__ import annotations

from typing import Callable

from . import reference

BACKENDS: dict[str, Callable[[bytes], "reference.Decoded"]] = {"reference": reference.decode}


def available_backends() -> list[str]:
    return list(BACKENDS)


def default_backend() -> str:
    return available_backends()[0]


def get_backend(name: str) -> Callable[[bytes], "reference.Decoded"]:
    if name == "auto":
        name = default_backend()
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown or unavailable backend {name!r}; available: "
                         f"{', '.join(available_backends())}") from None

"""Pipeline steps: plain functions, chained by the names of their parameters and outputs."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload


@dataclass(frozen=True)
class Step:
    """A function run as a pipeline step.

    Its parameters are filled from the outputs of earlier steps (by name) or from the run's
    params; its return value is published under ``outputs`` (the step name by default, or
    several names for a tuple).
    """

    fn: Callable[..., Any]
    name: str
    outputs: tuple[str, ...]
    cache: bool = True
    parameters: tuple[str, ...] = field(default=())
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def code_hash(self) -> str:
        """sha256 of the step's source code (a change of code invalidates its cache)."""
        try:
            source = inspect.getsource(self.fn)
        except (OSError, TypeError):
            source = self.fn.__code__.co_code.hex()
        return hashlib.sha256(source.encode()).hexdigest()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


@overload
def step(fn: Callable[..., Any]) -> Step: ...


@overload
def step(
    *, name: str | None = None, outputs: tuple[str, ...] | None = None, cache: bool = True
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    outputs: tuple[str, ...] | None = None,
    cache: bool = True,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Declare a pipeline step: ``@step`` or ``@step(outputs=("X", "y"), cache=False)``."""

    def wrap(func: Callable[..., Any]) -> Step:
        signature = inspect.signature(func)
        defaults = {
            k: p.default
            for k, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        step_name = name or func.__name__
        return Step(
            fn=func,
            name=step_name,
            outputs=outputs or (step_name,),
            cache=cache,
            parameters=tuple(signature.parameters),
            defaults=defaults,
        )

    return wrap(fn) if fn is not None else wrap

"""Pipeline steps: plain functions, chained by the names of their parameters and outputs."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

from modelfleet.errors import ModelfleetError


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
        """sha256 of the step's code (a change of code invalidates its cache).

        The compiled code with its constants (and the source when Python can read it, else
        the defaults); a builtin is known by its qualified name.
        """
        return hashlib.sha256(_fingerprint(self.fn, self.name).encode()).hexdigest()

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
        step_name = name or getattr(func, "__name__", None)
        if not isinstance(step_name, str):
            raise ModelfleetError(
                f"step {func!r} has no name", hint="name it: step(name='...')(fn)"
            )
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            raise ModelfleetError(
                f"step {step_name!r}: cannot read the parameters of {func!r}",
                hint="wrap it in a def whose parameters name the inputs it takes",
            ) from exc
        defaults = {
            k: p.default
            for k, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        _fingerprint(func, step_name)  # a callable the cache cannot follow fails here, early
        return Step(
            fn=func,
            name=step_name,
            outputs=outputs or (step_name,),
            cache=cache,
            parameters=tuple(signature.parameters),
            defaults=defaults,
        )

    return wrap(fn) if fn is not None else wrap


def _fingerprint(fn: Any, name: str) -> str:
    """Text that changes whenever what ``fn`` computes may have changed."""
    if isinstance(fn, functools.partial):
        bound = json.dumps([_constant(fn.args), _constant(sorted(fn.keywords.items()))])
        return f"partial({_fingerprint(fn.func, name)}, {bound})"
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if isinstance(code, types.CodeType):
        # The compiled code with everything co_code leaves out (constants, names), or
        # `x * 3` and `x * 10` would share a cache entry; beside it the source when there
        # is one, which alone is not enough: two lambdas on one line share their source.
        try:
            return json.dumps({"source": inspect.getsource(fn), "code": _code(code)})
        except (OSError, TypeError):  # no source: exec, a REPL, a .pyc alone
            function = getattr(fn, "__func__", fn)
            defaults = [function.__defaults__, function.__kwdefaults__]
            return json.dumps({"code": _code(code), "defaults": _constant(defaults)})
    return _builtin(fn, name)


def _code(code: types.CodeType) -> list[Any]:
    return [
        code.co_code.hex(),
        [_constant(c) for c in code.co_consts],
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        [code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags],
    ]


def _constant(value: Any) -> Any:
    if isinstance(value, types.CodeType):  # nested functions, lambdas, comprehensions
        return _code(value)
    if isinstance(value, tuple | list):
        return [type(value).__name__, [_constant(v) for v in value]]
    if isinstance(value, frozenset | set | dict):
        # repr order of a set of strings changes with PYTHONHASHSEED: sort what identifies it
        items = value.items() if isinstance(value, dict) else value
        return [type(value).__name__, sorted(json.dumps(_constant(v)) for v in items)]
    return [type(value).__name__, repr(value)]


def _builtin(fn: Any, name: str) -> str:
    """A function written in C is known by its module and qualified name."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, type | types.ModuleType):
        raise ModelfleetError(
            f"step {name!r} is a method bound to a {type(owner).__name__} object, whose state "
            "the step cache cannot see",
            hint="wrap the call in a def that takes what it needs as parameters",
        )
    qualname = getattr(fn, "__qualname__", None)
    home = owner if owner is not None else getattr(fn, "__objclass__", None)
    module = getattr(fn, "__module__", None) or getattr(home, "__module__", None)
    if module is None and isinstance(home, types.ModuleType):
        module = home.__name__
    if not (isinstance(qualname, str) and isinstance(module, str)) or not callable(fn):
        raise ModelfleetError(
            f"step {name!r} is a {type(fn).__name__} object, not a function, so the step "
            "cache cannot tell when its code changes",
            hint="make the step a def (it may call the object)",
        )
    return f"builtin {module}.{qualname}"

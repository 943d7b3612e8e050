"""Convert at the boundary, once: public methods validate their arguments against their
annotations, and errors of pydantic, torch and transformers that would reach a caller become
:class:`~personalizer.errors.PersonalizerError` subclasses naming what was wrong.

``@public_api`` on a class wraps every public method (and ``__init__``):

* arguments are checked with pydantic's ``validate_call`` (lax mode: ``1`` is a fine float,
  ``"1"`` is not a string id's problem but ``3`` is); a bad one is an
  :class:`~personalizer.errors.InvalidInput` that names the argument, the method and what it
  expects (an :class:`~personalizer.errors.InvalidUserId` for a parameter annotated
  ``UserId``, which takes no bytes). A parameter annotated as a number (``int``, ``float``,
  optional or constrained) refuses ``True`` and ``False``, which lax mode would read as 1
  and 0. Parameters annotated with :data:`Unchecked` are left to the method itself;
* a pydantic ``ValidationError`` raised inside (an options model, say) is an ``InvalidInput``;
* an exception raised from inside torch or transformers is a
  :class:`~personalizer.errors.BackendError` (the original is chained as its cause);
* iterators, async iterators and coroutines returned are wrapped the same way.

Our own exceptions pass through untouched; anything else is a bug and is not hidden.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import ConfigDict, SkipValidation, ValidationError, validate_call

from .errors import BackendError, InvalidInput, InvalidUserId, PersonalizerError

__all__ = ["Unchecked", "convert", "public_api"]

T = TypeVar("T")

Unchecked = SkipValidation  # ``x: Unchecked[Foo]``: the method validates x itself

_FOREIGN = ("/torch/", "/transformers/", "/tokenizers/", "/safetensors/")


def _message(exc: ValidationError, where: str, names: list[str] | None = None) -> str:
    err = exc.errors()[0]
    parts = list(err["loc"])
    if parts and isinstance(parts[0], int) and names and parts[0] < len(names):
        parts[0] = names[parts[0]]  # a positional argument: its parameter's name
    loc = ".".join(str(p) for p in parts) or "value"
    got = err.get("input")
    shown = repr(got) if len(repr(got)) <= 60 else f"{type(got).__name__} value"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: argument {loc!r}: {err['msg']}, got {shown}{more}"


def _from_foreign_library(exc: BaseException) -> bool:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and any(part in last.replace("\\", "/") for part in _FOREIGN)


def convert(exc: BaseException, where: str,
            names: list[str] | None = None) -> BaseException:
    """The exception a caller should see for ``exc`` raised inside ``where`` (``names``: the
    function's parameter names, to name positional arguments)."""
    if isinstance(exc, PersonalizerError):
        return exc
    if isinstance(exc, ValidationError):
        if exc.errors()[0]["type"] == "invalid_user_id":  # a UserId argument (models.py)
            return InvalidUserId(_message(exc, where, names))
        return InvalidInput(_message(exc, where, names))
    if isinstance(exc, Exception) and _from_foreign_library(exc):
        return BackendError(f"{where} failed inside the model library: "
                            f"{type(exc).__name__}: {exc}")
    return exc


def _raise(exc: BaseException, where: str, names: list[str] | None = None) -> None:
    new = convert(exc, where, names)
    if new is exc:
        raise exc
    raise new from exc


def _is_number(hint: Any) -> bool:
    """Whether ``hint`` asks for a number and takes no bool: ``int`` or ``float``, maybe
    ``Annotated`` or in a union, with no ``bool``, ``Any`` or :data:`Unchecked` about it."""
    parts, number = [hint], False
    while parts:
        part = parts.pop()
        origin = get_origin(part)
        if origin is Annotated:
            base, *meta = get_args(part)
            if any(isinstance(m, SkipValidation) for m in meta):
                return False
            parts.append(base)
        elif origin in (Union, types.UnionType):
            parts.extend(get_args(part))
        elif origin is Literal:
            if any(isinstance(v, bool) for v in get_args(part)):
                return False
        elif part in (bool, Any, object):
            return False
        elif part in (int, float):
            number = True
    return number


def _numbers(fn: Callable[..., Any]) -> frozenset[str]:
    """The parameters of ``fn`` annotated as numbers (see :func:`_is_number`)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    return frozenset(name for name, hint in hints.items()
                     if name != "return" and _is_number(hint))


def _refuse_bools(sig: inspect.Signature, numbers: frozenset[str], args: tuple[Any, ...],
                  kwargs: dict[str, Any], where: str) -> None:
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return  # the wrong arguments: validate_call says which
    for name, value in bound.arguments.items():
        if name in numbers and isinstance(value, bool):
            raise InvalidInput(f"{where}: argument {name!r}: Input should be a number, not "
                               f"True or False, got {value!r}")


def _iterator(it: Iterator[T], where: str) -> Iterator[T]:
    try:
        yield from it
    except Exception as exc:  # noqa: BLE001 - converted, never swallowed
        _raise(exc, where)


async def _aiterator(it: AsyncIterator[T], where: str) -> AsyncIterator[T]:
    try:
        async for item in it:
            yield item
    except Exception as exc:  # noqa: BLE001
        _raise(exc, where)
    finally:
        close = getattr(it, "aclose", None)
        if close is not None:
            await close()


def _guard(fn: Callable[..., Any], where: str) -> Callable[..., Any]:
    cell: list[tuple[Callable[..., Any], frozenset[str]]] = []
    sig = inspect.signature(fn)
    names = list(sig.parameters)

    def checked(*args: Any, **kwargs: Any) -> Any:
        if not cell:  # built on first use: annotations may name the class being defined
            cell.append((validate_call(config=ConfigDict(arbitrary_types_allowed=True))(fn),
                         _numbers(fn)))
        call, numbers = cell[0]
        if numbers and any(isinstance(v, bool) for v in (*args, *kwargs.values())):
            _refuse_bools(sig, numbers, args, kwargs, where)
        return call(*args, **kwargs)

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await checked(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                _raise(exc, where, names)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            out = checked(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            _raise(exc, where, names)
        if isinstance(out, Iterator) and not isinstance(out, (str, bytes, list, tuple, dict)):
            return _iterator(out, where)
        if isinstance(out, AsyncIterator):
            return _aiterator(out, where)
        return out

    return run


def public_api(cls: type[T]) -> type[T]:
    """Guard every public method of ``cls`` (and ``__init__``) at the boundary, those it
    inherits from this package's own base classes too (named as ``cls``'s)."""
    inherited = {name: value for base in reversed(cls.__mro__[1:-1])
                 if base.__module__.startswith("personalizer.")
                 for name, value in vars(base).items()
                 if name not in vars(cls) and not hasattr(value, "__wrapped__")}  # unguarded
    for name, value in [*inherited.items(), *vars(cls).items()]:
        if name.startswith("_") and name != "__init__":
            continue
        where = f"{cls.__name__}.{name}" if name != "__init__" else cls.__name__
        if isinstance(value, classmethod):
            setattr(cls, name, classmethod(_guard(value.__func__, where)))
        elif isinstance(value, staticmethod):
            setattr(cls, name, staticmethod(_guard(value.__func__, where)))
        elif inspect.isfunction(value):
            setattr(cls, name, _guard(value, where))
    return cls


"""`@action`: turns a function (or a method) into a step with a retry policy and a timeout."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import warnings
from collections.abc import Callable
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from ._errors import InvalidStep
from ._identity import binds_arguments, default_step_name
from ._identity import code_version as _code_version
from .retry import AttemptGuard, RetryPolicy, as_policy

TimeoutMode = Literal["thread", "process"]
_CONTEXT_PARAMS = ("initial_context", "previous_context", "checkpoint", "item")


_UNSET: Any = object()


class Context:
    """The value handed to a step: `initial_context` or the previous step's output, as `.value`.

    `.storage` (and `Context(storage=...)`) is the deprecated name of `.value`.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any = None, *, storage: Any = _UNSET) -> None:
        if storage is not _UNSET:
            if value is not None:
                raise TypeError("Context() takes value or storage (deprecated), not both")
            _storage_deprecated(stacklevel=3)
            value = storage
        self.value = value

    @property
    def storage(self) -> Any:
        """Deprecated: `.value`."""
        _storage_deprecated(stacklevel=3)
        return self.value

    @storage.setter
    def storage(self, value: Any) -> None:
        _storage_deprecated(stacklevel=3)
        self.value = value

    def __repr__(self) -> str:
        return f"Context(value={self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Context) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # By value; a Context pickled before `.value` (slot state `storage`) still loads,
        # through the `storage` setter.
        return (Context, (self.value,))


def _storage_deprecated(stacklevel: int) -> None:
    # Named at the caller's line: the default filters show it once per call site where
    # DeprecationWarnings are shown (code run as __main__, test runners, python -W default).
    warnings.warn(
        "Context.storage is deprecated: use Context.value (the same value); "
        "Context(storage=x) is Context(x) or Context(value=x)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def _accepted(func: Callable[..., Any], name: str) -> frozenset[str]:
    """The context parameters `func` takes; any other required parameter is an error."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError) as exc:
        raise InvalidStep(f"step {name!r} has no inspectable signature: {exc}") from exc
    accepted = set()
    for position, param in enumerate(params.values()):
        if position == 0 and param.name in ("self", "cls"):
            continue  # a method decorated in its class body; bound before it runs
        if param.name in _CONTEXT_PARAMS:
            accepted.add(param.name)
        elif param.kind is param.VAR_KEYWORD:
            accepted.update(("initial_context", "previous_context"))
        elif param.default is param.empty and param.kind not in (param.VAR_POSITIONAL,):
            raise InvalidStep(
                f"step {name!r} requires parameter {param.name!r}; steps may only take "
                f"{', '.join(_CONTEXT_PARAMS)} (give other parameters a default, or pass data "
                "through initial_context)"
            )
    return frozenset(accepted)


P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True, eq=False)
class Action(Generic[P, R]):
    """A step: a callable plus how to retry and time it out. Call it like the function: it
    keeps the function's parameters and return type."""

    func: Callable[P, R]
    name: str
    policy: RetryPolicy
    timeout: float | None = None
    timeout_mode: TimeoutMode = "thread"
    accepts: frozenset[str] = frozenset()
    guard: AttemptGuard | None = None
    is_async: bool = False
    #: called once when the step fails for good, with the error (a stage's rollback)
    on_failure: Callable[[BaseException], None] | None = None
    #: called to undo a completed step, with its output and the run's error (compensation)
    compensate: Callable[[Any, BaseException], None] | None = None
    #: called from another thread when the run is cancelled while this step runs
    on_cancel: Callable[[], None] | None = None
    #: the user's code version (`@action(version=...)`); None: a digest of the source
    version: str | None = None
    #: the function whose source is the step's code, when not `func` (a stage's `execute`)
    code: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        # the engine's fast path: a plain call, no guard, time limit, deadline or coroutine
        unbounded = self.guard is None and self.timeout is None and self.policy.deadline is None
        object.__setattr__(self, "plain", unbounded and not self.is_async)
        object.__setattr__(self, "plain_async", unbounded and self.is_async)
        object.__setattr__(self, "takes_item", "item" in self.accepts)
        code = self.code or self.func
        object.__setattr__(self, "binds", self.version is None and binds_arguments(code))
        # read now, as the step is declared (as its module is imported, for `@action`): a
        # process whose module file is edited later keeps the version of the code it runs
        object.__setattr__(self, "code_version", _code_version(code, self.version))

    #: set by `__post_init__` (see there)
    plain: bool = dataclasses.field(init=False, repr=False, default=False)
    #: the same for a coroutine function (set by `__post_init__`)
    plain_async: bool = dataclasses.field(init=False, repr=False, default=False)
    #: it takes a map's `item` (set by `__post_init__`)
    takes_item: bool = dataclasses.field(init=False, repr=False, default=False)
    #: its code is a `functools.partial` binding arguments, which count in its code version
    #: as they are at each start (`_identity.with_bound_arguments`; set by `__post_init__`)
    binds: bool = dataclasses.field(init=False, repr=False, default=False)
    #: what the step's checkpoints record as its code, as far as its definition decides it:
    #: `version`, else its source digest (set by `__post_init__`, as the step is declared; it
    #: depends on its frozen fields only; bound arguments are added at each start, see `binds`)
    code_version: str = dataclasses.field(init=False, repr=False, default="")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> AnyAction:
        if instance is None:
            return self
        bound = self.func.__get__(instance, owner)
        return dataclasses.replace(self, func=bound)

    def __reduce__(self) -> tuple[Any, ...]:
        # Steps travel to worker processes (parallel mode, process timeouts) by reference: a
        # module-level @action is its module attribute, a method is looked up on its instance.
        func = self.func
        bound_to = getattr(func, "__self__", None)
        if bound_to is not None and not isinstance(bound_to, types.ModuleType):
            return (_rebind, (bound_to, func.__name__, self.name))
        module, qualname = func.__module__, func.__qualname__
        try:
            if _import_action(module, qualname) is self:
                return (_import_action, (module, qualname))
        except (ImportError, AttributeError):
            pass
        return (
            make_action,
            (func, self.policy, self.timeout, self.timeout_mode, self.name, self.version),
        )


def _import_action(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


#: A step whatever its signature (what the engine handles).
AnyAction = Action[..., Any]


def _rebind(instance: object, attr: str, name: str) -> AnyAction:
    bound: AnyAction = getattr(instance, attr)
    return dataclasses.replace(bound, name=name)


def make_action(
    func: Callable[P, R],
    retry: RetryPolicy | int | None,
    timeout: float | None,
    timeout_mode: str,
    name: str | None,
    version: str | None = None,
) -> Action[P, R]:
    if not callable(func):
        raise InvalidStep(f"@action needs a function or method, got {type(func).__name__}")
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):  # NaN too
        raise InvalidStep(f"timeout must be a positive number of seconds, got {timeout!r}")
    if timeout_mode not in ("thread", "process"):
        raise InvalidStep(f"timeout_mode must be 'thread' or 'process', got {timeout_mode!r}")
    if version is not None and (not isinstance(version, str) or not version):
        raise InvalidStep(f"version must be a non-empty string, got {version!r}")
    step_name = name or default_step_name(func)
    policy = as_policy(retry)
    return Action(
        func=func,
        name=step_name,
        policy=policy,
        timeout=timeout,
        timeout_mode=timeout_mode,  # type: ignore[arg-type]
        accepts=_accepted(func, step_name),
        guard=policy if isinstance(policy, AttemptGuard) else None,
        is_async=inspect.iscoroutinefunction(func),
        version=version,
    )


@overload
def action(func: Callable[P, R], /) -> Action[P, R]: ...


@overload
def action(
    *,
    retry: RetryPolicy | int | None = None,
    timeout: float | None = None,
    timeout_mode: TimeoutMode = "thread",
    name: str | None = None,
    version: str | None = None,
) -> Callable[[Callable[P, R]], Action[P, R]]: ...


def action(
    func: Callable[P, R] | None = None,
    /,
    *,
    retry: RetryPolicy | int | None = None,
    timeout: float | None = None,
    timeout_mode: TimeoutMode = "thread",
    name: str | None = None,
    version: str | None = None,
) -> Action[P, R] | Callable[[Callable[P, R]], Action[P, R]]:
    """Declare a step, bare (`@action`) or with options (`@action(retry=3, timeout=10)`).

    `retry` is a number of attempts in total or a `RetryPolicy`. `timeout` bounds each attempt:
    in `"thread"` mode the attempt runs in a daemon thread that is abandoned (it cannot be
    killed) when it overruns; in `"process"` mode it runs in a child process that is killed.
    `version` names the step's code version: a checkpoint written by another version is not
    restored. Without it, the step's source (as Python parses it) is its version.
    """
    if func is not None:
        return make_action(func, retry, timeout, timeout_mode, name, version)

    def decorate(f: Callable[P, R]) -> Action[P, R]:
        return make_action(f, retry, timeout, timeout_mode, name, version)

    return decorate


def as_action(obj: Any) -> AnyAction:
    """The step for something given to `Workflow.add`: an Action or a plain callable."""
    if isinstance(obj, Action):
        return obj
    if callable(obj) and not isinstance(obj, type):
        return make_action(obj, None, None, "thread", None)
    raise InvalidStep(
        f"cannot add {obj!r} as a step: give a function, an @action, or a class or object "
        "whose methods are decorated with @action"
    )


def class_steps(obj: Any) -> list[AnyAction]:
    """The @action methods of a class (instantiated with no arguments) or of an object, in
    definition order: base classes first, then each class's namespace order."""
    instance = obj() if isinstance(obj, type) else obj
    seen: dict[str, AnyAction] = {}
    for klass in reversed(type(instance).__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, Action):
                seen.pop(attr, None)  # an override takes the overriding class's position
                seen[attr] = value
    steps = []
    for attr, declared in seen.items():
        bound: AnyAction = getattr(instance, attr)
        if bound.name == declared.func.__qualname__:
            bound = dataclasses.replace(bound, name=f"{type(instance).__name__}.{attr}")
        steps.append(bound)
    return steps

"""What a checkpoint is valid for: step names, code versions, input digests, what to restore.

A completed step's checkpoint (keyed by the step's name) records what it is valid for:
- the step's code version (`@action(version=...)`, else a digest of its source),
- the digest of its own `initial_context`,
- a salt that `rerun_from` renews for the steps it supersedes,
- the upstream token: the checksum of the output it received as `previous_context`, or that it
  received none, or that its upstream had failed.

On start, a step is restored only if all four equal what they are now and its upstream is
restored too (its checksum is the token). So the first step that changed or has no checkpoint
runs, and so does every step that received its output, directly or through others; nothing
stale is restored.
Everything here is a pure function of its arguments, so tests call it directly.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import linecache
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

from . import _codec
from ._errors import CheckpointError, InputChanged, WorkflowDefinitionChanged

OnChange = Literal["rerun", "raise", "reuse"]
ON_CHANGE: tuple[OnChange, ...] = ("rerun", "raise", "reuse")

#: The upstream token of a step that receives no previous output (first of its chain, or a step
#: that does not take `previous_context`).
NO_UPSTREAM = "none"
#: The upstream token of a step whose upstream did not complete (it ran after a failure).
UPSTREAM_FAILED = "failed"


def _hash(*parts: str) -> str:
    # blake2b: as collision-resistant as the job needs, and cheaper than sha256 per commit
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


# --- step names ---------------------------------------------------------------------------------


def default_step_name(func: Callable[..., Any]) -> str:
    """A step's default name, the same in every process (never a memory address).

    Functions and methods go by their qualified name, `functools.partial` by the function it
    wraps, callable instances by their class. Duplicates are refused by `Workflow.add`.
    """
    while isinstance(func, functools.partial):
        func = func.func
    qualname = getattr(func, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname
    return type(func).__qualname__


# --- code versions ------------------------------------------------------------------------------


def _code_of(func: Any) -> Any:
    """The function whose source defines what a callable does."""
    while isinstance(func, functools.partial):
        func = func.func
    func = getattr(func, "__func__", func)  # bound method
    if not inspect.isfunction(func) and not inspect.isbuiltin(func) and callable(func):
        call = type(func).__call__  # a callable instance: its class's code
        func = getattr(call, "__func__", call)
    return func


def _last_line(code: types.CodeType) -> int:
    """The last source line a code object (or one nested in it) has an instruction on."""
    last = max((end for _, end, _, _ in code.co_positions() if end is not None), default=0)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def _function_tree(func: Any) -> ast.AST:
    """The parsed source of a function: the lines its code object spans, read from the file
    (without `inspect.getsource`, whose tokenizer costs milliseconds in a new process); a
    lambda is found in its whole file by the positions of its code (it may share its lines with
    other code, or span lines that do not parse alone); what neither finds goes through
    `inspect`."""
    func = _unwrapped(func)  # as `inspect.getsource`: a wrapper's wrapped code
    code = getattr(func, "__code__", None)
    if isinstance(code, types.CodeType):
        # as `inspect` does: lines cached before the file changed (in a parent process that
        # forked this one, say) are dropped, never read against the new code's line numbers
        linecache.checkcache(code.co_filename)
        lines = linecache.getlines(code.co_filename, getattr(func, "__globals__", None))
        first, last = code.co_firstlineno, _last_line(code)
        if code.co_name == "<lambda>":
            found = _lambda_node(code, lines)
            if found is not None:
                return found
        elif lines and 0 < first <= last <= len(lines):
            # and the lines after it that are still inside the block (more indented than the
            # `def`, blank, or comments, at any indentation): statements that compile to
            # nothing, such as `else: pass`, dead code after a return, `x: int`
            indent = len(lines[first - 1]) - len(lines[first - 1].lstrip())
            while last < len(lines):
                line = lines[last]
                text = line.strip()
                if text and text[0] != "#" and len(line) - len(line.lstrip()) <= indent:
                    break
                last += 1
            with contextlib.suppress(SyntaxError, ValueError):
                return ast.parse(textwrap.dedent("".join(lines[first - 1 : last])))
    return ast.parse(textwrap.dedent(inspect.getsource(func)))


#: A lambda expression of a file: where its body starts and ends, and the expression.
_LambdaSpan = tuple[tuple[int, int], tuple[int, int], ast.Lambda]
#: Per file: the lines (as `linecache` holds them) and the lambdas parsed from them.
_FILE_LAMBDAS: dict[str, tuple[list[str], list[_LambdaSpan]]] = {}


def _lambdas_of(filename: str, lines: list[str]) -> list[_LambdaSpan]:
    """The lambda expressions of a file, parsed once for the lines `linecache` holds (the same
    list object until the file changes)."""
    cached = _FILE_LAMBDAS.get(filename)
    if cached is not None and cached[0] is lines:
        return cached[1]
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        found: list[_LambdaSpan] = []
    else:
        found = [
            ((node.body.lineno, node.body.col_offset), (end_line, end_col), node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Lambda)
            and (end_line := node.body.end_lineno) is not None
            and (end_col := node.body.end_col_offset) is not None
        ]
    _FILE_LAMBDAS[filename] = (lines, found)
    return found


def _lambda_node(code: types.CodeType, lines: list[str]) -> ast.Lambda | None:
    """The lambda expression a lambda's code was compiled from: the one in its file whose
    body spans every position of its code, the innermost if several do (None when the file
    does not parse, or when the code has no positions)."""
    spans = [
        (line, col, end_line, end_col)
        for line, end_line, col, end_col in code.co_positions()
        if line is not None and end_line is not None and col is not None and end_col is not None
        and (line, col) != (end_line, end_col)  # the zero-width entry and exit
    ]  # fmt: skip
    if not spans or not lines:
        return None
    start = min((line, col) for line, col, _, _ in spans)
    end = max((end_line, end_col) for _, _, end_line, end_col in spans)
    found: tuple[tuple[int, int], ast.Lambda] | None = None
    for body_start, body_end, node in _lambdas_of(code.co_filename, lines):
        if body_start <= start and end <= body_end and (found is None or body_start > found[0]):
            found = body_start, node  # a lambda inside the one found so far starts after it
    return found[1] if found is not None else None


@functools.lru_cache(maxsize=4096)
def _source_digest(func: Callable[..., Any]) -> str:
    """The digest of a function's code as Python parses it: comments, formatting, blank lines,
    docstrings and decorators do not count; its signature, defaults and body do, and so do the
    functions its closure holds (a decorator's wrapped function, say) unless they come from an
    installed package or the standard library. Without readable source (a deploy of `.pyc`
    files only, code built at run time), its compiled code counts instead."""
    digest = _own_digest(func)
    held = _closure_functions(func)
    return _hash(digest, *map(_own_digest, held)) if held else digest


def _own_digest(func: Callable[..., Any]) -> str:
    try:
        return tree_digest(_function_tree(func))
    except (OSError, TypeError, SyntaxError, ValueError):
        pass
    code = getattr(_unwrapped(func), "__code__", None)
    if isinstance(code, types.CodeType):
        return "code:" + _code_digest(code)
    # a builtin, or a callable with no code: only the name identifies it
    return "name:" + getattr(func, "__module__", "?") + ":" + default_step_name(func)


def _unwrapped(func: Any) -> Any:
    with contextlib.suppress(ValueError):
        return inspect.unwrap(func)
    return func


def _code_digest(code: types.CodeType) -> str:
    """A digest of compiled code without its line numbers or file name (a bytecode-only deploy:
    a new Python version compiles differently, so it counts as a change too)."""
    consts = [
        _code_digest(const) if isinstance(const, types.CodeType) else _const_text(const)
        for const in code.co_consts
    ]
    shape = (
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )
    return _hash(code.co_code.hex(), repr(shape), *consts)


def _const_text(value: object) -> str:
    if isinstance(value, frozenset):  # its order varies with the string hash seed
        return "frozenset(" + ",".join(sorted(map(_const_text, value))) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(map(_const_text, value)) + ")"
    return repr(value)


def _counted(func: types.FunctionType) -> bool:
    """Whether a function held in a closure counts in a code version: not one of the standard
    library (frozen ones included) or of an installed package (site- or dist-packages)."""
    if (func.__module__ or "").partition(".")[0] in sys.stdlib_module_names:
        return False
    filename = func.__code__.co_filename
    if filename.startswith("<frozen "):
        return False
    folders = set(re.split(r"[\\/]", filename))
    return not ("site-packages" in folders or "dist-packages" in folders)


def _closure_functions(func: Any, limit: int = 32) -> list[Callable[..., Any]]:
    """The Python functions a function's closure holds, and theirs in turn (in the order of
    their free variables; each once, itself excluded; at most `limit`), but for those of the
    standard library and installed packages."""
    start = _unwrapped(func)
    seen = {id(start)}
    found: list[Callable[..., Any]] = []
    queue = [start]
    while queue and len(found) < limit:
        for cell in getattr(queue.pop(0), "__closure__", None) or ():
            try:
                held = cell.cell_contents
            except ValueError:  # an empty cell (a variable not assigned yet)
                continue
            # `type() is`, not `isinstance`: a lazy proxy (Django's) would be evaluated
            if type(held) is not types.FunctionType:
                continue
            held = _unwrapped(held)
            if type(held) is types.FunctionType and id(held) not in seen and _counted(held):
                seen.add(id(held))
                found.append(held)
                queue.append(held)
    return found[:limit]


def tree_digest(tree: ast.AST) -> str:
    """The digest of a parsed function (its source's first statement, or a lambda expression)
    without its decorators and docstring."""
    node = tree.body[0] if isinstance(tree, ast.Module) and tree.body else tree
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        node.decorator_list = []
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return _hash("src", ast.dump(node, annotate_fields=False, include_attributes=False))


def code_version(func: Callable[..., Any], version: str | None) -> str:
    """A step's code version as far as its definition decides it (computed once per action):
    `version` when the user gave one, else the digest of its source. A `functools.partial`'s
    bound arguments count too, but they are read on every start (`with_bound_arguments`)."""
    if version is not None:
        return "v:" + version
    code = _code_of(func)
    try:
        return _source_digest(code)
    except TypeError:  # unhashable callable: cannot be cached, still has a source
        return _source_digest.__wrapped__(code)


def binds_arguments(func: Callable[..., Any]) -> bool:
    """Whether `func` is a `functools.partial` that binds anything."""
    while isinstance(func, functools.partial):
        if func.args or func.keywords:
            return True
        func = func.func
    return False


def with_bound_arguments(version: str, func: Callable[..., Any]) -> str:
    """`version` with the arguments a `functools.partial` binds, as they are now: they are part
    of what it does, so binding others (or changing a bound value in place) is a change like an
    edit of the code, read on every start like an initial context. State an object or a closure
    holds does not count (it often holds clients, clocks or ids, which would make every start a
    change): what changes a result belongs in the initial context. `CheckpointError` when a
    bound argument has no stable digest (the caller names the step)."""
    bound = []
    while isinstance(func, functools.partial):
        bound.append((func.args, func.keywords))
        func = func.func
    try:
        return _hash(version, _codec.digest(bound, name="bound arguments"))
    except _codec.UnencodableValue as exc:
        named: list[tuple[str, Any]] = []
        for args, keywords in bound:  # each as the call would name it
            named += [(f"positional argument {i + 1}", v) for i, v in enumerate(args)]
            named += [(f"argument {k!r}", v) for k, v in keywords.items()]
        what, why = next(_undigestable(named), ("arguments", exc))
        raise CheckpointError(
            f"its functools.partial binds {what}, which cannot be fingerprinted ({why}), so a "
            "change to it could not be told from a resume: bind plain data (str, numbers, "
            "lists, dicts, dataclasses, pydantic models), create the object inside the step, "
            "or give the step its own version with @action(version=...)"
        ) from None


def with_fields(version: str, fields: dict[str, Any]) -> str:
    """`version` with an object's fields as they are now (a `Stage`'s own fields: settings that
    change what its `execute` computes), read on every start like bound arguments.
    `CheckpointError` naming the field when one has no stable digest."""
    if not fields:
        return version
    try:
        return _hash(version, _codec.digest(fields, name="fields"))
    except _codec.UnencodableValue as exc:
        named = [(f"field {name!r}", value) for name, value in fields.items()]
        what, why = next(_undigestable(named), (f"fields ({exc})", exc))
        raise CheckpointError(
            f"its {what} cannot be fingerprinted ({why}), so a change to it could not be told "
            "from a resume: hold plain data there, create the object inside execute(), or, if "
            "the field never changes what execute() computes (a client, a rollback setting), "
            "declare it with pydantic.Field(exclude=True)"
        ) from None


def _undigestable(
    named: Iterable[tuple[str, Any]],
) -> Iterator[tuple[str, _codec.UnencodableValue]]:
    """Each (what, value) whose value has no stable digest, with the reason (a whole that
    cannot be digested says which of its parts is at fault)."""
    for what, value in named:
        try:
            _codec.digest(value, name=what)
        except _codec.UnencodableValue as exc:
            yield what, exc


def digest_value(value: object, what: str = "the value") -> str:
    """A digest of `value`, the same in every process (dict order and hash seeds do not
    matter); `CheckpointError` naming `what` for a value that cannot be fingerprinted."""
    try:
        return _codec.digest(value, name=what)
    except _codec.UnencodableValue as exc:
        raise CheckpointError(
            f"{what} cannot be fingerprinted ({exc}); pass JSON data, a pydantic model, a "
            "dataclass or a standard type, or give the call its own key"
        ) from exc


# --- what a checkpoint is valid for -------------------------------------------------------------


class StepIdentity(NamedTuple):
    """Everything a step's checkpoint is valid for, but its upstream's output (a tuple: one is
    built per step and start)."""

    position: int
    name: str
    version: str
    input: str
    salt: str
    #: the step whose output it receives as `previous_context`, or None
    upstream: int | None


def upstream_token(identity: StepIdentity, restored: Mapping[int, str]) -> str | None:
    """What a step receives, given the checksums of the restored steps by position: none, its
    upstream's checksum, or None when its upstream is not restored (then it runs too)."""
    if identity.upstream is None:
        return NO_UPSTREAM
    return restored.get(identity.upstream)


class StoredStep(Protocol):
    """What a stored step checkpoint says it is valid for (a `_format.StepDocument`)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def input(self) -> str: ...
    @property
    def salt(self) -> str: ...
    @property
    def upstream(self) -> str: ...
    @property
    def checksum(self) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """A difference between the stored checkpoints and the workflow as it is now."""

    name: str
    #: "code", "input", "steps" (removed, renamed or reordered)
    what: str
    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Which steps are restored; the changes found (for `on_change="raise"` and warnings)."""

    restored: frozenset[int]
    changes: tuple[Change, ...]
    #: steps restored although their code or input changed (`on_change="reuse"`)
    reused: tuple[str, ...] = ()
    #: the document each restored step is restored from (by index)
    chosen: Mapping[int, Any] = dataclasses.field(default_factory=dict)


def find_changes(
    identities: Sequence[StepIdentity],
    stored: Mapping[str, StoredStep],
    previous_steps: Sequence[str],
) -> tuple[Change, ...]:
    """Edits since the checkpoints were written: code, input, or the step list (appending new
    steps is not a change of the existing ones)."""
    changes: list[Change] = []
    names = [i.name for i in identities] if previous_steps else []
    if names[: len(previous_steps)] != list(previous_steps):  # anything but an append
        current, previous = set(names), set(previous_steps)
        removed = [n for n in previous_steps if n not in current]
        order = [n for n in names if n in previous]
        common = [n for n in previous_steps if n in current]
        if removed:
            changes.append(Change(removed[0], "steps", f"step {removed[0]!r} was removed"))
        elif common != order:
            first = next(a for a, b in zip(order, common, strict=True) if a != b)
            changes.append(Change(first, "steps", f"step {first!r} moved"))
        else:
            first = next(n for n, p in zip(names, previous_steps, strict=False) if n != p)
            changes.append(Change(first, "steps", f"step {first!r} was inserted"))
    for identity in identities if stored else ():
        doc = stored.get(identity.name)
        if doc is None:
            continue
        if doc.version != identity.version:
            changes.append(
                Change(
                    identity.name,
                    "code",
                    f"the code of {identity.name!r} changed (or its bound arguments, or a "
                    "stage's fields)",
                )
            )
        if doc.input != identity.input:
            changes.append(
                Change(identity.name, "input", f"the initial context of {identity.name!r} changed")
            )
    return tuple(changes)


def plan(
    identities: Sequence[StepIdentity],
    stored: Mapping[str, StoredStep],
    *,
    previous_steps: Sequence[str] = (),
    on_change: OnChange = "rerun",
    workflow_id: str = "",
    alternatives: Mapping[str, Sequence[StoredStep]] | None = None,
) -> Plan:
    """Decide which steps to restore. Identities are in index order; upstreams come first.

    `stored` holds each step's newest document; `alternatives` its older ones, newest first
    (group commits leave several: a batch is never rewritten). A step is restored from the
    newest document valid for it now; an entry superseded by `rerun_from` (another salt) or
    by a change never is, though its batch stays.

    `on_change="raise"` raises `WorkflowDefinitionChanged` (steps or code) or `InputChanged`
    (inputs) for the first change; `"reuse"` restores checkpoints whose code or input changed
    anyway (still never one whose upstream runs again).
    """
    changes = find_changes(identities, stored, previous_steps)
    if changes and on_change == "raise":
        first = changes[0]
        error = InputChanged if first.what == "input" else WorkflowDefinitionChanged
        raise error(
            f"workflow {workflow_id!r}: {first.detail} since its checkpoints were written; "
            "start with on_change='rerun' to run it (and what depends on it) again, "
            "on_change='reuse' to keep the old checkpoints, or reset the workflow"
        )
    reused: list[str] = []
    tokens: dict[int, str] = {}  # restored steps: position -> checksum of their output
    chosen: dict[int, StoredStep] = {}
    for identity in identities if stored else ():  # a first start restores nothing
        newest = stored.get(identity.name)
        if newest is None:
            continue
        token = upstream_token(identity, tokens)
        if token is None:
            continue  # its upstream runs again, so must it
        older = alternatives.get(identity.name, ()) if alternatives else ()
        found = reusable = None
        for doc in (newest, *older):
            if (doc.salt, doc.upstream) != (identity.salt, token):
                continue
            if (doc.version, doc.input) == (identity.version, identity.input):
                found = doc  # exactly valid: preferred to any other, however new
                break
            if reusable is None and on_change == "reuse":
                reusable = doc
        if found is None and reusable is not None:
            found = reusable
            reused.append(identity.name)
        if found is not None:
            tokens[identity.position] = found.checksum
            chosen[identity.position] = found
    return Plan(frozenset(tokens), changes, tuple(reused), chosen)

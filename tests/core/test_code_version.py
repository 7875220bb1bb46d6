"""A step's code version is the digest of its source as Python parses it. The engine reads the
lines a function's code object spans instead of calling `inspect.getsource` (whose tokenizer
costs milliseconds in every new process): the digest must be the one `inspect.getsource` gives,
for every function, or an upgrade would re-run every finished step (or, worse, a digest could
miss a change)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import linecache
import os
import py_compile
import tempfile
import textwrap
import types
import unittest.mock
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dotflow_providers
from dotflow_providers._identity import _closure_functions, _source_digest, tree_digest


def reference_digest(func: Any) -> str:
    """The digest through `inspect.getsource`, as every earlier version computed it."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return "name:" + getattr(func, "__module__", "?") + ":" + func.__qualname__
    return tree_digest(tree)


def functions_of(module: types.ModuleType) -> Iterator[Any]:
    for value in vars(module).values():
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            yield value
        elif isinstance(value, type) and value.__module__ == module.__name__:
            for member in vars(value).values():
                function = getattr(member, "__func__", member)
                if isinstance(function, types.FunctionType):
                    yield function


CORPUS = [
    "json.decoder", "json.encoder", "inspect", "ast", "textwrap", "dataclasses", "argparse",
    "asyncio.tasks", "concurrent.futures.thread", "logging",
    *sorted(
        f"dotflow_providers.{p.stem}"
        for p in Path(dotflow_providers.__file__).parent.glob("*.py")
        if p.stem not in ("__init__", "__main__", "engine")  # `engine` only re-exports
    ),
]  # fmt: skip


@pytest.mark.parametrize("name", CORPUS)
def test_every_function_of_a_module_gets_the_digest_inspect_gives(name: str) -> None:
    """...when it has source, is no lambda (see below) and its closure holds no function; one
    without source (code generated at run time) is digested by its compiled code."""
    module = importlib.import_module(name)
    functions = [f for f in functions_of(module) if f.__name__ != "<lambda>"]
    assert functions
    different, unread = [], []
    for f in functions:
        digest, expected = _source_digest.__wrapped__(f), reference_digest(f)
        if expected.startswith("name:"):
            unread += [] if digest.startswith("code:") else [f.__qualname__]
        elif not _closure_functions(f) and digest != expected:
            different.append(f.__qualname__)
    assert different == []
    assert unread == []


# --- generated functions: decorators, docstrings, defaults and returns over several lines,
# nested functions, trailing comments, methods, lambdas, blocks at column 0 inside strings

_BODY = st.sampled_from(
    [
        "return 1",
        "return (\n        1 +\n        2\n    )",
        "x = [\n        i for i in range(3)\n    ]\n    return x",
        "def inner():\n        return 2\n    return inner",
        "pass",
        "return 'text'  # a trailing comment",
        "s = '''\nat column zero\n'''\n    return s",
        "if True:\n        return 3\n    # a comment after the last statement",
        "for i in range(2):\n        pass",
        "yield 1",
        "async_ = None\n    return async_",
        "if a:\n        return 1\n    else:\n        pass",
        "x: int\n    ...",
        "return 5\n    'a string statement after the return'",
        "return 6\n# a comment at column 0\n    ...",
        "return lambda: (\n        4\n    )",
    ]
)


@st.composite
def function_sources(draw: st.DrawFn) -> tuple[str, str]:
    decorators = draw(st.lists(st.sampled_from(["@staticmethod_like", "@ident"]), max_size=2))
    doc = draw(st.sampled_from(["", '"""Docstring."""\n    ', '"""Two\n    lines."""\n    ']))
    params = draw(
        st.sampled_from(["", "a=1", "a=(\n        1,\n        2,\n    )", "*args, b: int = 2"])
    )
    body = draw(_BODY)
    trailer = draw(st.sampled_from(["", "\n# a comment after the function\n", "\n\nx = 1\n"]))
    in_class = draw(st.booleans())
    lines = [*decorators, f"def step({params}):", f"    {doc}{body}"]
    source = "\n".join(lines) + "\n" + trailer
    header = "def ident(f):\n    return f\n\nstaticmethod_like = ident\n\n"
    if in_class:
        return header + "class Holder:\n" + textwrap.indent(source, "    "), "Holder.step"
    return header + source, "step"


def load_source(folder: Path, name: str, source: str) -> Any:
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_counter = iter(range(1_000_000))


@settings(max_examples=150, deadline=None)
@given(function_sources())
def test_generated_functions_get_the_digest_inspect_gives(source_and_name: tuple[str, str]) -> None:
    source, qualname = source_and_name
    name = f"_generated_{next(_counter)}"
    with tempfile.TemporaryDirectory() as folder:
        func: Any = load_source(Path(folder), name, source)
        for part in qualname.split("."):
            func = getattr(func, part)
        expected = reference_digest(func)
        assert not expected.startswith("name:")  # the source was read
        # and read from the code object's lines: the tokenizer is not needed for a function
        with unittest.mock.patch.object(inspect, "getsource", side_effect=AssertionError):
            assert _source_digest.__wrapped__(func) == expected


def lambda_digest(text: str) -> str:
    """The digest of a lambda expression written alone."""
    return tree_digest(ast.parse(text, mode="eval").body)


def test_a_lambda_inside_a_longer_statement_is_its_own_expression() -> None:
    steps = [lambda: 1, lambda: (
        2
    )]  # fmt: skip
    assert _source_digest.__wrapped__(steps[0]) == lambda_digest("lambda: 1")
    assert _source_digest.__wrapped__(steps[1]) == lambda_digest("lambda: 2")


_LAMBDA_BODIES = ["x * 2", "x * 3", "x + 1", "(x, 1)", "[x, 'a']", "x if x else 0", "-x"]


@st.composite
def lambda_layouts(draw: st.DrawFn) -> tuple[str, str, str]:
    """A module holding two lambdas, `STEP` and a neighbour, laid out on one or several lines
    (inside brackets, after the colon, inside the body), with their bodies."""
    body, other = draw(st.sampled_from(_LAMBDA_BODIES)), draw(st.sampled_from(_LAMBDA_BODIES))
    split = draw(st.sampled_from(["", "after colon", "in body"]))
    if split == "after colon":
        text = f"(lambda x:\n    {body})"
    elif split == "in body" and " " in body:
        head, tail = body.split(" ", 1)
        text = f"(lambda x: {head}\n    {tail})"
    else:
        text = f"lambda x: {body}"
    layout = draw(st.sampled_from(["same line", "own lines"]))
    if layout == "same line":
        source = f"STEP, OTHER = {text}, lambda x: {other}\n"
    else:
        source = f"OTHER = lambda x: {other}\nSTEP = {text}\n"
    return source, body, other


@settings(max_examples=80, deadline=None)
@given(lambda_layouts())
def test_a_lambda_is_digested_as_its_own_expression_however_it_is_laid_out(
    layout: tuple[str, str, str],
) -> None:
    """An edit anywhere in a lambda counts, and only in that lambda: its digest is the one of
    its expression written alone, whatever shares its lines or however it is split."""
    source, body, other = layout
    with tempfile.TemporaryDirectory() as folder:
        module = load_source(Path(folder), f"_lambdas_{next(_counter)}", source)
        step, neighbour = module.STEP, module.OTHER
        assert _source_digest.__wrapped__(step) == lambda_digest(f"lambda x: {body}")
        assert _source_digest.__wrapped__(neighbour) == lambda_digest(f"lambda x: {other}")


def test_an_edit_after_the_first_line_of_a_lambda_counts(tmp_path: Path) -> None:
    # these once gave the digest of the first line's statement only, or a version made of
    # the step's name (a lambda split after its colon does not parse without its brackets)
    for before, after in (
        ("STEP = (lambda x: x\n    * 2)\n", "STEP = (lambda x: x\n    * 3)\n"),
        ("STEP = (lambda x:\n    x * 2)\n", "STEP = (lambda x:\n    x * 3)\n"),
    ):
        one = load_source(tmp_path, f"lambda_before_{next(_counter)}", before).STEP
        two = load_source(tmp_path, f"lambda_after_{next(_counter)}", after).STEP
        assert _source_digest.__wrapped__(one) == lambda_digest("lambda x: x * 2")
        assert _source_digest.__wrapped__(two) == lambda_digest("lambda x: x * 3")


def test_a_bytecode_only_module_is_digested_by_its_compiled_code(tmp_path: Path) -> None:
    # a deploy of .pyc files only (`compileall -b`, the sources removed): an edit still counts
    digests = []
    for factor in (2, 3, 2):
        name = f"compiled_step_{next(_counter)}"
        source = tmp_path / f"{name}.py"
        source.write_text(f"def price(value):\n    return value * {factor}\n")
        compiled = tmp_path / f"{name}.pyc"
        py_compile.compile(str(source), cfile=str(compiled), doraise=True)
        source.unlink()
        spec = importlib.util.spec_from_file_location(name, compiled)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        digests.append(_source_digest.__wrapped__(module.price))
    assert all(d.startswith("code:") for d in digests)
    assert digests[0] != digests[1]  # * 2 against * 3
    assert digests[0] == digests[2]  # the same code in another file: the same version


def test_a_function_a_decorator_wraps_without_functools_wraps_counts(tmp_path: Path) -> None:
    decorator = (
        "import json\n\ndef logged(func):\n    def wrapper(*args):\n"
        "        json.dumps(args)\n        return func(*args)\n    return wrapper\n\n"
    )
    versions = [
        load_source(
            tmp_path,
            f"wrapped_{next(_counter)}",
            decorator + f"@logged\ndef double(value):\n    return value * {factor}\n",
        ).double
        for factor in (2, 3, 2)
    ]
    digests = [_source_digest.__wrapped__(v) for v in versions]
    assert digests[0] != digests[1]
    assert digests[0] == digests[2]
    # a function of the standard library held by a closure does not count
    assert _closure_functions(versions[0]) == [versions[0].__closure__[0].cell_contents]


def test_a_step_keeps_the_version_of_the_code_it_was_declared_with(tmp_path: Path) -> None:
    # a long-lived worker imports the module, then a deploy edits the file: the step it runs
    # is the old code, so its checkpoints must record the old code's version
    source = (
        "from dotflow_providers import action\n\n"
        "@action\ndef price(initial_context):\n    return initial_context.value * 2\n"
    )
    module = load_source(tmp_path, "declared_step", source)
    (tmp_path / "declared_step.py").write_text(source.replace("* 2", "* 3"))
    assert module.price.code_version == tree_digest(
        ast.parse("def price(initial_context):\n    return initial_context.value * 2\n")
    )


def test_lines_cached_before_the_file_changed_are_not_read(tmp_path: Path) -> None:
    # a process forked from one that had read the old file (an Airflow worker, say) imports
    # the edited file: the digest is the edited code's, never the cached old lines'
    path = tmp_path / "edited_step.py"
    path.write_text("def step():\n    return 1\n")
    linecache.getlines(str(path))  # the old lines, cached
    module = load_source(tmp_path, "edited_step", "def step():\n    return 2 + 40\n")
    assert _source_digest.__wrapped__(module.step) == tree_digest(
        ast.parse("def step():\n    return 2 + 40\n")
    )


# Each pair behaves differently, so their digests must differ; a comment at column 0 before
# the last lines (what an editor's comment toggle writes) once cut those lines off unnoticed.
CHANGED_PAIRS = [
    (  # a dead `yield` makes the step a generator
        "def step(ctx):\n    return [ctx]\n#   note\n    yield\n",
        "def step(ctx):\n    return [ctx]\n",
    ),
    (  # a dead annotation makes `limit` local: the step raises UnboundLocalError
        "limit = 10\ndef step(ctx):\n    if ctx > limit:\n        raise ValueError(ctx)\n"
        "    return ctx\n# limit = 5\n    limit: int\n",
        "limit = 10\ndef step(ctx):\n    if ctx > limit:\n        raise ValueError(ctx)\n"
        "    return ctx\n",
    ),
    (  # a `yield` under `if False:` compiles to nothing and still makes a generator
        "def step(ctx):\n    total = ctx\n    return total\n"
        "# debug\n    if False:\n        yield\n",
        "def step(ctx):\n    total = ctx\n    return total\n",
    ),
]


@pytest.mark.parametrize(("before", "after"), CHANGED_PAIRS)
def test_statements_after_a_column_zero_comment_count(
    tmp_path: Path, before: str, after: str
) -> None:
    one = load_source(tmp_path, "changed_before", before).step
    two = load_source(tmp_path, "changed_after", after).step
    assert _source_digest.__wrapped__(one) == reference_digest(one)
    assert _source_digest.__wrapped__(two) == reference_digest(two)
    assert _source_digest.__wrapped__(one) != _source_digest.__wrapped__(two)


def test_a_lambda_in_a_block_header_is_its_own_expression(tmp_path: Path) -> None:
    module = load_source(
        tmp_path, "lambda_header", "R = []\nfor f in [lambda: 1]:\n    R.append(f)\n"
    )
    (step,) = module.R
    assert _source_digest.__wrapped__(step) == lambda_digest("lambda: 1")


def test_a_lambda_whose_body_is_a_lambda_is_the_outer_expression() -> None:
    (outer,) = [lambda: lambda: 1]
    assert _source_digest.__wrapped__(outer) == lambda_digest("lambda: lambda: 1")
    assert _source_digest.__wrapped__(outer()) == lambda_digest("lambda: 1")


def test_a_file_is_parsed_once_for_all_its_lambdas(tmp_path: Path) -> None:
    # lambdas made in a loop are new function objects sharing one code: each is declared,
    # and the file they come from is parsed once for all of them, not once per lambda
    source = "def make(n):\n    return [lambda x, k=k: x * k for k in range(n)]\n"
    module = load_source(tmp_path, "lambda_factory", source + "x = 1\n" * 3000)
    steps = module.make(200)
    with (
        unittest.mock.patch.object(ast, "parse", wraps=ast.parse) as parse,
        unittest.mock.patch.object(ast, "walk", wraps=ast.walk) as walk,
    ):
        digests = {_source_digest(step) for step in steps}
    assert digests == {lambda_digest("lambda x, k=k: x * k")}
    assert (parse.call_count, walk.call_count) == (1, 1)  # not a walk of the file per lambda


class _LazyProxy:
    """A lazy object as Django's `SimpleLazyObject`: any attribute evaluates it."""

    evaluated: ClassVar[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        self.evaluated.append(name)
        raise RuntimeError("settings are not configured")

    @property
    def __class__(self) -> type:
        self.evaluated.append("__class__")
        raise RuntimeError("settings are not configured")


def test_a_closure_holding_a_lazy_object_is_versioned_without_touching_it() -> None:
    proxy = _LazyProxy()

    def step() -> Any:
        return proxy

    assert _closure_functions(step) == []
    assert not _source_digest.__wrapped__(step).startswith("name:")
    assert _LazyProxy.evaluated == []


def test_functions_of_the_standard_library_and_of_installed_packages_do_not_count(
    tmp_path: Path,
) -> None:
    # os.path.join is frozen (`<frozen posixpath>`) unless -X frozen_modules=off: either way
    # the standard library does not count, nor does a package in site- or dist-packages
    installed = []
    for folder in ("site-packages", "dist-packages"):
        (tmp_path / folder).mkdir()
        installed.append(
            load_source(tmp_path / folder, f"pkg_{folder[:4]}", "def f():\n    pass\n").f
        )
    own = load_source(tmp_path, "own_helper", "def helper():\n    pass\n").helper

    def make(held: Any) -> Any:
        def step() -> Any:
            return held()

        return step

    for held in (os.path.join, json.dumps, *installed):
        assert _closure_functions(make(held)) == []
    assert _closure_functions(make(own)) == [own]

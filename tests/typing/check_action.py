"""Type-checked, not run: `mypy tests/typing` (the lint session) fails if `@action` erases a
step's signature. `assert_type` is checked statically by mypy."""

from __future__ import annotations

from typing import assert_type

from dotflow_providers import Action, Context, action


@action
def extract(initial_context: Context) -> list[int]:
    return [1, 2]


@action(retry=3, timeout=10, version="2")
def load(previous_context: Context, *, table: str = "sales") -> int:
    return len(previous_context.value)


reveal_action: Action[[Context], list[int]] = extract  # its parameters and return type are kept
assert_type(extract(Context([1])), list[int])
assert_type(load(Context([1]), table="x"), int)
load(Context([1]), table=3)  # type: ignore[arg-type]  # a wrong argument type is an error
extract()  # type: ignore[call-arg]  # so is a missing argument

"""The output codec against orjson, msgspec and pydantic-core: python bench/codec_bench.py

Not a test: numbers depend on the machine. Candidates are timed in interleaved rounds (each
round runs every candidate once, in a rotating order) and the median round is reported, so
that other work on the machine slows all candidates alike instead of whichever ran last.

The raw libraries are not lossless (tuples come back as lists, models as dicts); they show
the floor the codec is measured against. The target is the codec's encode + decode of the
100-row list within 2x of orjson.dumps + msgspec.json.decode of the same value.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
import pydantic
import pydantic_core
from rich.console import Console
from rich.table import Table

from dotflow_providers._codec import decode, encode


class Wide(pydantic.BaseModel):
    """A model with 20 fields of the usual kinds."""

    f0: int = 0
    f1: str = "one"
    f2: float = 2.5
    f3: bool = True
    f4: list[int] = [1, 2, 3]
    f5: dict[str, int] = {"a": 1}
    f6: int | None = None
    f7: str = "seven"
    f8: float = 8.25
    f9: int = 9
    f10: int = 10
    f11: str = "eleven"
    f12: list[str] = ["x", "y"]
    f13: float = 13.5
    f14: bool = False
    f15: int = 15
    f16: str = "sixteen"
    f17: int = 17
    f18: float = 18.75
    f19: str = "nineteen"


ROWS = [
    {"id": i, "name": f"n{i}", "price": i * 1.5, "tags": ["a", "b"], "ok": True} for i in range(100)
]
VALUES: dict[str, Any] = {
    "None": None,
    "small dict": {"id": 7, "name": "seven", "ok": True},
    "100 rows": ROWS,
    "model, 20 fields": Wide(),
    "100 tuples": [(i, f"s{i}", i * 0.5) for i in range(100)],
}


def candidates(value: Any) -> dict[str, Callable[[], object]]:
    """What is timed for one value: the codec and each library's nearest equivalent."""
    plain = value.model_dump() if isinstance(value, pydantic.BaseModel) else value
    raw = orjson.dumps(plain)
    ours = encode(value)
    found: dict[str, Callable[[], object]] = {
        "codec encode": lambda: encode(value),
        "codec decode": lambda: decode(ours),
        "orjson.dumps": lambda: orjson.dumps(plain),
        "msgspec.json.encode": lambda: msgspec.json.encode(plain),
        "pydantic_core.to_json": lambda: pydantic_core.to_json(plain),
        "orjson.loads": lambda: orjson.loads(raw),
        "msgspec.json.decode": lambda: msgspec.json.decode(raw),
        "pydantic_core.from_json": lambda: pydantic_core.from_json(raw),
        # what the codec's decode would cost on msgspec instead of orjson
        "msgspec.json.decode + tag scan": lambda: (
            msgspec.json.decode(ours),
            b"$" in ours and b'{"$' in ours,
        ),
    }
    if isinstance(value, pydantic.BaseModel):
        text = value.model_dump_json()
        found["pydantic model_dump_json"] = value.model_dump_json
        found["pydantic model_validate_json"] = lambda: Wide.model_validate_json(text)
    return found


def measure(
    fns: dict[str, Callable[[], object]], rounds: int, budget: float
) -> dict[str, list[float]]:
    """Microseconds per call of each function, one sample per interleaved round."""
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    # As many calls per sample as fit in `budget` seconds for the slowest candidate.
    slowest = max(min(t.repeat(repeat=3, number=20)) / 20 for t in timers.values())
    number = max(1, int(budget / slowest))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timers[name].timeit(number) / number * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--budget", type=float, default=0.001, help="seconds per sample")
    args = parser.parse_args()
    console = Console()
    console.print(
        f"orjson {orjson.__version__}, msgspec {msgspec.__version__}, "
        f"pydantic-core {pydantic_core.__version__}; median of {args.rounds} interleaved rounds"
    )
    for label, value in VALUES.items():
        samples = measure(candidates(value), args.rounds, args.budget)
        table = Table(title=f"{label}: {len(encode(value))} bytes")
        table.add_column("candidate")
        table.add_column("median µs", justify="right")
        for name, times in samples.items():
            table.add_row(name, f"{statistics.median(times):.2f}")
        # Paired per round: a burst of load on the machine slows both sides of the ratio.
        ratios = [
            (enc + dec) / (dumps + loads)
            for enc, dec, dumps, loads in zip(
                samples["codec encode"],
                samples["codec decode"],
                samples["orjson.dumps"],
                samples["msgspec.json.decode"],
                strict=True,
            )
        ]
        table.add_row(
            "codec encode + decode / (orjson.dumps + msgspec.json.decode), median of rounds",
            f"{statistics.median(ratios):.2f}x",
        )
        console.print(table)


if __name__ == "__main__":
    main()

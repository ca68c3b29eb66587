"""Small pipelines whose steps run in the base image, for launcher tests."""

from __future__ import annotations

import os
import sys

from zenml import pipeline, step


@step
def produce(value: int = 1) -> int:
    return value


@step
def exit_with(value: int, code: int = 3) -> int:
    print(f"exiting with {code}", flush=True)
    sys.exit(code)


@step
def consume(value: int) -> int:
    return value + 1


@pipeline
def failing() -> None:
    consume(exit_with(produce()))


@step
def chatty() -> str:
    print("line one")
    print("line two", file=sys.stderr)
    print("line three")
    return "said"


@pipeline
def talking() -> None:
    chatty()


@step(environment={"BAZ": "${FOO}"})
def environment_probe(p: int = 0) -> dict:
    return {name: os.environ.get(name) for name in ("FOO", "BAZ")} | {"P": p}


@pipeline(environment={"FOO": "bar"})
def environment() -> None:
    environment_probe(p=1)


@step(name="double (x2) step")
def double(value: int) -> int:
    return value * 2


@pipeline
def odd_names(value: int = 21) -> None:
    double(produce(value))

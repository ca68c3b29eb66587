"""Pipelines the benchmarks run: steps that do (almost) nothing in zenml/base."""

from __future__ import annotations

from zenml import pipeline, step


@step
def noop(value: int = 0) -> int:
    return value + 1


@step
def wait_for(seconds: float = 5.0, label: str = "") -> float:
    import time

    time.sleep(seconds)
    return seconds


@pipeline
def one_step() -> None:
    noop()


@pipeline
def side_by_side(seconds: float = 5.0) -> None:
    wait_for(seconds, label="a")
    wait_for(seconds, label="b")


@pipeline
def twenty() -> None:
    value = noop()
    for _ in range(19):
        value = noop(value)

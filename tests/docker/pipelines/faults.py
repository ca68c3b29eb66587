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


@step
def count_forever(seconds: int = 600) -> int:
    import time

    for n in range(seconds * 10):
        print(f"count {n}", flush=True)
        time.sleep(0.1)
    return seconds


@pipeline
def looping() -> None:
    count_forever()


@step(timeout=2)
def sleep_long() -> int:
    import time

    time.sleep(120)
    return 0


@pipeline
def sleepy() -> None:
    sleep_long()


@step(resources={"memory": "64m"})
def eat_memory() -> int:
    hog = bytearray(512 * 1024 * 1024)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    return len(hog)


@pipeline
def hungry() -> None:
    eat_memory()


@step(secrets=["ZENML_TEST_TOKEN"])
def use_secret() -> bool:
    token = os.environ["ZENML_TEST_TOKEN"]
    print(f"token is {token}")
    return token == "s3cr3t-value"


@pipeline
def secretive() -> None:
    use_secret()


@step
def wait_for(seconds: float = 5.0, label: str = "") -> float:
    import time

    time.sleep(seconds)
    return seconds


@pipeline
def side_by_side(seconds: float = 5.0) -> None:
    wait_for(seconds, label="a")
    wait_for(seconds, label="b")


@step
def slow_increment(value: int = 0, seconds: float = 0.5) -> int:
    import time

    time.sleep(seconds)
    return value + 1


@pipeline
def chain(length: int = 4) -> None:
    value = slow_increment()
    for _ in range(length - 1):
        value = slow_increment(value)


@step(resources={"gpus": 1})
def needs_gpu() -> int:
    return 1


@pipeline
def gpu_hungry() -> None:
    needs_gpu()

"""A Beam step that groups string keys and notes which worker did the work."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zenml import pipeline, step


@step
def group_by_key(rows: int = 20000) -> dict:
    import apache_beam as beam

    from zenml.integrations.beam.cluster import POOL_INDEX_ENV
    from zenml.integrations.beam.runners import options_from_environment

    out = Path(os.environ["ZENML_STEP_DIR"]) / "beam"

    def worker(_: object) -> str:
        return os.environ.get(POOL_INDEX_ENV, "in-process")

    with beam.Pipeline(options=options_from_environment()) as p:
        pairs = p | beam.Create([(f"key-{n % 7}", n) for n in range(rows)])
        (
            pairs
            | beam.GroupByKey()
            | beam.MapTuple(lambda key, values: json.dumps([key, sorted(values)]))
            | "groups" >> beam.io.WriteToText(str(out / "groups"))
        )
        (
            pairs
            | beam.Map(worker)
            | beam.combiners.Count.PerElement()
            | beam.MapTuple(lambda name, count: json.dumps([name, count]))
            | "workers" >> beam.io.WriteToText(str(out / "workers"))
        )

    def read(prefix: str) -> list:
        return [
            json.loads(line)
            for shard in sorted(out.glob(f"{prefix}-*"))
            for line in shard.read_text().splitlines()
        ]

    return {
        "groups": dict(sorted(read("groups"))),
        "workers": dict(read("workers")),
    }


@pipeline
def groups() -> None:
    group_by_key()

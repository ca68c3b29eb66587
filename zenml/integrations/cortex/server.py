"""The model server that zenml's serving image runs: a Cortex-style predictor.

A bundle folder holds ``model.onnx`` and ``signature.json`` from the pytorch trainer
and, optionally, ``preprocess.json`` with the preprocessing stats. With stats,
requests carry the raw fields and the server applies the training transform before
the model; without, requests carry the model's features. Inference runs on
onnxruntime, so the serving image needs no torch and no Beam.

Run it with ``python -m zenml.integrations.cortex.server``; the bundle location
comes from ``--bundle-dir`` or the ``ZENML_MODEL_URI`` environment variable.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import onnxruntime as ort
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from zenml.integrations.beam.preprocess import PreprocessStats, apply_stats
from zenml.integrations.cortex.api import DEFAULT_PORT, MODEL_URI_ENV

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
SIGNATURE_FILE = "signature.json"
PREPROCESS_FILE = "preprocess.json"
NUMBER, STRING = "number", "string"


class RequestSchemaError(ValueError):
    """A request that does not fit the model's input fields; carries the details."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Return the message and details as a JSON-serialisable dict."""
        return {"message": str(self), **self.details}


@dataclass(frozen=True)
class InputField:
    """One input field of a request instance; ``type`` is ``number`` or ``string``."""

    name: str
    type: str
    nullable: bool


@dataclass
class Predictor:
    """The loaded model with its signature and optional preprocessing stats."""

    bundle_dir: Path
    feature_names: list[str]
    class_labels: list[str]
    stats: PreprocessStats | None
    session: ort.InferenceSession
    input_name: str
    output_name: str
    fields: list[InputField] = field(init=False)

    def __post_init__(self) -> None:
        if self.stats is None:
            # Without stats there is nothing to impute a missing value with.
            self.fields = [InputField(n, NUMBER, False) for n in self.feature_names]
            return
        produced = list(self.stats.feature_columns)
        if sorted(produced) != sorted(self.feature_names):
            raise ValueError(
                f"{PREPROCESS_FILE} produces features {produced} but the model "
                f"expects {self.feature_names}; bundle the stats the model was "
                "trained with."
            )
        self.fields = [InputField(c.name, NUMBER, True) for c in self.stats.numeric]
        self.fields += [
            InputField(c.name, STRING, True) for c in self.stats.categorical
        ]

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike[str]) -> Predictor:
        """Load the bundle in ``bundle_dir``."""
        root = Path(bundle_dir)
        signature = json.loads((root / SIGNATURE_FILE).read_text())
        stats_path = root / PREPROCESS_FILE
        stats = PreprocessStats.load(stats_path) if stats_path.exists() else None
        session = ort.InferenceSession(
            str(root / ONNX_FILE), providers=["CPUExecutionProvider"]
        )
        return cls(
            bundle_dir=root,
            feature_names=list(signature["feature_names"]),
            class_labels=list(signature["class_labels"]),
            stats=stats,
            session=session,
            input_name=signature.get("input_name", session.get_inputs()[0].name),
            output_name=signature.get("output_name", session.get_outputs()[0].name),
        )

    @property
    def field_names(self) -> list[str]:
        """Input field names in the order positional instances use."""
        return [f.name for f in self.fields]

    def describe(self) -> dict[str, Any]:
        """Return the input fields and class labels, for clients."""
        return {
            "fields": [
                {"name": f.name, "type": f.type, "nullable": f.nullable}
                for f in self.fields
            ],
            "class_labels": self.class_labels,
        }

    def parse(self, body: Any) -> list[list[Any]]:
        """Turn a request body into rows of values in field order, or raise."""
        return [
            self._parse_instance(position, instance)
            for position, instance in enumerate(_instances(body, self.field_names))
        ]

    def predict(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """Return the label and class probabilities of each parsed row."""
        features = self._features(rows)
        probabilities = self.session.run(
            [self.output_name], {self.input_name: features}
        )[0]
        return [
            {
                "label": self.class_labels[int(np.argmax(row))],
                "probabilities": {
                    label: float(p)
                    for label, p in zip(self.class_labels, row, strict=True)
                },
            }
            for row in probabilities
        ]

    def _features(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        if self.stats is None:
            return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        columns: dict[str, Any] = {}
        for position, input_field in enumerate(self.fields):
            values = [row[position] for row in rows]
            if input_field.type == NUMBER:
                columns[input_field.name] = np.array(
                    [np.nan if v is None else v for v in values], dtype=np.float64
                )
            else:
                columns[input_field.name] = pd.Series(values, dtype=object)
        transformed = apply_stats(pd.DataFrame(columns), self.stats)
        return transformed[self.feature_names].to_numpy(dtype=np.float32)

    def _parse_instance(self, position: int, instance: Any) -> list[Any]:
        names = self.field_names
        context = {"instance": position, "expected_fields": names}
        if isinstance(instance, dict):
            missing = [name for name in names if name not in instance]
            unknown = [key for key in instance if key not in names]
            if missing or unknown:
                problems = []
                if missing:
                    problems.append(f"is missing fields {missing}")
                if unknown:
                    problems.append(f"has unknown fields {unknown}")
                raise RequestSchemaError(
                    f"Instance {position} {' and '.join(problems)}; expected "
                    f"fields {names}.",
                    **context,
                    received_fields=list(instance),
                    missing_fields=missing,
                    unknown_fields=unknown,
                )
            values = [instance[name] for name in names]
        elif isinstance(instance, list):
            if len(instance) != len(names):
                raise RequestSchemaError(
                    f"Instance {position} has {len(instance)} values; expected "
                    f"{len(names)}, for fields {names} in this order.",
                    **context,
                    received_length=len(instance),
                )
            values = list(instance)
        else:
            raise RequestSchemaError(
                f"Instance {position} must be an object keyed by {names} or a list "
                "of values in that order.",
                **context,
            )

        invalid = {
            f.name: reason
            for f, value in zip(self.fields, values, strict=True)
            if (reason := _value_problem(f, value)) is not None
        }
        if invalid:
            raise RequestSchemaError(
                f"Instance {position} has invalid values: "
                + "; ".join(f"{name}: {reason}" for name, reason in invalid.items()),
                **context,
                invalid_values=invalid,
            )
        return [
            float(v) if f.type == NUMBER and v is not None else v
            for f, v in zip(self.fields, values, strict=True)
        ]


def create_app(bundle_dir: str | os.PathLike[str]) -> FastAPI:
    """Build the FastAPI app; the model loads in the background once it starts."""
    root = Path(bundle_dir)
    absent = [
        name for name in (ONNX_FILE, SIGNATURE_FILE) if not (root / name).is_file()
    ]
    if absent:
        raise FileNotFoundError(
            f"Model bundle {root} lacks {absent}; point it at the folder the "
            "pytorch trainer wrote (plus preprocess.json for raw inputs)."
        )
    loader = _Loader(root)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader.start()
        yield

    app = FastAPI(title="zenml model server", lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if loader.predictor is not None:
            return JSONResponse({"status": "ready"})
        if loader.error is not None:
            return JSONResponse({"status": "failed", "error": loader.error}, 503)
        return JSONResponse({"status": "loading"}, 503)

    @app.get("/signature")
    def signature() -> JSONResponse:
        if loader.predictor is None:
            return _not_ready(loader)
        return JSONResponse(loader.predictor.describe())

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        predictor = loader.predictor
        if predictor is None:
            return _not_ready(loader)
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return JSONResponse(
                {"detail": {"message": f"The body is not valid JSON: {error}"}}, 400
            )
        try:
            rows = predictor.parse(body)
        except RequestSchemaError as error:
            return JSONResponse({"detail": error.to_dict()}, 422)
        predictions = await run_in_threadpool(predictor.predict, rows)
        return JSONResponse({"predictions": predictions})

    return app


def run(
    bundle_dir: str | os.PathLike[str], host: str = "0.0.0.0", port: int = 8080
) -> None:
    """Serve the bundle with uvicorn until the process is stopped."""
    import uvicorn

    uvicorn.run(create_app(bundle_dir), host=host, port=port)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point of the serving image."""
    parser = argparse.ArgumentParser(description="Serve a zenml model bundle.")
    parser.add_argument(
        "--bundle-dir",
        default=os.environ.get(MODEL_URI_ENV),
        help=f"bundle folder or file:// URI; defaults to ${MODEL_URI_ENV}",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    if not args.bundle_dir:
        parser.error(f"pass --bundle-dir or set {MODEL_URI_ENV}")
    logging.basicConfig(level=logging.INFO)
    run(local_bundle_path(args.bundle_dir), args.host, args.port)


def local_bundle_path(uri: str) -> Path:
    """Return the local folder a bundle URI names: a plain path or ``file://``."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    # The server reads local files only; remote stores are copied in by the image.
    raise ValueError(
        f"Model URI {uri!r} is not local; mount or copy the bundle into the "
        "container and pass its path."
    )


class _Loader:
    """Loads the predictor on a thread so /healthz answers while the model loads."""

    def __init__(self, bundle_dir: Path) -> None:
        self.bundle_dir = bundle_dir
        self.predictor: Predictor | None = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._load, name="zenml-model-loader", daemon=True
            )
            self._thread.start()

    def _load(self) -> None:
        try:
            self.predictor = Predictor.load(self.bundle_dir)
        except Exception as error:  # reported by /readyz instead of killing the server
            logger.exception("Loading the model bundle %s failed.", self.bundle_dir)
            self.error = f"{type(error).__name__}: {error}"
        else:
            logger.info("Loaded model bundle %s.", self.bundle_dir)


def _instances(body: Any, names: list[str]) -> list[Any]:
    """Split a body into instances: one object, one list of values, or many."""
    if isinstance(body, dict) and set(body) == {"instances"}:
        body = body["instances"]
        if not isinstance(body, list):
            raise RequestSchemaError(
                "'instances' must be a list of instances.", expected_fields=names
            )
        instances = body
    elif isinstance(body, dict):
        instances = [body]
    elif (
        isinstance(body, list)
        and body
        and all(isinstance(item, dict | list) for item in body)
    ):
        instances = body
    elif isinstance(body, list) and not any(
        isinstance(item, dict | list) for item in body
    ):
        instances = [body] if body else []
    else:
        raise RequestSchemaError(
            "The body must be an instance (an object of fields or a list of values), "
            'a list of instances, or {"instances": [...]}.',
            expected_fields=names,
        )
    if not instances:
        raise RequestSchemaError(
            "The request holds no instances.", expected_fields=names
        )
    return instances


def _value_problem(input_field: InputField, value: Any) -> str | None:
    if value is None:
        return None if input_field.nullable else "null is not allowed"
    if input_field.type == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {type(value).__name__} {value!r}"
        if not math.isfinite(value):
            return "expected a finite number; send null for a missing value"
        return None
    if isinstance(value, dict | list):
        return f"expected a string, got {type(value).__name__}"
    return None


def _not_ready(loader: _Loader) -> JSONResponse:
    message = "The model is still loading." if loader.error is None else loader.error
    return JSONResponse({"detail": {"message": message}}, 503)


if __name__ == "__main__":
    main()

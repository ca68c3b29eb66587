"""Tabular preprocessing on Apache Beam: train-split statistics, applied to every split.

Numeric columns are imputed with the train mean and standardised; categorical columns
are imputed with the train mode and one-hot encoded against the train vocabulary.
The transform itself, :func:`apply_stats`, is plain pandas so that a model server can
apply exactly the same steps without Beam; this module imports Beam only when a
pipeline is built.

Rows travel through Beam in batches of about 10,000, each batch one pandas
DataFrame, because a Beam element per row is orders of magnitude slower. Batches
enter and leave the pipeline as files under ``work_dir`` so that the pipeline works
on runners whose workers live in other processes or containers; ``work_dir`` must
therefore be a path that every worker can read and write.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 10_000
STATS_FILE_NAME = "stats.json"
STATS_FORMAT_VERSION = 1

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

R = TypeVar("R")


@dataclass(frozen=True)
class NumericColumnStats:
    """Train statistics of one numeric column; ``std`` is the population std."""

    name: str
    mean: float
    std: float

    @property
    def scale(self) -> float:
        """The divisor used when standardising; a constant column keeps its offsets."""
        return self.std if self.std > 0 else 1.0


@dataclass(frozen=True)
class CategoricalColumnStats:
    """Train statistics of one categorical column; values are compared as text."""

    name: str
    vocabulary: tuple[str, ...]
    mode: str

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Names of the one-hot columns, in vocabulary order."""
        return tuple(f"{self.name}={value}" for value in self.vocabulary)


@dataclass(frozen=True)
class PreprocessStats:
    """Everything :func:`apply_stats` needs; round-trips through JSON."""

    numeric: tuple[NumericColumnStats, ...]
    categorical: tuple[CategoricalColumnStats, ...]
    passthrough: tuple[str, ...] = ()

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Raw columns the transform reads: numeric ones, then categorical ones."""
        return tuple(c.name for c in self.numeric) + tuple(
            c.name for c in self.categorical
        )

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Columns the transform produces from the raw ones, in output order."""
        names = [c.name for c in self.numeric]
        for column in self.categorical:
            names.extend(column.output_columns)
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "version": STATS_FORMAT_VERSION,
            "numeric": [
                {"name": c.name, "mean": c.mean, "std": c.std} for c in self.numeric
            ],
            "categorical": [
                {"name": c.name, "vocabulary": list(c.vocabulary), "mode": c.mode}
                for c in self.categorical
            ],
            "passthrough": list(self.passthrough),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessStats:
        """Build stats from the output of :meth:`to_dict`."""
        version = data.get("version")
        if version != STATS_FORMAT_VERSION:
            raise ValueError(
                f"Unsupported preprocess stats version {version!r}; expected "
                f"{STATS_FORMAT_VERSION}. Re-run the preprocessing step."
            )
        return cls(
            numeric=tuple(
                NumericColumnStats(str(c["name"]), float(c["mean"]), float(c["std"]))
                for c in data["numeric"]
            ),
            categorical=tuple(
                CategoricalColumnStats(
                    str(c["name"]),
                    tuple(str(v) for v in c["vocabulary"]),
                    str(c["mode"]),
                )
                for c in data["categorical"]
            ),
            passthrough=tuple(str(name) for name in data.get("passthrough", ())),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the stats as JSON to ``path``."""
        return _write_json_atomically(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PreprocessStats:
        """Read stats written by :meth:`save`."""
        with open(path, encoding="utf-8") as file:
            return cls.from_dict(json.load(file))


class PreprocessResult(NamedTuple):
    """Transformed splits, in input row order and with the input index, and stats."""

    splits: dict[str, pd.DataFrame]
    stats: PreprocessStats


def apply_stats(df: pd.DataFrame, stats: PreprocessStats) -> pd.DataFrame:
    """Impute, standardise and one-hot encode ``df`` with train statistics.

    The result has the numeric columns, then the one-hot columns, then those
    passthrough columns present in ``df``, and keeps ``df``'s index. Other columns
    are dropped. Categorical values are compared by their ``str()``.
    """
    missing = [name for name in stats.input_columns if name not in df.columns]
    if missing:
        raise ValueError(
            f"Columns {missing} are missing; the transform needs "
            f"{list(stats.input_columns)}."
        )

    # One block, a row per feature, which the frame wraps without copying.
    features = np.zeros((len(stats.feature_columns), len(df)), dtype=np.float64)
    row = 0
    for num in stats.numeric:
        values = _as_float(df[num.name])
        values = np.where(np.isnan(values), num.mean, values)
        features[row] = (values - num.mean) / num.scale
        row += 1

    for cat in stats.categorical:
        codes = _vocabulary_codes(df[cat.name], cat)
        # Unseen values have code -1 and so a row of zeros.
        seen = np.flatnonzero(codes >= 0)
        features[row + codes[seen], seen] = 1.0
        row += len(cat.vocabulary)

    result = pd.DataFrame(
        features.T, index=df.index, columns=list(stats.feature_columns)
    )
    for name in stats.passthrough:
        if name in df.columns:
            # A Series on the same index is set without the element checks that
            # a bare array of objects goes through.
            result[name] = df[name]
    return result


def bind_map(fn: Callable[..., R], *args: Any, **kwargs: Any) -> Callable[[Any], R]:
    """Return ``element -> fn(element, *args, **kwargs)`` with the arguments fixed now.

    A lambda written in a loop that adds Beam stages reads the loop variable when
    the pipeline runs, after the loop has ended, so every stage sees the last value.
    Binding the values here, at the time the stage is added, gives each stage its
    own. ``beam.Map(fn, *args)`` does the same for ``Map``; this helper also serves
    ``Filter``, ``FlatMap`` and any API that takes a one-argument callable.
    """
    return partial(_call_bound, fn, args, kwargs)


def preprocess(
    splits: Mapping[str, pd.DataFrame],
    numeric_columns: Sequence[str],
    categorical_columns: Sequence[str],
    passthrough_columns: Sequence[str] = (),
    *,
    work_dir: str,
    train_split: str = "train",
    batch_size: int = DEFAULT_BATCH_SIZE,
    options: PipelineOptions | None = None,
) -> PreprocessResult:
    """Compute stats on ``train_split`` with Beam and apply them to every split.

    Args:
        splits: Named DataFrames, for example ``train``, ``eval`` and ``test``.
        work_dir: Folder shared with the Beam workers; its ``input`` and ``output``
            subfolders are replaced, and the stats are written to ``stats.json``.
        options: Beam pipeline options; by default Beam's in-process runner
            (see `zenml.integrations.beam.runners`).
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import StandardOptions

    _check_arguments(
        splits, numeric_columns, categorical_columns, passthrough_columns, train_split
    )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if options is None:
        from zenml.integrations.beam.runners import options_from_environment

        options = options_from_environment()
    runner = options.view_as(StandardOptions).runner or "DirectRunner"

    root = Path(work_dir).resolve()
    input_dir, output_dir = root / "input", root / "output"
    stats_path = root / STATS_FILE_NAME
    for stale in (input_dir, output_dir):
        shutil.rmtree(stale, ignore_errors=True)
    stats_path.unlink(missing_ok=True)
    numeric, categorical = list(numeric_columns), list(categorical_columns)
    batches = _write_input_batches(splits, numeric, categorical, input_dir, batch_size)

    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    refs = pipeline | "ListBatches" >> beam.Create(batches)
    stats = (
        refs
        | "TrainBatches" >> beam.Filter(_in_split, train_split)
        | "PartialStats" >> beam.Map(_partial_stats, numeric, categorical)
        | "CollectPartials" >> beam.combiners.ToList()
        | "MergeStats"
        >> beam.Map(_merge_partials, numeric, categorical, list(passthrough_columns))
    )
    _ = stats | "WriteStats" >> beam.Map(_write_stats, str(stats_path))
    _ = refs | "Transform" >> beam.Map(
        _transform_batch, str(output_dir), stats=beam.pvalue.AsSingleton(stats)
    )
    pipeline.run().wait_until_finish()

    result_stats = PreprocessStats.load(stats_path)
    result = {
        name: _read_output_split(output_dir, name, split, batches, result_stats)
        for name, split in splits.items()
    }
    logger.info(
        "Preprocessed splits %s on %s in %.1f s.",
        {name: len(df) for name, df in result.items()},
        runner,
        time.monotonic() - started,
    )
    return PreprocessResult(result, result_stats)


# A batch reference: (split name, batch number, input file path).
_BatchRef = tuple[str, int, str]


def _check_arguments(
    splits: Mapping[str, pd.DataFrame],
    numeric_columns: Sequence[str],
    categorical_columns: Sequence[str],
    passthrough_columns: Sequence[str],
    train_split: str,
) -> None:
    if train_split not in splits:
        raise ValueError(
            f"Train split {train_split!r} not among splits {list(splits)}; pass "
            "train_split= to name the split the statistics come from."
        )
    if len(splits[train_split]) == 0:
        raise ValueError(f"Train split {train_split!r} has no rows.")
    for name in splits:
        if not _SPLIT_NAME.match(name):
            raise ValueError(
                f"Split name {name!r} is used as a folder name; use letters, "
                "digits, '_', '-' and '.' only."
            )

    columns = [*numeric_columns, *categorical_columns, *passthrough_columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValueError(f"Columns {repeated} are listed in more than one role.")
    for name, df in splits.items():
        absent = [c for c in columns if c not in df.columns]
        if absent:
            raise ValueError(f"Split {name!r} lacks columns {absent}.")
        # Caught here, a bad value names its split; in a worker it would not.
        for column in numeric_columns:
            if not pd.api.types.is_numeric_dtype(df[column].dtype):
                try:
                    _as_float(df[column])
                except ValueError as error:
                    raise ValueError(f"Split {name!r}: {error}") from error

    train = splits[train_split]
    for column in numeric_columns:
        if train[column].isna().all():
            raise ValueError(
                f"Numeric column {column!r} has no values in the train split."
            )
    for column in categorical_columns:
        if train[column].isna().all():
            raise ValueError(
                f"Categorical column {column!r} has no values in the train split."
            )


def _write_input_batches(
    splits: Mapping[str, pd.DataFrame],
    numeric: list[str],
    categorical: list[str],
    input_dir: Path,
    batch_size: int,
) -> list[_BatchRef]:
    # The pandas index of each batch is the row's position in its split. The
    # output is read back in batch order, so the order does not depend on the runner.
    # Passthrough columns stay here: they are added back when the output is read.
    refs: list[_BatchRef] = []
    for name, df in splits.items():
        split_dir = input_dir / name
        split_dir.mkdir(parents=True)
        # Text as categories makes files smaller and saves the workers from coding
        # every value; other values are left for _text_codes to convert. Done once
        # per split: inside the loop each batch would copy the split.
        text = {column: "category" for column in categorical if _holds_text(df[column])}
        selected = df[[*numeric, *categorical]].astype(text)
        for number, start in enumerate(range(0, len(df), batch_size)):
            batch = selected.iloc[start : start + batch_size].copy()
            batch.index = pd.RangeIndex(start, start + len(batch))
            path = split_dir / f"batch-{number:05d}.pkl"
            _write_pickle_atomically(path, batch)
            refs.append((name, number, str(path)))
    logger.debug("Wrote %d input batches under %s.", len(refs), input_dir)
    return refs


def _read_output_split(
    output_dir: Path,
    name: str,
    original: pd.DataFrame,
    batches: list[_BatchRef],
    stats: PreprocessStats,
) -> pd.DataFrame:
    expected = [number for split, number, _ in batches if split == name]
    frames = []
    for number in expected:
        path = output_dir / name / f"batch-{number:05d}.pkl"
        if not path.exists():
            raise RuntimeError(
                f"Beam finished without writing {path}; check that work_dir is a "
                "folder the workers share with this process."
            )
        with open(path, "rb") as file:
            frames.append(pickle.load(file))
    if not frames:
        # An empty split has no batches but still gets the right columns.
        return apply_stats(original, stats)
    # Batch after batch, each in row order: the rows are already in split order.
    combined = pd.concat(frames)
    combined.index = original.index
    for column in stats.passthrough:
        combined[column] = original[column]
    return combined


def _in_split(ref: _BatchRef, split: str) -> bool:
    return ref[0] == split


def _partial_stats(
    ref: _BatchRef, numeric: list[str], categorical: list[str]
) -> tuple[int, dict[str, Any]]:
    """Count, mean and sum of squared deviations, and value counts, of one batch."""
    _, number, path = ref
    batch = _read_pickle(path)
    numeric_parts = {}
    for column in numeric:
        values = _as_float(batch[column])
        values = values[~np.isnan(values)]
        mean = float(values.mean()) if len(values) else 0.0
        m2 = float(((values - mean) ** 2).sum()) if len(values) else 0.0
        numeric_parts[column] = (int(len(values)), mean, m2)
    categorical_parts = {}
    for column in categorical:
        codes, texts = _text_codes(batch[column])
        counts: dict[str, int] = {}
        for text, count in zip(
            texts, np.bincount(codes[codes >= 0], minlength=len(texts)), strict=True
        ):
            if count:
                counts[text] = counts.get(text, 0) + int(count)
        categorical_parts[column] = counts
    return number, {"numeric": numeric_parts, "categorical": categorical_parts}


def _merge_partials(
    partials: list[tuple[int, dict[str, Any]]],
    numeric: list[str],
    categorical: list[str],
    passthrough: list[str],
) -> dict[str, Any]:
    # Merge in batch order, not arrival order: float sums then round the same
    # way on every runner and the stats are bit-for-bit reproducible.
    ordered = [part for _, part in sorted(partials, key=lambda item: item[0])]

    numeric_stats = []
    for column in numeric:
        count, mean, m2 = 0, 0.0, 0.0
        for part in ordered:
            n_b, mean_b, m2_b = part["numeric"][column]
            if n_b == 0:
                continue
            total = count + n_b
            delta = mean_b - mean
            mean += delta * n_b / total
            m2 += m2_b + delta * delta * count * n_b / total
            count = total
        numeric_stats.append(
            NumericColumnStats(column, mean, math.sqrt(m2 / count) if count else 0.0)
        )

    categorical_stats = []
    for column in categorical:
        counts: dict[str, int] = {}
        for part in ordered:
            for value, n in part["categorical"][column].items():
                counts[value] = counts.get(value, 0) + n
        vocabulary = tuple(sorted(counts))
        # max() keeps the first of equal counts, so ties go to the smallest value.
        mode = max(vocabulary, key=lambda value: counts[value])
        categorical_stats.append(CategoricalColumnStats(column, vocabulary, mode))

    stats = PreprocessStats(
        tuple(numeric_stats), tuple(categorical_stats), tuple(passthrough)
    )
    return stats.to_dict()


def _write_stats(stats: dict[str, Any], path: str) -> str:
    _write_json_atomically(Path(path), stats)
    return path


def _transform_batch(ref: _BatchRef, output_dir: str, stats: dict[str, Any]) -> str:
    name, number, path = ref
    transformed = apply_stats(_read_pickle(path), PreprocessStats.from_dict(stats))
    target = Path(output_dir) / name / f"batch-{number:05d}.pkl"
    _write_pickle_atomically(target, transformed)
    return str(target)


def _call_bound(
    fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any], element: Any
) -> R:
    return fn(element, *args, **kwargs)


def _as_float(values: pd.Series) -> np.ndarray:
    try:
        return pd.to_numeric(values, errors="raise").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Numeric column {values.name!r} holds a non-numeric value: {error}"
        ) from error


def _as_text(values: pd.Series) -> pd.Series:
    """Values as ``str``, with missing values kept as missing."""
    return values.astype(str).where(values.notna(), None)


def _vocabulary_codes(values: pd.Series, cat: CategoricalColumnStats) -> np.ndarray:
    """Vocabulary positions of the values; the mode's where missing, -1 if unseen."""
    codes, texts = _text_codes(values)
    position = {value: number for number, value in enumerate(cat.vocabulary)}
    lookup = [position.get(text, -1) for text in texts]
    # Missing values have code -1, which picks this last entry.
    lookup.append(position.get(cat.mode, -1))
    return np.asarray(lookup, dtype=np.intp)[codes]


def _text_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes of the values compared as text, -1 where missing, and the texts coded.

    A text can have several codes, and a category no row has is still coded.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        if _holds_text(values.cat.categories):
            return values.cat.codes.to_numpy(), list(values.cat.categories)
    elif _holds_text(values):
        # Strings are coded as they are, several times faster than converting
        # first; other values are not (1 and 1.0 are equal but print differently).
        codes, uniques = pd.factorize(values)
        return codes, list(uniques)
    codes, uniques = pd.factorize(_as_text(values))
    return codes, list(uniques)


def _holds_text(values: pd.Series | pd.Index) -> bool:
    """Whether every value that is not missing is a ``str``."""
    return pd.api.types.infer_dtype(values, skipna=True) == "string"


def _read_pickle(path: str) -> pd.DataFrame:
    # Only files this module wrote are read, by the same image's pandas.
    with open(path, "rb") as file:
        frame: pd.DataFrame = pickle.load(file)
    return frame


def _write_pickle_atomically(path: Path, frame: pd.DataFrame) -> None:
    # A retried bundle rewrites the same name, and readers never see half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as file:
        pickle.dump(frame, file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(file.name, path)


def _write_json_atomically(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, delete=False
    ) as file:
        json.dump(data, file, indent=2, allow_nan=False)
        file.write("\n")
    os.replace(file.name, path)
    return path

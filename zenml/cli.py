"""The `zenml` command line."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table

import zenml
from zenml.exceptions import RunFailedError, ZenMLError
from zenml.repository import Repository

console = Console(stderr=True)
out = Console()


def _friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn zenml's errors into one red line and a non-zero exit."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RunFailedError as exc:
            console.print(f"[bold red]Run failed:[/] {escape(str(exc))}")
            console.print(f"Details: zenml runs show {exc.run_id}")
            sys.exit(130 if exc.status == "cancelled" else 1)
        except ZenMLError as exc:
            console.print(f"[bold red]Error:[/] {escape(str(exc))}")
            sys.exit(1)

    return wrapper


@click.group()
@click.version_option(zenml.__version__, prog_name="zenml")
@click.option("-v", "--verbose", is_flag=True, help="Show debug messages.")
def main(verbose: bool) -> None:
    """zenml: ML pipelines whose steps run in the image of their integration."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False, markup=False)],
    )
    for noisy in ("urllib3", "docker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@_friendly_errors
def init(folder: Path) -> None:
    """Create the local stores in FOLDER/.zenml (artifacts, SQLite metadata)."""
    repo = Repository.init(folder)
    out.print(f"zenml repository in {repo.config_dir}")
    out.print(f"  artifact store: {repo.artifact_root}")
    out.print(f"  metadata store: {repo.metadata_path}")


# Pipelines ---------------------------------------------------------------


@main.group()
def pipeline() -> None:
    """Run and compile pipelines."""


def _load_spec(target: Path, name: str | None, params: tuple[str, ...]) -> Any:
    from zenml.pipelines import load_pipeline
    from zenml.spec import PipelineSpec

    if target.suffix in (".yaml", ".yml"):
        if params:
            raise ZenMLError("--param works with a .py pipeline; edit the YAML instead")
        return PipelineSpec.from_yaml(target), None
    found = load_pipeline(target, name)
    return found.compile(**_parse_params(params)), found


def _with_backends(spec: Any, backends: tuple[str, ...]) -> Any:
    """`spec` with the named steps' processing backends replaced."""
    chosen = dict(_parse_pairs(backends, "--backend", "STEP=BACKEND"))
    unknown = set(chosen) - {step.name for step in spec.steps}
    if unknown:
        raise ZenMLError(
            f"--backend names no step {sorted(unknown)}; the pipeline has "
            f"{[step.name for step in spec.steps]}"
        )
    steps = tuple(
        step.model_copy(update={"backend": chosen[step.name]})
        if step.name in chosen
        else step
        for step in spec.steps
    )
    return spec.model_copy(update={"steps": steps})


def _parse_pairs(
    items: tuple[str, ...], option: str, form: str
) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ZenMLError(f"{option} {item!r} needs the form {form}")
        pairs.append((key, value))
    return pairs


def _parse_params(params: tuple[str, ...]) -> dict[str, Any]:
    parsed = {}
    for key, value in _parse_pairs(params, "--param", "NAME=VALUE"):
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


@pipeline.command("run")
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--orchestrator",
    "-o",
    type=click.Choice(["docker", "local"]),
    help="docker (default): each step in its image; local: in this process.",
)
@click.option("--name", help="Which pipeline, where the file defines several.")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A pipeline parameter (JSON or text); repeatable.",
)
@click.option("--no-cache", is_flag=True, help="Run every step, reusing nothing.")
@click.option(
    "--backend",
    "-b",
    "backends",
    multiple=True,
    metavar="STEP=BACKEND",
    help="A step's processing backend, e.g. preprocess=portable; repeatable.",
)
@_friendly_errors
def pipeline_run(
    target: Path,
    orchestrator: str | None,
    name: str | None,
    params: tuple[str, ...],
    no_cache: bool,
    backends: tuple[str, ...],
) -> None:
    """Run a pipeline from a .py file or a compiled .yaml file."""
    from zenml.runs import run_pipeline

    repo = Repository.find_or_init()
    spec, found = _load_spec(target, name, params)
    spec = _with_backends(spec, backends)
    started = time.monotonic()
    result = run_pipeline(
        spec, orchestrator=orchestrator, repository=repo, enable_cache=not no_cache
    )
    out.print()
    out.print(
        f"[bold green]Run {result.run_id} completed[/] "
        f"in {time.monotonic() - started:.0f}s"
    )
    if found is not None and found.on_success is not None:
        found.on_success(result)
    # Paths and commands on lines of their own, never folded, to be copied whole.
    for line in (
        f"Artifacts: {repo.artifact_store.run_dir(spec.name, result.run_id)}",
        f"Metadata:  {repo.metadata_path}",
        f"Details:   zenml runs show {result.run_id}",
    ):
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@pipeline.command("compile")
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The YAML file to write.",
)
@click.option("--name", help="Which pipeline, where the file defines several.")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE")
@_friendly_errors
def pipeline_compile(
    target: Path, output: Path, name: str | None, params: tuple[str, ...]
) -> None:
    """Write a pipeline's resolved configuration to YAML, to run it again later."""
    spec, _ = _load_spec(target, name, params)
    spec.to_yaml(output)
    out.print(
        f"wrote {output}: {len(spec.steps)} steps; run it with "
        f"`zenml pipeline run {output}`"
    )


@pipeline.command("export")
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--orchestrator",
    "-O",
    type=click.Choice(["kubernetes", "gcp-vm"]),
    required=True,
    help="What to export the run for.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The file to write (YAML or JSON).",
)
@click.option("--name", help="Which pipeline, where the file defines several.")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE")
@click.option("--run-id", help="The run id the resources carry (default: a new one).")
@click.option(
    "--artifact-root",
    help="kubernetes: the artifact store's path in the "
    "pods, mounted from --claim (default: this repository's store).",
)
@click.option(
    "--claim",
    default="zenml-artifacts",
    show_default=True,
    help="kubernetes: the PersistentVolumeClaim holding the artifact store.",
)
@click.option("--namespace", default="default", show_default=True)
@click.option(
    "--registry",
    help="Registry prefix the images were pushed to, e.g. "
    "europe-docker.pkg.dev/PROJECT/REPO.",
)
@click.option("--project", help="gcp-vm: the Google Cloud project.")
@click.option("--zone", help="gcp-vm: the zone of the VM.")
@click.option("--results", help="gcp-vm: gs:// folder for each run's results.")
@_friendly_errors
def pipeline_export(
    target: Path,
    orchestrator: str,
    output: Path,
    name: str | None,
    params: tuple[str, ...],
    run_id: str | None,
    artifact_root: str | None,
    claim: str,
    namespace: str,
    registry: str | None,
    project: str | None,
    zone: str | None,
    results: str | None,
) -> None:
    """Write what a remote orchestrator needs to run a pipeline, without running it."""
    from zenml.integrations.registry import require
    from zenml.runs import new_run_id

    spec, _ = _load_spec(target, name, params)
    run_id = run_id or new_run_id()
    if orchestrator == "kubernetes":
        require("kubernetes", "exporting to Kubernetes")
        from zenml.integrations.kubernetes.manifests import (
            KubernetesSettings,
            export_manifests,
            write_manifests,
        )

        root = artifact_root or str(Repository.find_or_init().artifact_root)
        try:
            settings = KubernetesSettings(
                artifact_root=root,
                claim_name=claim,
                namespace=namespace,
                image_registry=registry,
            )
        except ValueError as exc:
            raise ZenMLError(str(exc)) from exc
        manifests = export_manifests(spec, run_id, settings)
        write_manifests(manifests, output)
        out.print(
            f"wrote {len(manifests)} Jobs of run {run_id} to {output}; "
            f"apply with `kubectl apply -f {output}`"
        )
        return
    require("gcp", "exporting to a Google Cloud VM")
    from google.cloud import compute_v1

    from zenml.integrations.gcp.compute import ComputeSettings, instance_request

    missing = [
        flag
        for flag, value in (
            ("--project", project),
            ("--zone", zone),
            ("--registry", registry),
            ("--results", results),
        )
        if not value
    ]
    if missing:
        raise ZenMLError(f"--orchestrator gcp-vm needs {', '.join(missing)}")
    try:
        settings_vm = ComputeSettings(
            project=str(project),
            zone=str(zone),
            image_registry=str(registry),
            results=str(results),
        )
        request = instance_request(spec, run_id, settings_vm)
    except ValueError as exc:
        raise ZenMLError(str(exc)) from exc
    output.write_text(
        compute_v1.InsertInstanceRequest.to_json(request), encoding="utf-8"
    )
    out.print(f"wrote the instances.insert request of run {run_id} to {output}")


# Integrations ------------------------------------------------------------


@main.group()
def integration() -> None:
    """What each integration needs, and what installs together."""


@integration.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@_friendly_errors
def integration_list(as_json: bool) -> None:
    """Each integration: its extra, whether it is installed, its image, built or not."""
    from zenml.integrations.registry import INTEGRATIONS

    built = _built_images()
    rows: list[dict[str, Any]] = [
        {
            "name": i.name,
            "extra": f"zenml[{i.extra}]",
            "installed": i.installed(),
            "image": f"zenml/{i.image}" if i.image else None,
            "image_built": built.get(i.image) if i.image else None,
            "backends": i.backends,
        }
        for i in INTEGRATIONS.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = _table(
        "integration",
        Column("extra", no_wrap=True),
        "installed",
        Column("image", no_wrap=True),
        "built",
        "backends",
    )
    for row in rows:
        state = {True: "yes", False: "no", None: "-"}
        table.add_row(
            row["name"],
            escape(row["extra"]),
            state[row["installed"]],
            row["image"] or "-",
            state[row["image_built"]],
            row["backends"],
        )
    out.print(table)


def _table(*columns: str | Column) -> Table:
    """A table without borders, which leaves the terminal's width to its data."""
    return Table(
        *columns,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def _built_images() -> dict[str, bool | None]:
    """Which of zenml's images are current on the daemon; None without one."""
    from zenml.images.spec import source_root

    if source_root() is None:
        return {}
    try:
        builder = _builder(None, None)
    except ZenMLError:
        return {}
    return {name: builder.find(name) is not None for name in builder.specs}


@integration.command("matrix")
@click.option(
    "--requirements",
    "-r",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also check each integration with this requirements file.",
)
@_friendly_errors
def integration_matrix(requirements: Path | None) -> None:
    """Resolve every pair of integrations (nothing is built) and print a table."""
    from zenml.images.spec import source_root
    from zenml.integrations.registry import INTEGRATIONS, matrix

    root = source_root()
    if root is None:
        raise ZenMLError(
            "the matrix resolves zenml's extras from its source "
            "checkout; run it from a clone with `pip install -e .`"
        )
    names = list(INTEGRATIONS)
    results = matrix(root, names, requirements)
    table = Table("", *names, *([requirements.name] if requirements else []))
    verdict = {(r.left, r.right): r for r in results}
    verdict.update({(r.right, r.left): r for r in results})
    for left in names:
        cells = []
        for right in [*names, *([requirements.name] if requirements else [])]:
            found = verdict.get((left, right))
            cells.append("-" if found is None else "ok" if found.ok else "CLASH")
        table.add_row(left, *cells)
    out.print(table)
    for result in results:
        if not result.ok:
            out.print(
                f"[red]{result.left} + {result.right}[/]: {escape(result.reason)}",
                markup=True,
                highlight=False,
            )


# Runs --------------------------------------------------------------------


@main.group()
def runs() -> None:
    """Inspect recorded runs."""


def _repository() -> Repository:
    repo = Repository.find()
    if repo is None:
        raise ZenMLError("no zenml repository here or above; run `zenml init` first")
    from zenml.runs import recover_interrupted_runs

    recover_interrupted_runs(repo)
    return repo


def _when(timestamp: float | None) -> str:
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
        if timestamp
        else "-"
    )


def _duration(start: float | None, end: float | None) -> str:
    return f"{end - start:.1f}s" if start and end else "-"


@runs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@click.option("--limit", default=20, show_default=True)
@_friendly_errors
def runs_list(as_json: bool, limit: int) -> None:
    """The latest runs, newest first."""
    rows = _repository().metadata.runs(limit=limit)
    for row in rows:
        row.pop("spec", None)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    # The id is what `runs show` takes, so a narrow terminal must not shorten it.
    run_column = Column(
        "run", no_wrap=True, min_width=max((len(row["id"]) for row in rows), default=3)
    )
    table = _table(run_column, "pipeline", "status", "started", "duration")
    for row in rows:
        table.add_row(
            row["id"],
            row["pipeline"],
            _status(row["status"]),
            _when(row["started"]),
            _duration(row["started"], row["ended"]),
        )
    out.print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@_friendly_errors
def runs_show(run_id: str, as_json: bool) -> None:
    """A run's steps (status, image, image id, lock, duration, exit), artifacts."""
    run = _repository().metadata.run(run_id)
    run.pop("spec", None)
    if as_json:
        click.echo(json.dumps(run, indent=1))
        return
    out.print(
        f"Run [bold]{run['id']}[/] of pipeline {run['pipeline']}: "
        f"{_status(run['status'])} ({run['orchestrator']}, "
        f"{_duration(run['started'], run['ended'])})"
    )
    if run["error"]:
        out.print(f"  {run['error']}")
    table = _table("step", "status", "image", "image id", "lock", "duration", "exit")
    for step in run["steps"]:
        table.add_row(
            step["name"],
            _status(step["status"]),
            step["image"] or "-",
            (step["image_id"] or "-").removeprefix("sha256:")[:12],
            (step["image_lock"] or "-")[:12],
            _duration(step["started"], step["ended"]),
            "-" if step["exit_code"] is None else str(step["exit_code"]),
        )
    out.print(table)
    # Paths as plain lines, never folded, so they can be copied whole.
    artifacts = [
        (f"{step['name']}.{artifact['name']}", artifact["uri"])
        for step in run["steps"]
        for artifact in step["artifacts"]
    ]
    if artifacts:
        width = max(len(name) for name, _ in artifacts)
        out.print("Artifacts:")
        for name, uri in artifacts:
            out.print(
                f"  {name:<{width}}  {uri}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


@runs.command("logs")
@click.argument("run_id")
@click.argument("step", required=False)
@_friendly_errors
def runs_logs(run_id: str, step: str | None) -> None:
    """What a run's steps printed, step by step."""
    repo = _repository()
    run = repo.metadata.run(run_id)
    names = [s["name"] for s in run["steps"]]
    if step is not None and step not in names:
        raise ZenMLError(f"run {run['id']} has no step {step!r}; it has {names}")
    for name in [step] if step else names:
        log = (
            repo.artifact_store.step_dir(run["pipeline"], run["id"], name) / "logs.txt"
        )
        if log.is_file():
            for line in log.read_text(encoding="utf-8").splitlines():
                click.echo(f"[{name}] {line}")


def _status(status: str) -> str:
    colour = {
        "completed": "green",
        "cached": "green",
        "failed": "red",
        "cancelled": "yellow",
        "interrupted": "yellow",
    }.get(status, "white")
    return f"[{colour}]{status}[/]"


# Images ------------------------------------------------------------------


@main.group()
def image() -> None:
    """Build and inspect zenml's images."""


class _BuildProgress:
    """Build output as it streams, under a bar per image of its Dockerfile steps."""

    _STEP = re.compile(r"^\s*(\S+) \| Step (\d+)/(\d+) : (.*)$")
    _DONE = re.compile(r"^\s*(\S+) \| Successfully tagged ")

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, line: str) -> None:
        self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        if step := self._STEP.match(line):
            name, number, total, instruction = step.groups()
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, total=int(total))
            self.progress.update(
                self.tasks[name],
                completed=int(number) - 1,
                description=f"{name}: {escape(instruction[:40])}",
            )
        elif done := self._DONE.match(line):
            task = self.tasks.get(done.group(1))
            if task is not None:
                self.progress.update(task, completed=self.progress.tasks[task].total)

    def __enter__(self) -> _BuildProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _builder(
    parent: str | None,
    wheelhouse: Path | None,
    printer: Callable[[str], None] | None = None,
) -> Any:
    from zenml.images.builder import ImageBuilder
    from zenml.orchestrators.docker import connect

    return ImageBuilder(
        connect(),
        parent=parent,
        wheelhouse_dir=wheelhouse,
        printer=printer
        or (
            lambda line: console.print(
                line, markup=False, highlight=False, soft_wrap=True
            )
        ),
    )


@image.command("build")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild even when nothing changed.")
@click.option(
    "--parent",
    help="Parent of the base image [env ZENML_PARENT_IMAGE; default python:3.11-slim].",
)
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of wheels to install from (filled on the host).",
)
@click.option(
    "--dockerfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Build your own image FROM a zenml image, with every check.",
)
@click.option("--tag", help="Tag of the image built from --dockerfile.")
@click.option(
    "--from",
    "from_",
    metavar="NAME",
    help="The zenml image --dockerfile builds FROM (default: read from it).",
)
@click.option(
    "--user", help="Run the --dockerfile image as this user (created if missing)."
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="A build argument of the named images, e.g. BEAM_SDK_IMAGE=...; repeatable.",
)
@_friendly_errors
def image_build(
    names: tuple[str, ...],
    force: bool,
    parent: str | None,
    wheelhouse: Path | None,
    dockerfile: Path | None,
    tag: str | None,
    from_: str | None,
    user: str | None,
    build_args: tuple[str, ...],
) -> None:
    """Build NAMES (default: all) and their parents, where anything changed.

    With --dockerfile, build your own image FROM a zenml image instead.
    """
    started = time.monotonic()
    with _BuildProgress() as display:
        builder = _builder(parent, wheelhouse, display)
        if dockerfile is not None:
            from zenml.images.custom import CustomImage, build_custom

            if not tag:
                raise ZenMLError("--dockerfile needs --tag NAME:TAG for the new image")
            custom = CustomImage.from_dockerfile(dockerfile, tag, from_, user)
            image_id = build_custom(builder, custom)
            out.print(f"{tag}  {image_id[:19]}  in {time.monotonic() - started:.0f}s")
            return
        results = builder.build(
            list(names),
            force=force,
            build_args=dict(_parse_pairs(build_args, "--build-arg", "KEY=VALUE")),
        )
    width = max((len(result.name) for result in results), default=0)
    for result in results:
        verb = "built" if result.built else "up to date"
        out.print(
            f"{result.name:<{width}}  {verb:<10} {result.tag}  {result.image_id[:19]}"
        )
    out.print(f"{len(results)} images in {time.monotonic() - started:.2f}s")


@image.command("lock")
@click.argument("names", nargs=-1)
@_friendly_errors
def image_lock(names: tuple[str, ...]) -> None:
    """Resolve NAMES (default: all) with their parents and write their locks."""
    _builder(None, None).lock(list(names))


@image.command("about")
def image_about() -> None:
    """What this image holds (the default command of every zenml image)."""
    from zenml.images.about import describe

    click.echo(describe())


@image.command("parent")
@click.option("--tag", default="zenml/python:3.11-bookworm", show_default=True)
@click.option("--suite", default="bookworm", show_default=True)
@_friendly_errors
def image_parent(tag: str, suite: str) -> None:
    """Make a Python 3.11 parent image with debootstrap, without any registry."""
    from zenml.images.parent import make_parent
    from zenml.orchestrators.docker import connect

    make_parent(
        connect(),
        tag=tag,
        suite=suite,
        printer=lambda line: console.print(line, markup=False, soft_wrap=True),
    )
    out.print(
        f"parent image {tag} ready; build with `zenml image build --parent {tag}`"
    )


if __name__ == "__main__":
    main()

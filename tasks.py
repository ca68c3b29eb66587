"""Developer tasks, run with invoke: images, lock, parent, test."""

from __future__ import annotations

from invoke import Context, task


@task(
    help={
        "names": "Images to build, comma-separated (default: all).",
        "force": "Rebuild even when nothing changed.",
        "parent": "Parent of the base image (default: python:3.11-slim).",
    }
)
def images(c: Context, names: str = "", force: bool = False, parent: str = "") -> None:
    """Build zenml's images, parents first, streaming the build output."""
    command = ["zenml", "image", "build", *filter(None, names.split(","))]
    if force:
        command.append("--force")
    if parent:
        command += ["--parent", parent]
    c.run(" ".join(command), pty=False)


@task(help={"names": "Images to lock, comma-separated (default: all)."})
def lock(c: Context, names: str = "") -> None:
    """Re-resolve the images' locks on this host."""
    c.run(" ".join(["zenml", "image", "lock", *filter(None, names.split(","))]))


@task(help={"tag": "Tag of the parent image to make."})
def parent(c: Context, tag: str = "zenml/python:3.11-bookworm") -> None:
    """Make a Python 3.11 parent image with debootstrap, without any registry."""
    c.run(f"zenml image parent --tag {tag}")


@task
def test(c: Context) -> None:
    """Run the whole test suite, as CI does."""
    c.run("python -m pytest -q")

"""zenml's images on the real daemon: layering, defaults, and no needless builds."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import docker.errors
import pytest

from zenml.exceptions import ImageBuildError
from zenml.images.builder import ImageBuilder

pytestmark = pytest.mark.usefixtures("images")


def _layers(client: docker.DockerClient, tag: str) -> list[str]:
    return list(client.images.get(tag).attrs["RootFS"]["Layers"])


@pytest.mark.parametrize("name", ["gcp", "pytorch", "cortex", "tensorflow"])
def test_integration_images_are_built_on_the_base_layers(
    docker_client: docker.DockerClient, images: dict[str, str], name: str
) -> None:
    base = _layers(docker_client, images["base"])
    child = _layers(docker_client, images[name])

    assert child[: len(base)] == base
    assert len(child) > len(base)


def test_friendly_tags_point_at_the_content_tagged_image(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    import zenml

    for name, tag in images.items():
        current = docker_client.images.get(tag).id
        assert (
            docker_client.images.get(f"zenml/{name}:{zenml.__version__}").id == current
        )
        assert docker_client.images.get(f"zenml/{name}:latest").id == current


def test_running_an_image_without_arguments_describes_it(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    output = docker_client.containers.run(images["pytorch"], remove=True).decode()

    assert "zenml/pytorch: zenml 0.1.0 on Python 3.11" in output
    assert "torch" in output and "2.13.0+cpu" in output
    assert "training: PyTorch" in output


def test_a_second_build_builds_nothing(docker_client: docker.DockerClient) -> None:
    results = ImageBuilder(docker_client, printer=lambda line: None).build([])

    assert [r.name for r in results] == [
        "base",
        "gcp",
        "pytorch",
        "cortex",
        "tensorflow",
    ]
    assert not any(r.built for r in results)


@pytest.fixture
def cortex_tags(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> Iterator[list[str]]:
    """Images a test builds as cortex; the friendly tags move back afterwards."""
    made: list[str] = []
    yield made
    current = docker_client.images.get(images["cortex"])
    for friendly in ImageBuilder(docker_client).specs["cortex"].friendly_tags:
        repository, _, label = friendly.rpartition(":")
        current.tag(repository, label)
    for tag in made:
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_a_changed_transitive_pin_rebuilds_only_its_image(
    docker_client: docker.DockerClient,
    images: dict[str, str],
    cortex_tags: list[str],
    tmp_path: Path,
) -> None:
    """pyasn1-modules is no requirement of zenml's, only of google-auth's."""
    builder = ImageBuilder(docker_client, printer=lambda line: None)
    context = tmp_path / "cortex"
    shutil.copytree(builder.specs["cortex"].context, context)
    lock = context / "requirements.lock"
    text, moved = re.subn(
        r"^pyasn1_modules==0\.4\.2.*$",
        "pyasn1_modules==0.4.1",
        lock.read_text(),
        flags=re.MULTILINE,
    )
    assert moved == 1
    lock.write_text(text)
    builder.specs["cortex"] = replace(builder.specs["cortex"], context=context)

    first = builder.build(["cortex"])
    cortex_tags.append(first[-1].tag)
    again = builder.build(["cortex"])

    assert [(r.name, r.built) for r in first] == [("base", False), ("cortex", True)]
    assert first[-1].tag != images["cortex"]
    assert not any(r.built for r in again)
    assert again[-1].tag == first[-1].tag
    listing = docker_client.containers.run(
        first[-1].tag, ["pip", "list", "--format=freeze"], remove=True
    ).decode()
    assert "pyasn1_modules==0.4.1" in listing.replace("-", "_")


def test_the_cpu_pytorch_image_holds_no_nvidia_packages(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    listing = docker_client.containers.run(
        images["pytorch"], ["pip", "list", "--format=freeze"], remove=True
    ).decode()

    assert "torch==2.13.0+cpu" in listing
    assert "nvidia" not in listing.lower()


def test_images_run_as_a_non_root_user_with_a_utf8_locale(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    output = (
        docker_client.containers.run(
            images["base"],
            [
                "python",
                "-c",
                "import locale, os; print(os.getuid(), locale.getpreferredencoding())",
            ],
            remove=True,
        )
        .decode()
        .split()
    )

    assert output[0] != "0"
    assert output[1] == "UTF-8"


def test_the_self_test_passes_in_every_image(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    for tag in images.values():
        output = docker_client.containers.run(
            tag,
            ["python", "-m", "zenml.images.selftest"],
            remove=True,
            network_mode="none",
        ).decode()
        assert "self-test passed" in output


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        ("/usr/lib/python3.11/venv", "no venv module"),
        ("/usr/bin/python3 /usr/bin/python3.11", "no working python3"),
    ],
)
def test_a_parent_that_cannot_hold_the_base_is_refused_before_any_build(
    docker_client: docker.DockerClient, removed: str, named: str
) -> None:
    parent = ImageBuilder(docker_client, printer=lambda line: None).parent
    tag = "zenml-test/broken-parent:1"
    docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {parent}\nRUN rm -rf {removed}\n".encode()),
        tag=tag,
        network_mode="none",
        rm=True,
    )
    try:
        builder = ImageBuilder(docker_client, parent=tag, printer=lambda line: None)
        with pytest.raises(ImageBuildError) as failure:
            builder.build(["base"])

        message = str(failure.value)
        assert tag in message and named in message
        assert "zenml image parent" in message
        assert not docker_client.containers.list(all=True, filters={"ancestor": tag})
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(builder.content_tag(builder.specs["base"]))
    finally:
        docker_client.images.remove(tag, force=True)


BOOT_STAND_IN = """\
FROM {parent}
RUN mkdir -p /opt/apache/beam \\
 && printf '#!/bin/sh\\necho "beam boot: $*"\\n' > /opt/apache/beam/boot \\
 && chmod +x /opt/apache/beam/boot
"""


@pytest.fixture
def dataflow_builder(docker_client: docker.DockerClient) -> Iterator[ImageBuilder]:
    """A builder, and removal of the gcp-dataflow images it makes."""
    builder = ImageBuilder(docker_client, printer=lambda line: None)
    yield builder
    for image in docker_client.images.list("zenml/gcp-dataflow"):
        docker_client.images.remove(image.id, force=True)
    for tag in ("zenml-test/beam-sdk:stand-in",):
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_the_dataflow_image_needs_beams_sdk_image_and_says_how_to_get_it(
    dataflow_builder: ImageBuilder,
) -> None:
    with pytest.raises(ImageBuildError) as failure:
        dataflow_builder.build(
            ["gcp-dataflow"],
            build_args={"BEAM_SDK_IMAGE": "zenml-test/no-such-beam-sdk:1"},
        )

    message = str(failure.value)
    assert "zenml-test/no-such-beam-sdk:1" in message
    assert "docker load" in message and "--build-arg BEAM_SDK_IMAGE=" in message


def test_the_dataflow_image_is_the_gcp_image_with_beams_boot_entrypoint(
    docker_client: docker.DockerClient,
    images: dict[str, str],
    dataflow_builder: ImageBuilder,
) -> None:
    """A stand-in for Beam's SDK image proves the copy and the entrypoint."""
    docker_client.images.build(
        fileobj=io.BytesIO(
            BOOT_STAND_IN.format(parent=dataflow_builder.parent).encode()
        ),
        tag="zenml-test/beam-sdk:stand-in",
        network_mode="none",
        rm=True,
    )

    [*_, built] = dataflow_builder.build(
        ["gcp-dataflow"],
        build_args={"BEAM_SDK_IMAGE": "zenml-test/beam-sdk:stand-in"},
    )

    image = docker_client.images.get(built.tag)
    assert image.attrs["Config"]["Entrypoint"] == ["/opt/apache/beam/boot"]
    gcp_layers = _layers(docker_client, images["gcp"])
    assert _layers(docker_client, built.tag)[: len(gcp_layers)] == gcp_layers
    output = docker_client.containers.run(
        built.tag, ["--worker_pool"], remove=True
    ).decode()
    assert output.strip() == "beam boot: --worker_pool"

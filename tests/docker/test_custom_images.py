"""Images built FROM zenml's: clashes caught at build time, with who asked for what."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from zenml.exceptions import ImageBuildError
from zenml.images import wheelhouse
from zenml.images.builder import ImageBuilder
from zenml.images.custom import CustomImage, build_custom
from zenml.pipelines import load_pipeline
from zenml.repository import Repository
from zenml.runs import run_pipeline

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom-image"

pytestmark = pytest.mark.usefixtures("images", "no_leftovers")


@pytest.fixture
def builder(docker_client: docker.DockerClient, tmp_path: Path) -> ImageBuilder:
    """A builder with a private wheelhouse seeded from the shared one."""
    wheels = tmp_path / "wheelhouse"
    wheels.mkdir()
    for wheel in wheelhouse.default_wheelhouse().glob("*.whl"):
        os.link(wheel, wheels / wheel.name)
    return ImageBuilder(docker_client, wheelhouse_dir=wheels, printer=lambda line: None)


@pytest.fixture
def tags(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Tags a test builds; removed afterwards, whatever happened."""
    made: list[str] = []
    yield made
    for tag in made:
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def _project(tmp_path: Path, dockerfile: str, requirements: str | None = None) -> Path:
    folder = tmp_path / "image"
    folder.mkdir()
    (folder / "Dockerfile").write_text(dockerfile)
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder / "Dockerfile"


def _add_wheels(builder: ImageBuilder, *pins: str, deps: bool = False) -> None:
    """Put wheels the user's Dockerfile installs by hand into the wheelhouse."""
    assert builder.wheelhouse_dir is not None
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            *([] if deps else ["--no-deps"]),
            "--quiet",
            "--wheel-dir",
            str(builder.wheelhouse_dir),
            *pins,
        ],
        check=True,
    )


def _installs_by_hand(parent: str, *pins: str) -> str:
    """A Dockerfile that installs `pins` with pip, ignoring zenml's lock."""
    quoted = " ".join(f'"{p}"' for p in pins)
    return (
        f"ARG BASE=zenml/{parent}:latest\nFROM ${{BASE}}\nARG WHEELS=\n"
        f'RUN pip install --no-index --find-links "$WHEELS" --no-deps {quoted}\n'
    )


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_the_example_image_builds_and_a_step_runs_in_it(
    builder: ImageBuilder, tags: list[str], repository: Repository
) -> None:
    tags.append("zenml-example/sklearn:1")
    printed: list[str] = []
    builder.printer = printed.append

    build_custom(builder, CustomImage.from_dockerfile(EXAMPLE / "Dockerfile", tags[0]))
    spec = load_pipeline(EXAMPLE / "pipeline.py").compile()
    result = run_pipeline(spec, orchestrator="docker", repository=repository)

    assert result.artifact("fit_tree") > 0.9
    # zenml passes only the build arguments the Dockerfile declares.
    assert not [line for line in printed if "were not consumed" in line]


def test_a_user_image_installing_protobuf_7_fails_naming_beams_range(
    builder: ImageBuilder,
    tags: list[str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    tags.append("zenml-test/protobuf:1")
    _add_wheels(builder, "protobuf==7.36.2")
    dockerfile = _project(tmp_path, _installs_by_hand("base", "protobuf>=7"))

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = str(failure.value)
    assert "protobuf 7.36.2 is installed" in message
    assert "apache-beam" in message and "<7" in message
    assert not _image_exists(docker_client, tags[0])


def test_a_requirements_file_asking_for_protobuf_7_fails_before_the_build(
    builder: ImageBuilder, tags: list[str], tmp_path: Path
) -> None:
    tags.append("zenml-test/protobuf-requirement:1")
    dockerfile = _project(
        tmp_path, (EXAMPLE / "Dockerfile").read_text(), "protobuf>=7\n"
    )

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = str(failure.value)
    assert "Nothing was built" in message
    who = message[message.index("Who asks for what:") :]
    # Beam's range as the base image holds it, and the version asked for.
    assert re.search(
        r"apache-beam 2\.77\.0 in the image requires protobuf\S*<7\S*, but the "
        r"requirements need protobuf 7\.",
        who,
    )
    assert "WARNING: Location" not in message


def test_a_later_layer_upgrading_past_beams_range_fails_at_the_check(
    builder: ImageBuilder,
    tags: list[str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    # Beam caps numpy below 2.5, but numpy 2.5 needs Python 3.12; its cap on
    # pyarrow (below 26) is the same kind of range with a release past it.
    tags.append("zenml-test/pyarrow:1")
    _add_wheels(builder, "pyarrow==26.0.1")
    dockerfile = _project(tmp_path, _installs_by_hand("base", "pyarrow==26.0.1"))

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = str(failure.value)
    assert "pyarrow is 26.0.1, but the lock pins 25" in message
    assert "apache-beam" in message and "<26" in message
    assert not _image_exists(docker_client, tags[0])


def test_tensorflow_beside_beam_on_a_protobuf_it_cannot_load_fails_naming_both(
    builder: ImageBuilder,
    tags: list[str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """Beam accepts protobuf 5.28.0 and so does TensorFlow 2.20's metadata, and
    `pip check` is content; TensorFlow's generated code is not."""
    tags.append("zenml-test/tf-beam:1")
    pins = ("tensorflow-cpu==2.20.0", "protobuf==5.28.0")
    _add_wheels(builder, *pins, deps=True)
    quoted = " ".join(f'"{p}"' for p in pins)
    dockerfile = _project(
        tmp_path,
        "ARG BASE=zenml/base:latest\nFROM ${BASE}\nARG WHEELS=\n"
        f'RUN pip install --no-index --find-links "$WHEELS" {quoted}\n',
    )

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = " ".join(str(failure.value).split())
    assert "import tensorflow failed" in message
    assert "protobuf 5.28.0 is installed" in message
    assert re.search(r"apache-beam \S+ requires protobuf\S*<7", message)
    assert re.search(r"tensorflow[-_]cpu 2\.20\.0 requires protobuf>=5\.28\.0", message)
    assert not _image_exists(docker_client, tags[0])


def test_aiplatform_2_from_the_gcp_image_fails_naming_the_extras_cap(
    builder: ImageBuilder, tags: list[str], tmp_path: Path
) -> None:
    tags.append("zenml-test/aiplatform:1")
    _add_wheels(builder, "google-cloud-aiplatform==2.7.0")
    dockerfile = _project(
        tmp_path, _installs_by_hand("gcp", "google-cloud-aiplatform==2.7.0")
    )

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = str(failure.value)
    assert "google-cloud-aiplatform 2.7.0 is installed" in message
    assert "apache-beam[gcp]" in message


def test_requirements_that_clash_with_the_parent_fail_before_any_build(
    builder: ImageBuilder,
    tags: list[str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    tags.append("zenml-test/tf-and-torch:1")
    dockerfile = _project(
        tmp_path,
        (EXAMPLE / "Dockerfile").read_text().replace("zenml/base", "zenml/pytorch"),
        # TensorFlow 2.13 caps typing-extensions below 4.6; torch needs 4.10.
        "tensorflow-cpu==2.13.1\n",
    )
    images_before = len(docker_client.images.list(all=True))

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = str(failure.value)
    assert "typing-extensions" in message.lower() or "typing_extensions" in message
    assert "torch" in message and "tensorflow-cpu" in message
    assert "separate images" in message
    # Both ranges, each with its requirer.
    assert re.search(
        r"tensorflow-cpu 2\.13\.1 requires typing.extensions<4\.6", message
    )
    assert re.search(
        r"torch \S+ in the image requires typing.extensions>=4\.10", message
    )
    assert "WARNING: Location" not in message
    assert len(docker_client.images.list(all=True)) == images_before


def test_a_missing_shared_library_is_named_with_a_remedy(
    builder: ImageBuilder, tags: list[str], tmp_path: Path
) -> None:
    tags.append("zenml-test/opencv:1")
    dockerfile = _project(
        tmp_path, (EXAMPLE / "Dockerfile").read_text(), "opencv-python\n"
    )

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = str(failure.value)
    assert "import cv2 failed" in message
    assert re.search(r"lib[\w+-]+\.so(\.\d+)*: cannot open shared object file", message)
    assert "headless" in message and "apt-get" in message


def test_a_user_missing_from_the_parent_is_created_and_runs_the_image(
    builder: ImageBuilder,
    tags: list[str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    tags.append("zenml-test/analyst:1")
    dockerfile = _project(tmp_path, "ARG BASE=zenml/base:latest\nFROM ${BASE}\n")

    build_custom(
        builder, CustomImage.from_dockerfile(dockerfile, tags[0], user="analyst")
    )

    output = docker_client.containers.run(tags[0], ["id", "-un"], remove=True)
    assert output.decode().strip() == "analyst"


def test_an_invalid_user_name_fails_before_any_build(
    builder: ImageBuilder, tmp_path: Path
) -> None:
    dockerfile = _project(tmp_path, "ARG BASE=zenml/base:latest\nFROM ${BASE}\n")

    with pytest.raises(ImageBuildError, match="not valid"):
        build_custom(
            builder,
            CustomImage.from_dockerfile(dockerfile, "zenml-test/x:1", user="Bad User"),
        )


def test_a_dockerfile_not_from_a_zenml_image_is_refused(tmp_path: Path) -> None:
    dockerfile = _project(tmp_path, "FROM debian:bookworm\n")

    with pytest.raises(ImageBuildError, match="does not build FROM a zenml image"):
        CustomImage.from_dockerfile(dockerfile, "zenml-test/x:1")


def test_a_build_from_a_wheelhouse_succeeds_with_the_network_cut_off(
    builder: ImageBuilder,
    tags: list[str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """The build's own steps cannot reach the internet, yet the install works."""
    tags.append("zenml-test/offline:1")
    reaches_out = (
        "import socket; socket.create_connection(('pypi.org', 443), timeout=5)"
    )
    dockerfile = _project(
        tmp_path,
        "ARG BASE=zenml/base:latest\nFROM ${BASE}\nARG WHEELS=\n"
        f'RUN ! python -c "{reaches_out}"\n'
        "COPY requirements.txt /tmp/requirements.txt\n"
        'RUN pip install --no-index --find-links "$WHEELS" '
        "-c /opt/zenml/locks/base.lock -r /tmp/requirements.txt\n",
        requirements="tabulate\n",
    )

    build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    output = docker_client.containers.run(
        tags[0], ["python", "-c", "import tabulate; print('imported')"], remove=True
    )
    assert output.decode().strip() == "imported"


def test_a_libc_without_wheels_shows_pips_own_error(
    builder: ImageBuilder, tags: list[str], tmp_path: Path
) -> None:
    """The wheelhouse holds only glibc (manylinux) wheels, as a host fills it;
    an install for a musl platform, as on an Alpine parent, finds none of
    polars' compiled part, and pip says so itself."""
    tags.append("zenml-test/musl:1")
    _add_wheels(builder, "polars", deps=True)
    dockerfile = _project(
        tmp_path,
        "ARG BASE=zenml/base:latest\nFROM ${BASE}\nARG WHEELS=\n"
        'RUN pip download --no-index --find-links "$WHEELS" --only-binary=:all: '
        "--platform musllinux_1_2_x86_64 -d /tmp/w polars\n",
    )

    with pytest.raises(ImageBuildError) as failure:
        build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    message = str(failure.value)
    assert "No matching distribution found for polars" in message
    assert "returned a non-zero code" in message


def test_pip_in_the_image_installs_for_the_default_user(
    docker_client: docker.DockerClient, images: dict[str, str], builder: ImageBuilder
) -> None:
    """`pip install` as the image's user lands where zenml's Python imports from."""
    _add_wheels(builder, "six")
    wheels = str(builder.wheelhouse_dir)
    output = (
        docker_client.containers.run(
            images["base"],
            [
                "sh",
                "-c",
                f"pip install --no-index --find-links {wheels} six >/dev/null "
                "&& python -c 'import six; print(six.__file__)' && id -un",
            ],
            volumes={wheels: {"bind": wheels, "mode": "ro"}},
            remove=True,
        )
        .decode()
        .split()
    )

    assert output[0].startswith("/opt/zenml/venv/")
    assert output[1] == "zenml"


def test_no_build_secret_or_wheelhouse_is_left_in_any_layer(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    for tag in images.values():
        history = " ".join(
            layer.get("CreatedBy", "")
            for layer in docker_client.images.get(tag).history()
        )
        assert "BEGIN CERTIFICATE" not in history
        listing = docker_client.containers.run(
            tag,
            [
                "sh",
                "-c",
                "ls /etc/pip.conf /etc/xdg/pip ~/.config/pip ~/.cache/pip "
                "/opt/zenml/wheelhouse 2>/dev/null; "
                "env | grep -i -E 'PIP_(CERT|INDEX)' || true",
            ],
            remove=True,
        ).decode()
        assert listing.strip() == "", (tag, listing)


def test_a_host_ca_bundle_is_not_in_any_image(
    docker_client: docker.DockerClient, images: dict[str, str], tmp_path: Path
) -> None:
    """Certificates only the host trusts (a proxy's, say) are found in no image."""
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not host_bundle.is_file():
        pytest.skip("the host has no CA bundle to compare")
    image_bundle = docker_client.containers.run(
        images["base"], ["cat", "/etc/ssl/certs/ca-certificates.crt"], remove=True
    ).decode()
    host_only = [
        block.split("-----BEGIN CERTIFICATE-----")[-1].strip().splitlines()[0]
        for block in host_bundle.read_text().split("-----END CERTIFICATE-----")
        if "BEGIN CERTIFICATE" in block
        and block.split("-----BEGIN CERTIFICATE-----")[-1].strip() not in image_bundle
    ]
    if not host_only:
        pytest.skip("every certificate the host trusts is in the images already")
    patterns = tmp_path / "patterns"
    patterns.write_text("\n".join(host_only) + "\n")
    patterns.chmod(0o644)
    tmp_path.chmod(0o755)

    for tag in images.values():
        found = (
            docker_client.containers.run(
                tag,
                [
                    "sh",
                    "-c",
                    "grep -rl -F -f /patterns /etc /opt /home 2>/dev/null || true",
                ],
                volumes={str(patterns): {"bind": "/patterns", "mode": "ro"}},
                remove=True,
            )
            .decode()
            .strip()
        )
        assert found == "", (tag, found)


def test_a_cpu_image_pulling_torch_transitively_gets_the_cpu_build(
    builder: ImageBuilder,
    tags: list[str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    tags.append("zenml-test/torchmetrics:1")
    dockerfile = _project(
        tmp_path, (EXAMPLE / "Dockerfile").read_text(), "torchmetrics\n"
    )

    build_custom(builder, CustomImage.from_dockerfile(dockerfile, tags[0]))

    listing = docker_client.containers.run(
        tags[0], ["pip", "list", "--format=freeze"], remove=True
    ).decode()
    assert "torchmetrics==" in listing
    assert "+cpu" in next(
        line for line in listing.splitlines() if line.startswith("torch==")
    )
    assert "nvidia" not in listing.lower()

"""Content tags: unchanged means the same tag, any change a new one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zenml.exceptions import ZenMLError
from zenml.images.spec import ImageSpec, builtin_images, with_ancestors


@pytest.fixture
def context(tmp_path: Path) -> Path:
    source = builtin_images()["pytorch"].context
    target = tmp_path / "pytorch"
    shutil.copytree(source, target)
    return target


def test_the_same_inputs_give_the_same_tag(context: Path) -> None:
    spec = ImageSpec(name="pytorch", context=context, parent="base")

    assert spec.content_tag("parent-a") == spec.content_tag("parent-a")
    assert spec.content_tag("parent-a").startswith("zenml/pytorch:0.1.0-")


def test_a_change_to_one_transitive_pin_changes_the_tag(context: Path) -> None:
    spec = ImageSpec(name="pytorch", context=context, parent="base")
    before = spec.content_tag("parent-a")
    lock = spec.lock_path.read_text()
    assert "sympy==" in lock

    spec.lock_path.write_text(lock.replace("sympy==1.14.0", "sympy==1.13.3"))

    assert spec.content_tag("parent-a") != before


def test_a_new_parent_or_build_argument_changes_the_tag(context: Path) -> None:
    spec = ImageSpec(name="pytorch", context=context, parent="base")

    assert spec.content_tag("parent-a") != spec.content_tag("parent-b")
    assert spec.with_build_args(TORCH_VARIANT="cuda").content_tag("parent-a") != (
        spec.content_tag("parent-a")
    )


def test_ancestors_come_first_and_unknown_images_are_named() -> None:
    specs = builtin_images()

    assert [s.name for s in with_ancestors(["cortex", "pytorch"], specs)] == [
        "base",
        "cortex",
        "pytorch",
    ]
    with pytest.raises(ZenMLError, match="no image named 'nosuch'"):
        with_ancestors(["nosuch"], specs)

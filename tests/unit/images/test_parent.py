"""What the base image's parent must offer, from its probe's answer."""

from __future__ import annotations

from zenml.images.parent import parent_problems

DEBIAN = {"python": "3.11", "venv": True, "libc": "glibc"}


def test_a_debian_python_parent_will_do() -> None:
    assert parent_problems(DEBIAN, "3.11") == []


def test_a_musl_parent_is_refused_naming_the_wheels_it_cannot_install() -> None:
    [problem] = parent_problems({**DEBIAN, "libc": ""}, "3.11")

    assert "musl" in problem and "manylinux" in problem


def test_another_python_and_no_venv_are_both_named() -> None:
    problems = parent_problems({**DEBIAN, "python": "3.12", "venv": False}, "3.11")

    assert "Python 3.12" in problems[0] and "Python 3.11" in problems[0]
    assert "apt-get install python3.11-venv" in problems[1]

"""The image self-test's explanations, checked against this Python's packages."""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

from zenml.images import selftest

MISMATCH = (
    "Detected incompatible Protobuf Gencode/Runtime versions when loading "
    "tensorflow/core/framework/attr_value.proto: gencode 9.0.1 runtime 5.28.0."
)


def test_requirers_name_each_distribution_and_its_range() -> None:
    found = selftest.requirers("protobuf")

    beam = [line for line in found if line.startswith("apache-beam ")]
    assert beam and "requires protobuf" in beam[0] and "<7" in beam[0]


def test_a_protobuf_mismatch_names_the_runtime_the_gencode_and_the_requirers() -> None:
    hint = selftest.protobuf_hint(MISMATCH)

    assert "made by protobuf 9.0.1" in hint
    assert "apache-beam" in hint and "requires protobuf" in hint
    assert "separate images" in hint


def test_an_import_failing_on_protobuf_gets_the_explanation(
    tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "needs_new_protobuf.py").write_text(f"raise ImportError({MISMATCH!r})")
    monkeypatch.syspath_prepend(str(tmp_path))

    [problem] = selftest.import_problems(("needs_new_protobuf",))

    assert problem.startswith("import needs_new_protobuf failed: Detected")
    assert "The protobuf requirements in the image:" in problem


def test_a_lock_differing_from_what_is_installed_is_reported(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("# header\nprotobuf==1.0  # sha256:00\nsix==1.17.0\n")

    problems = selftest.lock_problems(
        lock, {"protobuf": "5.28.0", "six": "1.17.0", "extra-thing": "1"}, strict=True
    )

    assert problems == [
        "protobuf is 5.28.0, but the lock pins 1.0: a later install changed a "
        "package a lower layer installed",
        "extra-thing==1 is installed but not in the lock",
    ]


def _report(*items: tuple[str, str, list[str]]) -> dict:
    return {
        "install": [
            {"metadata": {"name": n, "version": v, "requires_dist": r}}
            for n, v, r in items
        ]
    }


def test_clashes_name_a_needed_range_against_the_installed_version() -> None:
    click = metadata.version("click")

    found = selftest.clashes(_report(("userpkg", "1.0", ["click<1"])))

    assert found == [f"userpkg 1.0 requires click<1, but the image holds click {click}"]


def test_clashes_name_an_installed_range_against_the_needed_version() -> None:
    found = selftest.clashes(_report(("rich", "0.1", [])))

    assert any(
        line.startswith("zenml ")
        and "requires rich" in line
        and line.endswith("but the requirements need rich 0.1")
        for line in found
    ), found


def test_ranges_that_meet_and_other_platforms_are_no_clash() -> None:
    report = _report(("userpkg", "1.0", ["click>=1", 'click<1; sys_platform == "nt"']))

    assert selftest.clashes(report) == []

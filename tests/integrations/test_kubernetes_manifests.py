"""Tests of the Kubernetes Jobs a pipeline run exports, on the quickstart."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from zenml.entrypoint import Task
from zenml.integrations.kubernetes.manifests import (
    PIPELINE_LABEL,
    RUN_LABEL,
    STEP_LABEL,
    UPSTREAM_JOBS_ANNOTATION,
    UPSTREAM_STEPS_ANNOTATION,
    KubernetesSettings,
    cpu_quantity,
    export_manifests,
    job_name,
    label_value,
    manifests_yaml,
    memory_quantity,
    pipeline_jobs,
    write_manifests,
    write_tasks,
)
from zenml.pipelines import load_pipeline
from zenml.spec import PipelineSpec, Resources

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart" / "pipeline.py"
RUN_ID = "20240101-120000-abcdef"
ROOT = "/mnt/zenml/artifacts"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def quickstart() -> PipelineSpec:
    return load_pipeline(QUICKSTART).compile()


@pytest.fixture
def settings() -> KubernetesSettings:
    return KubernetesSettings(artifact_root=ROOT, code_claim="zenml-code")


def by_step(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["annotations"]["zenml.io/step-name"]: m for m in manifests}


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    (only,) = manifest["spec"]["template"]["spec"]["containers"]
    return only


def renamed(spec: PipelineSpec, names: dict[str, str]) -> PipelineSpec:
    """`spec` with steps renamed, inputs rewired to the new names."""
    data = spec.model_dump()
    for step in data["steps"]:
        step["name"] = names.get(step["name"], step["name"])
        for ref in step["inputs"].values():
            ref["step"] = names.get(ref["step"], ref["step"])
    return PipelineSpec.model_validate(data)


def with_resources(spec: PipelineSpec, step: str, **resources: Any) -> PipelineSpec:
    steps = tuple(
        s.model_copy(update={"resources": Resources(**resources)})
        if s.name == step
        else s
        for s in spec.steps
    )
    return spec.model_copy(update={"steps": steps})


def test_each_step_runs_in_its_image(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    jobs = by_step(export_manifests(quickstart, RUN_ID, settings))

    images = {name: container(job)["image"] for name, job in jobs.items()}
    assert images == {
        "ingest": "zenml/base:0.1.0",
        "split": "zenml/base:0.1.0",
        "preprocess": "zenml/base:0.1.0",
        "train": "zenml/pytorch:0.1.0",
        "evaluate": "zenml/pytorch:0.1.0",
        "deploy": "zenml/cortex:0.1.0",
    }


def test_jobs_come_in_execution_order_with_upstream_annotations(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    manifests = export_manifests(quickstart, RUN_ID, settings)

    names = [m["metadata"]["annotations"]["zenml.io/step-name"] for m in manifests]
    assert names == quickstart.execution_order()
    deploy = by_step(manifests)["deploy"]["metadata"]["annotations"]
    assert json.loads(deploy[UPSTREAM_STEPS_ANNOTATION]) == [
        "evaluate",
        "split",
        "train",
    ]
    assert json.loads(deploy[UPSTREAM_JOBS_ANNOTATION]) == [
        job_name(RUN_ID, s) for s in ("evaluate", "split", "train")
    ]
    ingest = by_step(manifests)["ingest"]
    assert (
        json.loads(ingest["metadata"]["annotations"][UPSTREAM_STEPS_ANNOTATION]) == []
    )
    assert "initContainers" not in ingest["spec"]["template"]["spec"]


def test_job_runs_the_entrypoint_once_with_the_store_mounted(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    train = by_step(export_manifests(quickstart, RUN_ID, settings))["train"]

    assert train["apiVersion"] == "batch/v1" and train["kind"] == "Job"
    assert train["spec"]["backoffLimit"] == 0
    assert train["spec"]["ttlSecondsAfterFinished"] == 86_400
    pod = train["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert container(train)["command"] == [
        "python",
        "-m",
        "zenml.entrypoint",
        f"{ROOT}/quickstart/{RUN_ID}/train/task.json",
    ]
    assert container(train)["workingDir"] == quickstart.code_root
    assert {"name": "HOME", "value": "/tmp"} in container(train)["env"]
    assert pod["volumes"] == [
        {
            "name": "artifacts",
            "persistentVolumeClaim": {"claimName": "zenml-artifacts"},
        },
        {
            "name": "code",
            "persistentVolumeClaim": {"claimName": "zenml-code", "readOnly": True},
        },
    ]
    assert container(train)["volumeMounts"] == [
        {"mountPath": ROOT, "name": "artifacts"},
        {"mountPath": quickstart.code_root, "name": "code", "readOnly": True},
    ]


def test_init_container_waits_for_every_upstream_output(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    train = by_step(export_manifests(quickstart, RUN_ID, settings))["train"]

    (wait,) = train["spec"]["template"]["spec"]["initContainers"]
    files = wait["command"][4:]
    run_dir = f"{ROOT}/quickstart/{RUN_ID}"
    assert files == [
        f"{run_dir}/preprocess/{output}/meta.json"
        for output in ("eval", "stats", "train")
    ]
    assert wait["image"] == "zenml/pytorch:0.1.0"


def test_wait_script_passes_on_present_inputs_and_gives_up_on_missing(
    tmp_path: Path, quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    train = by_step(export_manifests(quickstart, RUN_ID, settings))["train"]
    shell, flag, script = train["spec"]["template"]["spec"]["initContainers"][0][
        "command"
    ][:3]
    present = tmp_path / "meta.json"
    present.write_text("{}")

    ok = subprocess.run(
        [shell, flag, script, "5", str(present)], capture_output=True, timeout=30
    )
    missing = subprocess.run(
        [shell, flag, script, "0", str(present), str(tmp_path / "absent.json")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "ZENML_RUN_SELECTOR": "zenml.io/run=r"},
        timeout=30,
    )

    assert ok.returncode == 0
    assert missing.returncode == 1
    assert "absent.json" in missing.stderr
    assert "kubectl get jobs -l zenml.io/run=r" in missing.stderr


def test_resources_become_requests_and_limits(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    spec = with_resources(quickstart, "train", cpu=1.5, memory="4g", gpus=2)
    spec = with_resources(spec, "preprocess", cpu=2, memory="512m", shm_size="1g")

    jobs = by_step(export_manifests(spec, RUN_ID, settings))

    assert container(jobs["train"])["resources"] == {
        "requests": {"cpu": "1500m", "memory": "4Gi"},
        "limits": {"cpu": "1500m", "memory": "4Gi", "nvidia.com/gpu": "2"},
    }
    assert container(jobs["preprocess"])["resources"] == {
        "requests": {"cpu": "2", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "512Mi"},
    }
    pod = jobs["preprocess"]["spec"]["template"]["spec"]
    assert {
        "name": "shm",
        "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"},
    } in pod["volumes"]
    assert {"mountPath": "/dev/shm", "name": "shm"} in container(jobs["preprocess"])[
        "volumeMounts"
    ]
    assert "resources" not in container(jobs["ingest"])


def test_timeout_bounds_the_job(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    steps = tuple(
        s.model_copy(update={"timeout": 90.5}) if s.name == "train" else s
        for s in quickstart.steps
    )
    spec = quickstart.model_copy(update={"steps": steps})

    jobs = by_step(export_manifests(spec, RUN_ID, settings))

    assert jobs["train"]["spec"]["activeDeadlineSeconds"] == 91
    assert "activeDeadlineSeconds" not in jobs["ingest"]["spec"]


@pytest.mark.parametrize(
    ("docker", "kubernetes"),
    [
        ("512m", "512Mi"),
        ("4g", "4Gi"),
        ("4G", "4Gi"),
        ("1.5gb", "1.5Gi"),
        ("2048k", "2048Ki"),
        ("1000", "1000"),
        ("8Gi", "8Gi"),
    ],
)
def test_memory_sizes_keep_dockers_meaning(docker: str, kubernetes: str) -> None:
    assert memory_quantity(docker) == kubernetes


def test_unknown_memory_size_says_which_forms_work() -> None:
    with pytest.raises(ValueError, match=r"512m, 4g.*512Mi, 4Gi"):
        memory_quantity("lots")
    assert cpu_quantity(0.25) == "250m"
    assert cpu_quantity(3.0) == "3"


def test_labels_are_valid_for_step_names_with_spaces_and_parentheses(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    spec = renamed(
        quickstart,
        {"train": "train model (v2)", "evaluate": "evaluate (held-out test split)"},
    )
    run_id = "Nightly run: 2024/01/01 12:00 (manual)"

    manifests = export_manifests(spec, run_id, settings)

    for manifest in manifests:
        for meta in (manifest["metadata"], manifest["spec"]["template"]["metadata"]):
            for value in meta["labels"].values():
                assert len(value) <= 63 and LABEL_VALUE.match(value), value
        name = manifest["metadata"]["name"]
        assert len(name) <= 63 and DNS_LABEL.match(name), name
    jobs = by_step(manifests)
    assert jobs["train model (v2)"]["metadata"]["labels"][STEP_LABEL].startswith(
        "train-model-v2-"
    )
    assert jobs["train model (v2)"]["metadata"]["annotations"] == {
        **jobs["train model (v2)"]["metadata"]["annotations"],
        "zenml.io/step-name": "train model (v2)",
        "zenml.io/run-id": run_id,
    }
    assert {m["metadata"]["labels"][RUN_LABEL] for m in manifests} == {
        label_value(run_id)
    }
    assert {m["metadata"]["labels"][PIPELINE_LABEL] for m in manifests} == {
        "quickstart"
    }
    assert len({m["metadata"]["name"] for m in manifests}) == len(manifests)


def test_label_values_keep_distinct_names_distinct() -> None:
    values = {label_value(n) for n in ("a b", "a-b", "a (b)", "a  b", "(a b)")}
    assert len(values) == 5
    assert label_value("train") == "train"
    long = label_value("x" * 100)
    assert len(long) <= 63 and LABEL_VALUE.match(long)
    assert LABEL_VALUE.match(label_value("((()))"))


def test_manifests_round_trip_through_the_clients_deserializer(
    quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    manifests = export_manifests(
        with_resources(quickstart, "train", cpu=1, memory="2g", gpus=1),
        RUN_ID,
        settings,
    )

    with k8s.ApiClient() as api:
        for manifest in manifests:
            job = api.deserialize(json.dumps(manifest), "V1Job", "application/json")
            assert isinstance(job, k8s.V1Job)
            assert isinstance(job.spec.template.spec.containers[0], k8s.V1Container)
            assert api.sanitize_for_serialization(job) == manifest


def test_yaml_holds_one_document_per_job(
    tmp_path: Path, quickstart: PipelineSpec, settings: KubernetesSettings
) -> None:
    manifests = export_manifests(quickstart, RUN_ID, settings)

    path = write_manifests(manifests, tmp_path / "run.yaml")

    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents == manifests
    assert path.read_text().count("\n---\n") == len(manifests) - 1
    assert manifests_yaml(manifests) == path.read_text()


def test_models_reject_a_job_without_its_required_fields() -> None:
    # The export relies on the client's setters to catch missing fields.
    with pytest.raises(ValueError, match="name"):
        k8s.V1Container(name=None, image="x")
    with pytest.raises(ValueError, match="template"):
        k8s.V1JobSpec(template=None)


def test_secrets_come_from_a_secret_never_from_values(
    quickstart: PipelineSpec,
) -> None:
    steps = tuple(
        s.model_copy(update={"secrets": ("WANDB_API_KEY",)}) if s.name == "train" else s
        for s in quickstart.steps
    )
    spec = quickstart.model_copy(update={"steps": steps})
    settings = KubernetesSettings(
        artifact_root=ROOT, code_claim="zenml-code", secret_name="team-secrets"
    )

    train = by_step(export_manifests(spec, RUN_ID, settings))["train"]

    assert {
        "name": "WANDB_API_KEY",
        "valueFrom": {"secretKeyRef": {"key": "WANDB_API_KEY", "name": "team-secrets"}},
    } in container(train)["env"]


def test_registry_pod_settings_and_namespace(quickstart: PipelineSpec) -> None:
    settings = KubernetesSettings(
        artifact_root=ROOT,
        claim_name="team-store",
        code_claim="team-code",
        namespace="ml",
        service_account="zenml-runner",
        ttl_seconds_after_finished=600,
        image_registry="europe-docker.pkg.dev/proj/repo",
        image_pull_policy="Always",
        run_as_user=1000,
        fs_group=1000,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
    )

    jobs = by_step(export_manifests(quickstart, RUN_ID, settings))

    train = jobs["train"]
    pod = train["spec"]["template"]["spec"]
    assert train["metadata"]["namespace"] == "ml"
    assert train["spec"]["ttlSecondsAfterFinished"] == 600
    assert (
        container(train)["image"]
        == "europe-docker.pkg.dev/proj/repo/zenml-pytorch:0.1.0"
    )
    assert container(train)["imagePullPolicy"] == "Always"
    assert pod["serviceAccountName"] == "zenml-runner"
    assert pod["securityContext"] == {"fsGroup": 1000, "runAsUser": 1000}
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"
    }
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "team-store"}


def test_code_outside_the_store_needs_a_code_claim(quickstart: PipelineSpec) -> None:
    with pytest.raises(ValueError, match="set code_claim"):
        pipeline_jobs(quickstart, RUN_ID, KubernetesSettings(artifact_root=ROOT))

    inside = quickstart.model_copy(update={"code_root": f"{ROOT}/code/quickstart"})
    jobs = pipeline_jobs(inside, RUN_ID, KubernetesSettings(artifact_root=ROOT))
    assert [v.name for v in jobs[0].spec.template.spec.volumes] == ["artifacts"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("artifact_root", "artifacts", "relative"),
        ("claim_name", "My Claim", "not a Kubernetes object name"),
        ("namespace", "ML_team", "namespace"),
        ("image_pull_policy", "sometimes", "Always, IfNotPresent, Never"),
        ("image_registry", "https://gcr.io/p", "scheme"),
        ("ttl_seconds_after_finished", -1, "0 or more"),
    ],
)
def test_settings_refuse_what_kubernetes_would(
    field: str, value: Any, message: str
) -> None:
    arguments = {"artifact_root": ROOT, field: value}
    with pytest.raises(ValueError, match=message):
        KubernetesSettings(**arguments)


def test_write_tasks_wires_inputs_to_upstream_outputs(
    tmp_path: Path, quickstart: PipelineSpec
) -> None:
    settings = KubernetesSettings(artifact_root=str(tmp_path), code_claim="code")

    written = write_tasks(quickstart, RUN_ID, settings)

    train = Task.read(written["train"])
    run_dir = tmp_path / "quickstart" / RUN_ID
    assert train.inputs == {
        "train": str(run_dir / "preprocess" / "train"),
        "eval": str(run_dir / "preprocess" / "eval"),
        "stats": str(run_dir / "preprocess" / "stats"),
    }
    assert train.outputs == {"output": str(run_dir / "train" / "output")}
    assert train.parameters == {"epochs": 60}
    jobs = by_step(export_manifests(quickstart, RUN_ID, settings))
    assert container(jobs["train"])["command"][-1] == str(written["train"])
    with pytest.raises(FileExistsError, match="new run id"):
        write_tasks(quickstart, RUN_ID, settings)


def test_write_tasks_needs_the_store_mounted_here(quickstart: PipelineSpec) -> None:
    settings = KubernetesSettings(artifact_root="/nonexistent/zenml", code_claim="c")
    with pytest.raises(FileNotFoundError, match="mount the volume behind claim"):
        write_tasks(quickstart, RUN_ID, settings)

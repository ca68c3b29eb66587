"""Tests of the Compute Engine run: the insert request as sent, and the boot script.

The script runs for real under bash, with `docker`, `curl`, `stat`, `chown` and
`shutdown` replaced by stubs that record their arguments and answer like the
metadata server, so every path it takes is checked without a VM.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from zenml.integrations.gcp.compute import (
    CODE_KEY,
    PIPELINE_KEY,
    ComputeSettings,
    code_archive,
    instance_name,
    instance_request,
    launch,
    pipeline_yaml,
)
from zenml.pipelines import load_pipeline
from zenml.spec import PipelineSpec, Resources

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart" / "pipeline.py"
REGISTRY = "europe-docker.pkg.dev/zenml-proj/images"
RUN_ID = "20240101-120000-abcdef"
TOKEN = "ya29.test-token"


@pytest.fixture(scope="module")
def quickstart() -> PipelineSpec:
    return load_pipeline(QUICKSTART).compile()


def compute_settings(**changes: Any) -> ComputeSettings:
    values: dict[str, Any] = {
        "project": "zenml-proj",
        "zone": "europe-west4-a",
        "image_registry": REGISTRY,
        "results": "gs://zenml-store/vm-runs",
    }
    return ComputeSettings(**{**values, **changes})


def metadata_items(request: compute_v1.InsertInstanceRequest) -> dict[str, str]:
    return {item.key: item.value for item in request.instance_resource.metadata.items}


# The request


def test_insert_request_as_sent_over_rest(quickstart: PipelineSpec) -> None:
    request = instance_request(quickstart, RUN_ID, compute_settings())
    client = compute_v1.InstancesClient(credentials=AnonymousCredentials())
    answer = requests.Response()
    answer.status_code = 200
    answer._content = json.dumps({"name": "operation-1", "status": "RUNNING"}).encode()

    with mock.patch.object(type(client.transport._session), "request") as send:
        send.return_value = answer
        launch(request, client)

    (method, url), kwargs = send.call_args
    assert method == "POST"
    assert url == (
        "https://compute.googleapis.com/compute/v1/projects/zenml-proj/zones/"
        "europe-west4-a/instances"
    )
    body = json.loads(kwargs["data"])
    name = instance_name("quickstart", RUN_ID)
    items = {item["key"]: item["value"] for item in body.pop("metadata")["items"]}
    assert body == {
        "name": name,
        "machineType": "zones/europe-west4-a/machineTypes/e2-standard-4",
        "labels": {
            "managed-by": "zenml",
            "zenml-pipeline": "quickstart",
            "zenml-run": RUN_ID,
        },
        "disks": [
            {
                "boot": True,
                "autoDelete": True,
                "initializeParams": {
                    "sourceImage": "projects/cos-cloud/global/images/family/cos-stable",
                    "diskSizeGb": "50",
                },
            }
        ],
        "networkInterfaces": [
            {
                "network": "global/networks/default",
                "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}],
            }
        ],
        "serviceAccounts": [
            {
                "email": "default",
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
        ],
        "scheduling": {
            "provisioningModel": "STANDARD",
            "automaticRestart": False,
            "onHostMaintenance": "MIGRATE",
            "maxRunDuration": {"seconds": "86400"},
            "instanceTerminationAction": "DELETE",
        },
    }
    assert sorted(items) == sorted(["startup-script", PIPELINE_KEY, CODE_KEY])
    assert items["startup-script"].startswith("#!/bin/bash\n")


def test_spot_debian_vm_on_a_subnetwork(quickstart: PipelineSpec) -> None:
    settings = compute_settings(
        os="debian",
        spot=True,
        external_ip=False,
        subnetwork="regions/europe-west4/subnetworks/ml",
        machine_type="n2-highmem-8",
        service_account="runner@zenml-proj.iam.gserviceaccount.com",
        max_run_hours=2.5,
        labels={"team": "Penguin Research"},
    )

    instance = instance_request(quickstart, RUN_ID, settings).instance_resource

    assert instance.machine_type == "zones/europe-west4-a/machineTypes/n2-highmem-8"
    assert instance.disks[0].initialize_params.source_image == (
        "projects/debian-cloud/global/images/family/debian-12"
    )
    assert instance.scheduling.provisioning_model == "SPOT"
    assert instance.scheduling.on_host_maintenance == "TERMINATE"
    assert instance.scheduling.max_run_duration.seconds == 9000
    interface = instance.network_interfaces[0]
    assert interface.subnetwork == "regions/europe-west4/subnetworks/ml"
    assert list(interface.access_configs) == []
    assert instance.service_accounts[0].email == (
        "runner@zenml-proj.iam.gserviceaccount.com"
    )
    assert instance.labels["team"].startswith("penguin-research-")
    script = metadata_items(instance_request(quickstart, RUN_ID, settings))[
        "startup-script"
    ]
    assert "apt-get install -y -qq docker.io" in script


def test_instance_names_are_valid_and_distinct() -> None:
    names = {
        instance_name("quickstart", RUN_ID),
        instance_name("Quickstart", RUN_ID),
        instance_name("quickstart", "Run (1)"),
        instance_name("quick start" * 10, RUN_ID),
    }
    assert len(names) == 4
    for name in names:
        assert len(name) <= 63
        assert name[0].isalpha() and name[-1].isalnum()
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_metadata_carries_the_relocated_pipeline_and_the_code(
    quickstart: PipelineSpec,
) -> None:
    items = metadata_items(instance_request(quickstart, RUN_ID, compute_settings()))

    data = yaml.safe_load(items[PIPELINE_KEY])
    assert data["code_root"] == "."
    assert {s["name"]: s["source"] for s in data["steps"]}["train"] == (
        "pipeline.py:train"
    )
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(items[CODE_KEY]))) as tar:
        assert tar.getnames() == ["pipeline.py"]
    assert code_archive(Path(quickstart.code_root)) == code_archive(
        Path(quickstart.code_root)
    )


def test_code_archive_skips_caches_and_git(tmp_path: Path) -> None:
    for relative in ("main.py", "lib/util.py", "__pycache__/main.pyc", ".git/HEAD"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")

    with tarfile.open(fileobj=io.BytesIO(code_archive(tmp_path))) as tar:
        assert tar.getnames() == ["lib/util.py", "main.py"]


def test_code_too_big_for_metadata_names_the_remedy(
    tmp_path: Path, quickstart: PipelineSpec
) -> None:
    (tmp_path / "pipeline.py").write_text("")
    (tmp_path / "data.bin").write_bytes(os.urandom(300 * 1024))
    spec = quickstart.model_copy(update={"code_root": str(tmp_path), "steps": ()})
    spec = PipelineSpec.model_validate(
        {**spec.model_dump(), "steps": [{"name": "a", "source": "mod:a"}]}
    )

    with pytest.raises(ValueError, match=r"over the 256 KB.*custom image"):
        instance_request(spec, RUN_ID, compute_settings())


def test_steps_outside_the_code_root_are_refused(quickstart: PipelineSpec) -> None:
    spec = quickstart.model_copy(update={"code_root": "/elsewhere"})
    with pytest.raises(ValueError, match="move the file under it"):
        pipeline_yaml(spec)


def test_gpu_steps_and_secrets_are_refused(quickstart: PipelineSpec) -> None:
    steps = tuple(
        s.model_copy(update={"resources": Resources(gpus=1)})
        if s.name == "train"
        else s
        for s in quickstart.steps
    )
    with pytest.raises(ValueError, match=r"\['train'\] ask for GPUs.*Vertex AI"):
        instance_request(
            quickstart.model_copy(update={"steps": steps}), RUN_ID, compute_settings()
        )
    with pytest.raises(ValueError, match="Secret Manager"):
        instance_request(
            quickstart.model_copy(update={"secrets": ("TOKEN",)}),
            RUN_ID,
            compute_settings(),
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("project", "Zenml Project", "project id"),
        ("zone", "europe-west4", "not a region"),
        ("results", "/var/results", r"gs://BUCKET.*copies the run"),
        ("image_registry", "europe-docker.pkg.dev", "registry host and path"),
        ("os", "ubuntu", "none of"),
        ("disk_size_gb", 5, "10 or more"),
        ("max_run_hours", 0, "positive"),
    ],
)
def test_settings_name_the_remedy(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_settings(**{field: value})


# The script, under bash with stubs


STUBS = {
    "curl": """#!/bin/bash
echo "curl $*" >> "$STUB_LOG"
url="${@: -1}"
case "$url" in
  */attributes/*) cat "$STUB_METADATA/${url##*/attributes/}" ;;
  */service-accounts/default/token)
    echo '{"access_token":"%TOKEN%","expires_in":3599,"token_type":"Bearer"}' ;;
  https://compute.googleapis.com/*) exit "${STUB_DELETE_STATUS:-0}" ;;
  *) exit 22 ;;
esac
""".replace("%TOKEN%", TOKEN),
    "docker": """#!/bin/bash
if [ "$1" = login ]; then echo "docker $* <<< $(cat)" >> "$STUB_LOG"; exit 0; fi
echo "docker $*" >> "$STUB_LOG"
case "$1 $2" in
  "pull "*) exit "${STUB_PULL_STATUS:-0}" ;;
  "run --rm")
    case "$*" in
      *"zenml pipeline run"*) exit "${STUB_RUN_STATUS:-0}" ;;
    esac ;;
esac
exit 0
""",
    "stat": '#!/bin/bash\necho "stat $*" >> "$STUB_LOG"\necho 412\n',
    "chown": '#!/bin/bash\necho "chown $*" >> "$STUB_LOG"\n',
    "shutdown": '#!/bin/bash\necho "shutdown $*" >> "$STUB_LOG"\n',
}


def run_script(
    tmp_path: Path, spec: PipelineSpec, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    work = tmp_path / "work"
    settings = compute_settings(work_dir=str(work))
    items = metadata_items(instance_request(spec, RUN_ID, settings))
    stubs, metadata = tmp_path / "bin", tmp_path / "metadata"
    stubs.mkdir()
    metadata.mkdir()
    for name, body in STUBS.items():
        (stubs / name).write_text(body)
        (stubs / name).chmod(stat.S_IRWXU)
    for key in (PIPELINE_KEY, CODE_KEY):
        (metadata / key).write_text(items[key])
    log = tmp_path / "calls.log"
    log.touch()
    script = tmp_path / "startup.sh"
    script.write_text(items["startup-script"])

    result = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": f"{stubs}:/usr/bin:/bin",
            "STUB_LOG": str(log),
            "STUB_METADATA": str(metadata),
            **env,
        },
    )
    return result, log.read_text().splitlines(), work


def test_script_runs_the_pipeline_copies_the_run_and_deletes_the_vm(
    tmp_path: Path, quickstart: PipelineSpec
) -> None:
    result, calls, work = run_script(tmp_path, quickstart)

    assert result.returncode == 0, result.stdout + result.stderr
    name = instance_name("quickstart", RUN_ID)
    launcher = f"{REGISTRY}/zenml-gcp:0.1.0"
    docker = [c for c in calls if c.startswith("docker ")]
    assert docker == [
        f"docker login -u oauth2accesstoken --password-stdin "
        f"https://europe-docker.pkg.dev <<< {TOKEN}",
        f"docker pull {launcher}",
        f"docker tag {launcher} zenml/gcp:0.1.0",
        f"docker pull {REGISTRY}/zenml-base:0.1.0",
        f"docker tag {REGISTRY}/zenml-base:0.1.0 zenml/base:0.1.0",
        f"docker pull {REGISTRY}/zenml-pytorch:0.1.0",
        f"docker tag {REGISTRY}/zenml-pytorch:0.1.0 zenml/pytorch:0.1.0",
        f"docker pull {REGISTRY}/zenml-cortex:0.1.0",
        f"docker tag {REGISTRY}/zenml-cortex:0.1.0 zenml/cortex:0.1.0",
        "docker run --rm --name zenml-launcher --group-add 412 "
        "-v /var/run/docker.sock:/var/run/docker.sock "
        f"-v {work}:{work} -w {work}/repo -e HOME=/tmp {launcher} "
        f"zenml pipeline run {work}/code/zenml-pipeline.yaml --orchestrator docker",
        f"docker run --rm -v {work}:{work} -e HOME=/tmp {launcher} "
        "python -m zenml.integrations.gcp.storage upload "
        f"{work}/repo gs://zenml-store/vm-runs/{name}",
    ]
    assert f"chown -R 1000:1000 {work}" in calls
    delete = [c for c in calls if "-X DELETE" in c]
    assert delete == [
        f"curl -sSf -X DELETE -H Authorization: Bearer {TOKEN} "
        "https://compute.googleapis.com/compute/v1/projects/zenml-proj/zones/"
        f"europe-west4-a/instances/{name}"
    ]
    assert calls[-1] == "shutdown -h now"
    assert (work / "repo" / "exit-status").read_text() == "0\n"

    unpacked = PipelineSpec.from_yaml(work / "code" / "zenml-pipeline.yaml")
    assert unpacked.code_root == str((work / "code").resolve())
    assert (
        unpacked.step("train").source
        == f"{(work / 'code').resolve()}/pipeline.py:train"
    )
    assert (work / "code" / "pipeline.py").read_text() == QUICKSTART.read_text()
    assert unpacked.model_dump(exclude={"code_root", "steps"}) == quickstart.model_dump(
        exclude={"code_root", "steps"}
    )


def test_script_copies_a_failed_run_and_still_deletes_the_vm(
    tmp_path: Path, quickstart: PipelineSpec
) -> None:
    result, calls, work = run_script(tmp_path, quickstart, STUB_RUN_STATUS="3")

    assert result.returncode == 3
    assert (work / "repo" / "exit-status").read_text() == "3\n"
    assert any("storage upload" in c for c in calls)
    assert any("-X DELETE" in c for c in calls)
    assert calls[-1] == "shutdown -h now"
    assert "zenml: finished with status 3" in result.stdout


def test_script_stops_at_a_failed_pull_and_shuts_down_if_delete_fails(
    tmp_path: Path, quickstart: PipelineSpec
) -> None:
    result, calls, _ = run_script(
        tmp_path, quickstart, STUB_PULL_STATUS="1", STUB_DELETE_STATUS="22"
    )

    assert result.returncode == 1
    assert not any("zenml pipeline run" in c for c in calls)
    assert "could not delete this VM; shutting it down instead" in result.stdout
    assert calls[-1] == "shutdown -h now"


def test_script_passes_bash_syntax_check(quickstart: PipelineSpec) -> None:
    for os_name in ("cos", "debian"):
        items = metadata_items(
            instance_request(quickstart, RUN_ID, compute_settings(os=os_name))
        )
        check = subprocess.run(
            ["bash", "-n"],
            input=items["startup-script"],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr

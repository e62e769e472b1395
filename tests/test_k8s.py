"""deploy/k8s: the kustomize base and GPU overlay, rendered here (no kustomize binary), validated by
kubernetes-validate against Kubernetes' schemas, and checked against the code they run.

KEDA's ScaledObject and TriggerAuthentication are custom resources kubernetes-validate has no
schema for: they are checked field by field instead (target, the backlog they read)."""

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import redis
import yaml
from kubernetes_validate.utils import latest_version

from api.app import create_app
from api.auth import TokenFileError, Tokens, load_tokens
from devstack.local import LocalStack
from shared.celery_app import QUEUE
from shared.environment import variable_names
from shared.settings import Settings
from shared.workers import publish, withdraw

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
BASE, GPU = K8S / "base", K8S / "overlays" / "gpu"
VERSION = latest_version()
KEDA = "keda.sh/v1alpha1"
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication"}


def merge(target: Any, patch: Any) -> Any:
    """Kubernetes' strategic merge, as far as these manifests need it: maps merge, lists of named
    items merge by name, other lists and values are replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        return {**target, **{key: merge(target.get(key), value) for key, value in patch.items()}}
    if isinstance(target, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        by_name = {item["name"]: item for item in target}
        merged = [merge(item, next((p for p in patch if p["name"] == item["name"]), None) or {}) for item in target]
        return merged + [item for item in patch if item["name"] not in by_name]
    return patch


def build(folder: Path) -> list[dict]:
    """What `kubectl kustomize folder` prints, for the features used here: resources (files and
    folders), strategic-merge patches, images (newName/newTag) and labels (on metadata)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        resources += build(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch_entry in kustomization.get("patches", []):
        patch = yaml.safe_load((folder / patch_entry["path"]).read_text())
        index = next(i for i, r in enumerate(resources) if (r["kind"], name(r)) == (patch["kind"], name(patch)))
        resources[index] = merge(resources[index], patch)
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for resource in resources:
        for container in containers(resource):
            image = images.get(container["image"].split(":")[0])
            if image:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
        for labels in kustomization.get("labels", []):
            resource["metadata"].setdefault("labels", {}).update(labels["pairs"])
    return resources


def name(resource: dict) -> str:
    return resource["metadata"]["name"]


def containers(resource: dict) -> list[dict]:
    return resource["spec"]["template"]["spec"]["containers"] if resource["kind"] == "Deployment" else []


def find(resources: list[dict], kind: str, wanted: str) -> dict:
    return next(r for r in resources if r["kind"] == kind and name(r) == wanted)


@pytest.fixture(scope="module", params=["base", "gpu"])
def rendered(request) -> list[dict]:
    return build(BASE if request.param == "base" else GPU)


def test_every_builtin_resource_validates_strictly_against_current_kubernetes(rendered):
    kinds = sorted(r["kind"] for r in rendered if r["apiVersion"] != KEDA)
    assert {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"} <= set(kinds)
    for resource in rendered:
        if resource["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(resource, VERSION, strict=True)  # raises, naming the field
    images = {c["image"] for r in rendered for c in containers(r)}
    assert all(image.endswith(":0.2.0") for image in images), images


def test_every_pod_runs_non_root_read_only_with_probes_limits_and_a_budget(rendered):
    deployments = [r for r in rendered if r["kind"] == "Deployment"]
    budgets = [r for r in rendered if r["kind"] == "PodDisruptionBudget"]
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in pod["spec"]["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert {"livenessProbe", "readinessProbe"} <= container.keys()
            assert (
                {"cpu", "memory"}
                <= container["resources"]["requests"].keys()
                <= container["resources"]["limits"].keys()
            )
        labels = pod["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, f"{name(deployment)}: one PodDisruptionBudget, not {len(covering)}"


def environment(rendered: list[dict], deployment: str) -> set[str]:
    """The variables a Deployment's container gets from its ConfigMaps and Secrets, and its own env."""
    (container,) = containers(find(rendered, "Deployment", deployment))
    names = {item["name"] for item in container.get("env", [])}
    for source in container["envFrom"]:
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        values = find(rendered, kind, ref["name"])
        names |= set(values.get("data") or values.get("stringData"))
    return names


def test_configuration_names_only_variables_the_code_reads(rendered):
    read = variable_names(Settings)
    deployments = [name(r) for r in rendered if r["kind"] == "Deployment"]
    for deployment in deployments:
        assert environment(rendered, deployment) - {"HOME"} <= read, deployment
    assert {"REDIS_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_ENDPOINT_URL", "S3_BUCKET",
            "FILTERVIZ_WEBHOOK_SECRET", "FILTERVIZ_API_TOKENS_FILE"} <= environment(rendered, "api")  # fmt: skip
    assert {"REDIS_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"} <= environment(rendered, "worker")


def test_each_pod_gets_only_its_own_secrets(rendered):
    webhooks = environment(rendered, "webhooks")
    assert {"REDIS_URL", "FILTERVIZ_WEBHOOK_SECRET"} <= webhooks
    assert not {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"} & webhooks  # deliveries never touch storage
    assert "FILTERVIZ_WEBHOOK_SECRET" not in environment(rendered, "worker")


def test_the_api_reads_its_tokens_from_a_secret_and_refuses_to_start_until_one_is_there(rendered, monkeypatch):
    api = find(rendered, "Deployment", "api")["spec"]["template"]["spec"]
    (container,) = api["containers"]
    path = next(item["value"] for item in container["env"] if item["name"] == "FILTERVIZ_API_TOKENS_FILE")
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in api["volumes"] if v["name"] == mount["name"])
    secret = find(rendered, "Secret", volume["secret"]["secretName"])["stringData"]
    shipped = secret[path.removeprefix(mount["mountPath"] + "/")]
    with pytest.raises(TokenFileError, match="names no token"):
        Tokens.parse(shipped)  # as shipped: the API refuses to start until the operator adds tokens
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with pytest.raises(TokenFileError, match="runs in Kubernetes without tokens"):
        load_tokens(None, allow_open=False, environ=os.environ)


def test_the_api_answers_the_hosts_its_probes_and_keda_send(rendered):
    allowed = find(rendered, "ConfigMap", "filterviz-config")["data"]["FILTERVIZ_ALLOWED_HOSTS"]
    app = create_app(Settings(redis_url="redis://127.0.0.1:9/0", allowed_hosts=allowed, allow_no_tokens=True))
    (container,) = containers(find(rendered, "Deployment", "api"))
    probe_hosts = {header["value"] for probe in ("livenessProbe", "readinessProbe")
                   for header in container[probe]["httpGet"]["httpHeaders"] if header["name"] == "Host"}  # fmt: skip
    keda_hosts = {urlparse(s["spec"]["triggers"][0]["metadata"]["url"]).netloc
                  for s in rendered if s["kind"] == "ScaledObject"}  # fmt: skip
    client = app.test_client()
    for host in probe_hosts | keda_hosts:
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    assert client.get("/healthz", headers={"Host": "10.1.2.3:8000"}).status_code == 400  # a pod's address


def test_network_policies_deny_by_default_and_keep_webhooks_off_private_addresses(rendered):
    policies = {name(r): r["spec"] for r in rendered if r["kind"] == "NetworkPolicy"}
    deny = policies["filterviz-default-deny"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "filterviz"}}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    for deployment in (r for r in rendered if r["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "filterviz", name(deployment)  # under the default deny
    (to_receivers,) = policies["webhooks-receivers"]["egress"]
    blocked = {cidr for block in to_receivers["to"] for cidr in block["ipBlock"]["except"]}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8", "fc00::/7"} <= blocked
    assert {port["port"] for port in to_receivers["ports"]} == {80, 443}
    # Only the API takes connections from outside the cluster; nothing reaches the webhooks pod.
    ingress = {n for n, spec in policies.items() if "Ingress" in spec["policyTypes"] and spec.get("ingress")}
    assert ingress == {"api", "worker-metrics"}


def test_workers_stop_within_their_grace_period(rendered):
    stop_grace = int(find(rendered, "ConfigMap", "filterviz-config")["data"]["FILTERVIZ_STOP_GRACE_SECONDS"])
    workers = [r for r in rendered if r["kind"] == "Deployment" and name(r).startswith("worker")]
    for worker in workers:
        # SIGTERM's warm stop takes seconds; a cold shutdown then gives chunks stop_grace.
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= stop_grace + 15
        assert "replicas" not in worker["spec"]  # KEDA owns it
        assert containers(worker)[0]["args"][containers(worker)[0]["args"].index("--queues") + 1] == QUEUE


def test_keda_scales_each_worker_on_the_chunk_backlog_down_to_zero(rendered):
    scaled = [r for r in rendered if r["kind"] == "ScaledObject"]
    workers = {name(r) for r in rendered if r["kind"] == "Deployment" and name(r).startswith("worker")}
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == workers
    api_port = find(rendered, "Service", "api")["spec"]["ports"][0]["port"]
    for scaled_object in scaled:
        assert scaled_object["apiVersion"] == KEDA and scaled_object["spec"]["minReplicaCount"] == 0
        (trigger,) = scaled_object["spec"]["triggers"]
        # The API's backlog (shared/scheduling.py chunk_backlog): the Celery list holds one chunk a worker.
        url = urlparse(trigger["metadata"]["url"])
        assert trigger["type"] == "metrics-api" and url.hostname.split(".")[0] == "api" and url.port == api_port
        assert url.path == "/metrics/backlog" and trigger["metadata"]["valueLocation"] == "chunks"
        # The backlog takes a metrics token: KEDA sends the one TriggerAuthentication names.
        assert trigger["metadata"]["authMode"] == "bearer"
        auth = find(rendered, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        (reference,) = auth["spec"]["secretTargetRef"]
        assert (
            reference["parameter"] == "token"
            and reference["key"] in find(rendered, "Secret", reference["name"])["stringData"]
        )
        assert trigger["metadata"]["activationTargetValue"] == "0"  # one chunk wakes a worker from zero
        assert all(isinstance(value, str) for value in trigger["metadata"].values())  # KEDA takes strings


def test_the_gpu_overlay_adds_gpu_workers_like_the_cpu_ones_and_keeps_cpu_workers_off_gpu_nodes():
    resources = build(GPU)
    cpu, gpu = find(resources, "Deployment", "worker"), find(resources, "Deployment", "worker-gpu")
    (gpu_container,) = containers(gpu)
    (cpu_container,) = containers(cpu)
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu_container["image"].startswith("filterviz-worker-gpu:")
    for same in ("args", "envFrom", "env", "startupProbe", "readinessProbe", "livenessProbe", "securityContext"):
        assert gpu_container[same] == cpu_container[same], same
    avoided = cpu["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    term = avoided["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert (term["key"], term["operator"]) == ("nvidia.com/gpu.present", "NotIn")
    assert gpu["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert "affinity" not in find(build(BASE), "Deployment", "worker")["spec"]["template"]["spec"]


@pytest.mark.stack  # starts its own servers
def test_the_worker_heartbeat_probe_passes_only_while_this_pod_beats(tmp_path):
    probe = find(build(BASE), "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    stack = LocalStack(tmp_path)
    try:
        stack.start_redis()
        client = redis.Redis.from_url(stack.env["REDIS_URL"])
        command = [sys.executable, *probe["exec"]["command"][1:]]  # the image's python is this one here

        def probe_passes() -> bool:
            return subprocess.run(command, env=stack.env, cwd=K8S.parent.parent, timeout=30).returncode == 0

        assert not probe_passes()
        publish(client, f"{socket.gethostname()}-other:7", {})  # another pod's beat doesn't count
        assert not probe_passes()
        publish(client, f"{socket.gethostname()}:7", {})
        assert probe_passes()
        withdraw(client, f"{socket.gethostname()}:7")
        assert not probe_passes()
    finally:
        stack.stop_all(at_once=True)

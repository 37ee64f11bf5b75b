"""The Helm chart lints strictly, renders with the default and a production-like values file, and the
rendered manifests keep the rules the platform runs by: probes, resources, no root, no credentials in
ConfigMaps, migrations before the pods, graceful shutdown. Bad values are refused.

helm comes from $HELM, the PATH, or `.ci/install_helm.sh`'s cache. Without it the tests skip, except
under CI, where they fail.
"""

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "medai"
PRODUCTION = CHART / "ci" / "production-values.yaml"
VALUE_SETS = {"default": [], "production": ["-f", str(PRODUCTION)]}
# Passwords given as values must reach the Secret and nothing else.
PASSWORDS = {
    "postgresql.password": "pg-Pa55:w/rd@x",
    "redis.password": "redis-Pa55",
    "objectStorage.secretKey": "s3-Pa55",
    "keycloak.clientSecret": "kc-Pa55",
}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|_KEY$|^DATABASE_URL$|^CELERY_BROKER_URL$")


def _helm() -> str:
    candidates = [os.environ.get("HELM"), shutil.which("helm"), str(Path.home() / ".cache/medai/bin/helm")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "helm not found: run .ci/install_helm.sh (or set HELM)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> str:
    return _helm()


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, *args: str) -> list[dict]:
    result = run_helm(helm, "template", "medai", str(CHART), "--namespace", "medai", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def manifests(request, helm) -> list[dict]:
    passwords = [f"--set={key}={value}" for key, value in PASSWORDS.items()]
    return render(helm, *VALUE_SETS[request.param], *passwords)


def of_kind(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def workloads(manifests: list[dict]) -> dict[str, dict]:
    return {name: doc for kind in ("Deployment", "Job") for name, doc in of_kind(manifests, kind).items()}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def hooks(doc: dict) -> set[str]:
    return set(filter(None, doc["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(",")))


def config_map(manifests: list[dict]) -> dict[str, str]:
    return of_kind(manifests, "ConfigMap")["medai"]["data"]


# --- lint and render ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_chart_lints_strictly(helm, values):
    result = run_helm(helm, "lint", "--strict", str(CHART), *VALUE_SETS[values])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_component_is_rendered(manifests):
    assert set(workloads(manifests)) == {
        "medai-web", "medai-worker-ingest", "medai-worker-inference", "medai-worker-billing-stats",
        "medai-beat", "medai-triton", "medai-migrate",
    }
    assert {"medai-web", "medai-triton"} <= set(of_kind(manifests, "Service"))
    assert set(of_kind(manifests, "Ingress")) == {"medai"}


# --- resources, security, probes ------------------------------------------------------------------


def test_every_container_has_requests_and_limits(manifests):
    for name, workload in workloads(manifests).items():
        for container in containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (name, container["name"], kind)


def test_nothing_runs_as_root_or_can_become_it(manifests):
    for name, workload in workloads(manifests).items():
        pod = pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] > 0 and pod["runAsGroup"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod_spec(workload).get("automountServiceAccountToken") is False, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert context.get("runAsUser", pod["runAsUser"]) != 0
            assert not context.get("privileged", False)


def test_long_running_containers_have_probes(manifests):
    deployments = of_kind(manifests, "Deployment")
    for name, deployment in deployments.items():
        main = pod_spec(deployment)["containers"][0]
        assert "readinessProbe" in main, name
        if name != "medai-beat":  # beat only sends; a crash restarts it
            assert "livenessProbe" in main, name
    web = pod_spec(deployments["medai-web"])["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    triton = pod_spec(deployments["medai-triton"])["containers"][0]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for name in ("medai-worker-ingest", "medai-worker-inference", "medai-worker-billing-stats"):
        worker = pod_spec(deployments[name])["containers"][0]
        assert worker["readinessProbe"]["exec"]["command"][:3] == ["python", "-m", "medai.health"]
        assert "inspect ping" in " ".join(worker["livenessProbe"]["exec"]["command"])


def test_web_probes_send_a_host_django_allows(manifests):
    allowed = config_map(manifests)["DJANGO_ALLOWED_HOSTS"].split(",")
    web = pod_spec(of_kind(manifests, "Deployment")["medai-web"])["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        headers = {h["name"]: h["value"] for h in web[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] in allowed


def test_read_only_root_filesystems_get_writable_tmp_and_home(manifests):
    for name, workload in workloads(manifests).items():
        if name == "medai-triton":
            continue
        mounts = {m["mountPath"] for c in pod_spec(workload)["containers"] for m in c["volumeMounts"]}
        assert {"/tmp", "/var/lib/medai"} <= mounts, name
    assert config_map(manifests)["MEDAI_HOME"] == "/var/lib/medai"


# --- credentials ----------------------------------------------------------------------------------


def test_credentials_are_in_secrets_never_in_config_maps(manifests):
    for name, config in of_kind(manifests, "ConfigMap").items():
        for key, value in config["data"].items():
            assert not SECRET_NAME.search(key), (name, key)
            for password in PASSWORDS.values():
                assert password not in value, (name, key)
    for name, workload in workloads(manifests).items():
        for container in containers(workload):
            for env in container.get("env", []):
                assert not SECRET_NAME.search(env["name"]) or "valueFrom" in env, (name, env["name"])


def test_the_chart_secret_holds_the_urls_with_encoded_passwords(helm):
    passwords = [f"--set={key}={value}" for key, value in PASSWORDS.items()]
    secret = of_kind(render(helm, *passwords), "Secret")["medai"]
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert data["DATABASE_URL"] == (
        "postgresql://medai:pg-Pa55%3Aw%2Frd%40x@medai-postgresql:5432/medai?sslmode=prefer&connect_timeout=5"
    )
    assert data["CELERY_BROKER_URL"] == "redis://:redis-Pa55@medai-redis-master:6379/0"
    assert data["S3_SECRET_KEY"] == "s3-Pa55"
    assert data["KEYCLOAK_CLIENT_SECRET"] == "kc-Pa55"
    assert len(data["DJANGO_SECRET_KEY"]) >= 50


def test_an_existing_secret_replaces_the_charts(helm):
    docs = render(helm, "-f", str(PRODUCTION))
    assert of_kind(docs, "Secret") == {}
    for name, workload in workloads(docs).items():
        for container in pod_spec(workload)["containers"]:
            refs = [source["secretRef"]["name"] for source in container.get("envFrom", []) if "secretRef" in source]
            if name != "medai-triton":
                assert refs == ["medai-credentials"], name


# --- migrations -----------------------------------------------------------------------------------


def test_migrations_run_as_a_hook_before_install_and_upgrade(manifests):
    job = of_kind(manifests, "Job")["medai-migrate"]
    assert hooks(job) == {"pre-install", "pre-upgrade"}
    annotations = job["metadata"]["annotations"]
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    container = pod_spec(job)["containers"][0]
    assert container["command"] == ["medai", "migrate", "--noinput"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # At pre-install the release's own objects do not exist yet: the Job uses none of them.
    assert "serviceAccountName" not in pod_spec(job)
    hook_objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in manifests if hooks(doc)}
    for source in container["envFrom"]:
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source.get("configMapRef") or source["secretRef"]
        if ref["name"] != "medai-credentials":  # the production Secret exists before the release
            hook = hook_objects[kind, ref["name"]]
            assert hooks(hook) == {"pre-install", "pre-upgrade"}
            weight = int(hook["metadata"]["annotations"]["helm.sh/hook-weight"])
            assert weight < int(annotations["helm.sh/hook-weight"]), (kind, ref)
    hook_config = of_kind(manifests, "ConfigMap")["medai-migrate"]["data"]
    assert hook_config == config_map(manifests)


# --- scaling, disruption, shutdown ----------------------------------------------------------------


def test_workers_per_queue_and_every_queue_the_app_uses_is_consumed(manifests):
    deployments = of_kind(manifests, "Deployment")
    queues = {}
    for name in ("ingest", "inference", "billing-stats"):
        command = pod_spec(deployments[f"medai-worker-{name}"])["containers"][0]["command"]
        assert command[:3] == ["celery", "--app=medai.celery_app", "worker"]
        option = next(arg for arg in command if arg.startswith("--queues="))
        queues[name] = option.removeprefix("--queues=").split(",")
    assert "inference" in queues["inference"] and "billing-stats" in queues["billing-stats"]
    assert "default" in {q for qs in queues.values() for q in qs}  # CELERY_TASK_DEFAULT_QUEUE
    beat = pod_spec(deployments["medai-beat"])
    assert deployments["medai-beat"]["spec"]["replicas"] == 1
    assert deployments["medai-beat"]["spec"]["strategy"]["type"] == "Recreate"
    assert beat["containers"][0]["command"][2] == "beat"


def test_web_and_workers_autoscale_and_have_disruption_budgets(manifests):
    deployments = of_kind(manifests, "Deployment")
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    assert {"medai-web", "medai-worker-ingest", "medai-worker-inference"} <= set(hpas)
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert "replicas" not in deployments[target["name"]]["spec"], name  # the HPA owns the count
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdbs = of_kind(manifests, "PodDisruptionBudget")
    for name in ("medai-web", "medai-worker-ingest", "medai-worker-inference", "medai-triton"):
        selector = pdbs[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployments[name]["spec"]["template"]["metadata"]["labels"].items()


def test_shutdown_is_graceful(manifests):
    deployments = of_kind(manifests, "Deployment")
    web = pod_spec(deployments["medai-web"])
    container = web["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert container["command"] == ["gunicorn", "-c", "python:medai.gunicorn_conf"]
    assert web["terminationGracePeriodSeconds"] > pause + int(env["GUNICORN_GRACEFUL_TIMEOUT"])
    for name in ("medai-worker-ingest", "medai-worker-inference"):
        assert pod_spec(deployments[name])["terminationGracePeriodSeconds"] >= 300


# --- the edge -------------------------------------------------------------------------------------


def test_ingress_takes_a_whole_stow_and_keeps_health_inside(manifests):
    ingress = of_kind(manifests, "Ingress")["medai"]
    annotations = ingress["metadata"]["annotations"]
    size = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size.endswith("m")
    assert int(size[:-1]) * 1024**2 > int(config_map(manifests)["DICOMWEB_MAX_STOW_BYTES"])
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    paths = {(p["pathType"], p["path"]) for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert ("Prefix", "/dicomweb") in paths
    for path_type, path in paths:
        assert path not in {"/healthz", "/readyz"}
        assert path_type == "Exact" or path != "/", "a Prefix / would route the health endpoints out"


def test_network_policies_close_the_pods_by_default(manifests):
    policies = of_kind(manifests, "NetworkPolicy")
    deny = policies["medai-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    web = policies["medai-web"]["spec"]
    assert web["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert "namespaceSelector" in web["ingress"][0]["from"][0]


def test_triton_serves_the_model_repository_from_the_image_or_a_volume(manifests):
    triton = of_kind(manifests, "Deployment")["medai-triton"]
    spec = pod_spec(triton)
    server = spec["containers"][0]
    assert server["image"].startswith("nvcr.io/nvidia/tritonserver:") and server["image"].endswith("-py3")
    assert "--model-repository=/models" in server["command"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    if "persistentVolumeClaim" in volumes["models"]:
        assert server["resources"]["limits"]["nvidia.com/gpu"] == 1  # the production file asks for GPUs
    else:
        (copy,) = spec["initContainers"]
        assert "/opt/medai/models" in " ".join(copy["command"])
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    assert config_map(manifests)["TRITON_URL"] == "medai-triton:8001"


def test_the_image_matches_what_the_chart_expects():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile
    assert "/opt/medai/models" in dockerfile
    assert 'CMD ["gunicorn", "-c", "python:medai.gunicorn_conf"]' in dockerfile
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == 10001


# --- values.schema.json and the chart's own checks refuse bad values ------------------------------

BAD_VALUES = {
    "unknown top-level key": ({"webb": {"replicas": 2}}, "webb"),
    "replicas as a string": ({"web": {"replicas": "two"}}, "replicas"),
    "zero replicas": ({"web": {"replicas": 0}}, "replicas"),
    "root user": ({"securityContext": {"runAsUser": 0}}, "runAsUser"),
    "no memory limit": ({"web": {"resources": {"limits": {"cpu": "2", "memory": None}}}}, "memory"),
    "a password in the ConfigMap": ({"config": {"extraEnv": {"DB_PASSWORD": "x"}}}, "extraEnv"),
    "health routed to the Internet": ({"ingress": {"paths": ["/"]}}, "paths"),
    "readiness routed to the Internet": ({"ingress": {"exactPaths": ["/readyz"]}}, "exactPaths"),
    "external Triton without its address": ({"triton": {"enabled": False}}, "url"),
    "a worker with no queue": ({"workers": {"ingest": {"queues": []}}}, "queues"),
    "an unknown Celery pool": ({"workers": {"ingest": {"pool": "gevnt"}}}, "pool"),
    "a short Django secret key": ({"secrets": {"djangoSecretKey": "short"}}, "djangoSecretKey"),
    "an unknown readiness check": ({"web": {"readyChecks": ["database", "keycloak"]}}, "readyChecks"),
    "egress restricted to nothing": ({"networkPolicy": {"egress": {"restrict": True, "rules": []}}}, "rules"),
    "a Triton image without the Python backend": ({"triton": {"image": {"tag": "25.01-py3-min"}}}, "tag"),
    "shutdown shorter than the drain": ({"web": {"terminationGracePeriodSeconds": 30}}, "gunicorn would be killed"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused(helm, tmp_path, case):
    values, mentioned = BAD_VALUES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    result = run_helm(helm, "template", "medai", str(CHART), "-f", str(path))
    assert result.returncode != 0, f"{case}: rendered anyway"
    assert mentioned in result.stderr, result.stderr

"""deploy/kubernetes: rendered by kustomize, valid against the Kubernetes schemas, clean under checkov,
and consistent with the service (settings, ports, drain timing, image user, sizing).

Real tools: ``kubectl kustomize`` (kustomize v5 inside kubectl, on the project's machines with the
Google Cloud CLI packages), kubernetes-validate (ships the schemas of each Kubernetes release, so
it works offline) and checkov, both in ``.venv-iac`` (``make test`` installs it). Without them the
tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.support.ci import missing

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAY = KUBERNETES / "overlays" / "example"
TOOLS = ROOT / ".venv-iac" / "bin"
# The current release and the oldest one upstream still supports (three minor releases).
VERSIONS = ("1.37.0", "1.35.0")
# Checkov reaches out to Prisma Cloud for guidelines and to PyPI for updates unless told not to.
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}


def _need(path: str | None, what: str) -> str:
    if path is None or not Path(path).exists():
        missing(f"{what} not found", "the Kubernetes manifest checks")
    return str(path)


def _render(folder: Path) -> str:
    kubectl = _need(shutil.which("kubectl"), "kubectl (kustomize)")
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def rendered_text() -> str:
    return _render(OVERLAY)


@pytest.fixture(scope="module")
def docs(rendered_text: str) -> dict[str, dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(rendered_text):
        assert doc["kind"] not in by_kind, f"one {doc['kind']} expected"
        by_kind[doc["kind"]] = doc
    return by_kind


def _validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    tool = _need(str(TOOLS / "kubernetes-validate"), "kubernetes-validate (make test installs .venv-iac)")
    return subprocess.run([tool, "--strict", "-k", version, str(path)], capture_output=True, text=True, timeout=120)


def _write_all(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# --- rendering and schemas -----------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_overlay_and_base_render_and_are_valid_kubernetes(rendered_text: str, tmp_path: Path, version: str) -> None:
    for name, text in (("overlay", rendered_text), ("base", _render(KUBERNETES / "base"))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        done = _validate(path, version)
        assert done.returncode == 0, done.stdout + done.stderr
        kinds = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                 "NetworkPolicy"} | ({"Namespace"} if name == "overlay" else set())
        for kind in kinds:
            assert f"passed for resource {kind.lower()}/" in done.stdout + done.stderr, (kind, done.stdout)


def test_the_schema_check_is_live_a_misspelt_field_fails(docs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    broken = copy.deepcopy(docs["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = broken["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    done = _validate(_write_all(tmp_path / "broken.yaml", [broken]), VERSIONS[0])
    assert done.returncode != 0 and "readinesProbe" in done.stdout + done.stderr


# --- checkov -------------------------------------------------------------------------------------

def test_checkov_fails_nothing_and_every_skip_says_why(docs: dict[str, dict[str, Any]], rendered_text: str, tmp_path: Path) -> None:
    """One checkov run over the overlay as rendered and over a copy made insecure on purpose (the
    checks are live: the copy must fail exactly where it was weakened)."""
    tool = _need(str(TOOLS / "checkov"), "checkov (make test installs .venv-iac)")
    (tmp_path / "ok").mkdir()
    (tmp_path / "weak").mkdir()
    good = tmp_path / "ok" / "rendered.yaml"
    good.write_text(rendered_text)
    weak = copy.deepcopy(docs["Deployment"])
    weak["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    _write_all(tmp_path / "weak" / "rendered.yaml", [weak])
    done = subprocess.run([tool, "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "-o", "json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE})
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["file_path"]) for c in results["failed_checks"]]
    assert failed and all(path == "/weak/rendered.yaml" for _, path in failed), failed
    assert ("CKV_K8S_22", "/weak/rendered.yaml") in failed  # read-only root filesystem
    assert report["summary"]["parsing_errors"] == 0
    ours = [c for c in results["passed_checks"] + results["skipped_checks"] if c["file_path"] == "/ok/rendered.yaml"]
    assert {"Deployment", "Service", "ServiceAccount"} <= {c["resource"].split(".")[0] for c in ours} and len(ours) > 80
    skipped = [c for c in results["skipped_checks"] if c["file_path"] == "/ok/rendered.yaml"]
    for check in skipped:  # a written reason, in the manifest, for every check set aside
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]
    assert {c["check_id"] for c in skipped} <= {"CKV_K8S_43", "CKV_K8S_35"}


# --- consistency with the service ----------------------------------------------------------------

def _container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def _settings(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    return docs["ConfigMap"]["data"]


def test_settings_are_valid_and_secrets_come_from_the_secret(docs: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    data = _settings(docs)
    assert all(k.startswith("MBC_") for k in data) and "MBC_TRUSTED_ISSUERS" not in data and "DATABASE_URL" not in data
    for key in [k for k in os.environ if k.startswith("MBC_") or k == "DATABASE_URL"]:
        monkeypatch.delenv(key)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # raises on any invalid value
    known = {f"MBC_{name.upper()}" for name in Settings.model_fields}
    assert set(data) <= known, set(data) - known
    assert settings.auth_required and settings.public_base_url == "https://cds.example.org"
    container = _container(docs)
    assert container["envFrom"] == [{"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}}]
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert secret_refs == {name: {"name": "mbc-cds-hooks", "key": name} for name in ("DATABASE_URL", "MBC_TRUSTED_ISSUERS")}


def test_probes_ports_and_one_worker_per_cpu_requested(docs: dict[str, dict[str, Any]]) -> None:
    deployment, container, data = docs["Deployment"], _container(docs), _settings(docs)
    assert deployment["spec"]["replicas"] >= 2 and deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (port,) = container["ports"]
    assert port["containerPort"] == int(data["MBC_PORT"]) and data["MBC_HOST"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["timeoutSeconds"] > 2  # /readyz gives the database 2 s
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert int(data["MBC_WORKERS"]) == int(requests["cpu"]) == int(limits["cpu"])
    assert {"memory"} <= requests.keys() & limits.keys()
    assert container["command"] == ["mbc-cds-hooks", "serve"]
    assert not container["image"].endswith(":latest") and ":" in container["image"]


def test_a_stopping_pod_drains_within_its_grace_period(docs: dict[str, dict[str, Any]]) -> None:
    """preStop delay + MBC_DRAIN_SECONDS + MBC_SHUTDOWN_GRACE_SECONDS must end before Kubernetes
    sends SIGKILL (terminationGracePeriodSeconds counts from the start of preStop)."""
    pod, container, data = docs["Deployment"]["spec"]["template"]["spec"], _container(docs), _settings(docs)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain, grace = float(data["MBC_DRAIN_SECONDS"]), float(data["MBC_SHUTDOWN_GRACE_SECONDS"])
    assert pre_stop > 0 and drain > 0
    assert drain > container["readinessProbe"]["periodSeconds"] * container["readinessProbe"]["failureThreshold"] - 1
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain + grace


def test_security_context_matches_the_image_and_the_restricted_profile(docs: dict[str, dict[str, Any]]) -> None:
    pod, container = docs["Deployment"]["spec"]["template"]["spec"], _container(docs)
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user is not None
    assert pod["securityContext"]["runAsUser"] == container["securityContext"]["runAsUser"] == int(user.group(1)) == 10001
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert not pod["automountServiceAccountToken"] and not docs["ServiceAccount"]["automountServiceAccountToken"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/tmp": "tmp"} and "emptyDir" in volumes["tmp"]
    assert docs["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_service_budget_and_autoscaler_select_the_pods(docs: dict[str, dict[str, Any]]) -> None:
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = docs["Service"]["spec"]
    assert service["selector"].items() <= labels.items() and service["ports"][0]["targetPort"] == "http"
    pdb = docs["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items() and pdb["maxUnavailable"] < docs["Deployment"]["spec"]["replicas"]
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": docs["Deployment"]["metadata"]["name"]}
    assert hpa["minReplicas"] == docs["Deployment"]["spec"]["replicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"


def test_network_policy_lets_in_only_the_ehr_side_and_out_only_dns_postgres_and_fhir(docs: dict[str, dict[str, Any]]) -> None:
    policy = docs["NetworkPolicy"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    port = _container(docs)["ports"][0]["containerPort"]
    for rule in policy["ingress"]:
        assert rule["from"] and rule["ports"] == [{"port": port, "protocol": "TCP"}]  # never "from anywhere"
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (443, "TCP")}
    assert all(rule["to"] for rule in policy["egress"])  # every egress rule names its peers

"""helm lint and template: the chart renders, the manifests are valid for the control plane's
own schema, and what they say agrees with the code that reads them (operator and API
settings, the worker pods the operator builds) and with the chart's security promises."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_shim.settings import Settings as ApiSettings
from avatar_crds import contract
from avatar_operator.settings import load_settings
from testbed.controlplane import ControlPlane
from testbed.helm import Helm
from tests.chart.rendering import (
    API,
    CHART,
    FULLNAME,
    OPERATOR,
    VALUES_EXAMPLES,
    Manifest,
    container,
    kubectl,
    literal_env,
    merged_values,
    of_kind,
    one,
    pod_templates,
    render,
    template_args,
    worker_pods,
)

EXAMPLES = list(VALUES_EXAMPLES)
METADATA = ipaddress.IPv4Network("169.254.169.254/32")
PRIVATE = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NOT_PUBLIC: list[Network] = [
    ipaddress.ip_network(n)
    for n in (
        *("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"),
        *("169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8"),
        *("fc00::/7", "fe80::/10", "::1/128"),
        # Inside those, as a cluster would use them: pods, services, the API server, metadata.
        *("10.96.0.1/32", "10.244.0.0/16", "172.18.0.2/32", "169.254.169.254/32"),
        *("fd00:10:96::1/128", "fe80::1/128"),
    )
]
PUBLIC: list[Network] = [ipaddress.ip_network(n) for n in ("1.1.1.1/32", "2606:4700::1111/128")]
# Present only where the Prometheus Operator is installed; not part of the test cluster.
NOT_IN_TEST_CLUSTER = {"ServiceMonitor"}


@pytest.fixture(params=EXAMPLES)
def example(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def rendered(helm: Helm, example: str, namespace: str = "facecast") -> list[Manifest]:
    return render(helm, namespace, VALUES_EXAMPLES[example])


def test_helm_lint_is_clean_for_every_values_example(helm: Helm, example: str) -> None:
    args: list[str | Path] = ["lint", CHART, "--strict"]
    values = VALUES_EXAMPLES[example]
    if values is not None:
        args += ["--values", values]
    lint = helm.run(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    assert "[WARNING]" not in lint.stdout, lint.stdout
    assert "[ERROR]" not in lint.stdout, lint.stdout


@pytest.mark.controlplane
def test_rendered_manifests_validate_on_the_api_server(
    helm: Helm,
    example: str,
    chart_crds: None,
    control_plane: ControlPlane,
    testenv_bin: Path,
    restricted_namespace: str,
    tmp_path: Path,
) -> None:
    """Server-side dry run with strict field validation: unknown or misplaced fields, bad
    enums and wrong types are refused by the control plane's own OpenAPI schema; the
    namespace's Pod Security `warn` label makes it report pods that would be refused."""
    docs = render(helm, restricted_namespace, VALUES_EXAMPLES[example])
    skipped = {doc["kind"] for doc in docs if doc["kind"] in NOT_IN_TEST_CLUSTER}
    assert skipped <= NOT_IN_TEST_CLUSTER
    manifest = tmp_path / "rendered.yaml"
    text = helm.run(*template_args(restricted_namespace, VALUES_EXAMPLES[example])).stdout
    kept = [chunk for chunk in text.split("\n---\n") if "kind: ServiceMonitor" not in chunk]
    manifest.write_text("\n---\n".join(kept))
    done = kubectl(
        testenv_bin, control_plane.kubeconfig, "apply", "--dry-run=server", "--validate=strict",
        "--namespace", restricted_namespace, "-f", manifest,
    )  # fmt: skip
    applied = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(applied) == len(docs) - sum(d["kind"] in NOT_IN_TEST_CLUSTER for d in docs)
    assert "Warning" not in done.stderr, done.stderr


def test_every_pod_is_restricted(helm: Helm, example: str) -> None:
    docs = rendered(helm, example)
    templates = dict(pod_templates(docs))
    assert set(templates) == {OPERATOR, API}
    for name, template in templates.items():
        _assert_restricted(name, template["spec"])


def _assert_restricted(name: str, spec: dict[str, Any]) -> None:
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True, name
    assert pod.get("runAsUser", 1) != 0, name
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), name
    assert all("hostPath" not in volume for volume in spec.get("volumes", [])), name
    for each in spec["containers"] + spec.get("initContainers", []):
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert not context["capabilities"].get("add"), name
        assert not context.get("privileged"), name
        assert context.get("runAsUser", 1) != 0, name


def test_pods_stay_off_gpu_nodes_by_default(helm: Helm) -> None:
    """No toleration for the GPU taint: only workers land on GPU nodes."""
    for _, template in pod_templates(render(helm)):
        tolerations = template["spec"].get("tolerations", [])
        assert all(t.get("key") != "nvidia.com/gpu" for t in tolerations)


def test_operator_settings_come_from_the_values(helm: Helm, example: str) -> None:
    """The operator reads the rendered env with its own settings loader, and the worker pods
    it would build from them for every rendered pool carry what the values say, and pass
    restricted Pod Security."""
    docs = rendered(helm, example)
    deployment = one(docs, "Deployment", OPERATOR)
    env = literal_env(container(deployment))
    settings = load_settings(env)
    assert settings.namespace == "facecast"

    # The worker's image, size and placement are its pool's (test_worker_pools.py); what the
    # operator adds to every worker comes from its own settings.
    worker = merged_values(example)["worker"]
    assert settings.worker.termination_grace_seconds == worker["terminationGracePeriodSeconds"]
    assert settings.worker.model_volume_claim == (worker.get("modelVolumeClaim") or None)
    claim = merged_values(example)["avatarStore"]["claimName"] or None
    assert settings.worker.avatar_store_claim == claim

    pods = worker_pods(docs)
    for pod in pods:
        _assert_restricted(pod["metadata"]["generateName"], pod["spec"])
    # Workers read the avatar store the API writes: the same claim, at the same path.
    api_pod = one(docs, "Deployment", API)["spec"]["template"]["spec"]
    (api_store,) = [v for v in api_pod["volumes"] if v["name"] == "avatars"]
    (api_mount,) = [m for m in container(one(docs, "Deployment", API))["volumeMounts"]
                    if m["name"] == "avatars"]  # fmt: skip
    assert api_mount["mountPath"] == contract.AVATAR_STORE_DIR
    assert not api_mount.get("readOnly")
    if claim is None:
        assert "emptyDir" in api_store
    else:
        assert api_store["persistentVolumeClaim"] == {"claimName": claim}
        for pod in pods:
            (worker_store,) = [v for v in pod["spec"]["volumes"] if v["name"] == "avatars"]
            assert worker_store["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    # The worker NetworkPolicy selects exactly these pods.
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-worker")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for pod in pods:
        assert selector.items() <= pod["metadata"]["labels"].items()


def test_operator_deployment_shape(helm: Helm) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment", OPERATOR)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR
    main = container(deployment)
    assert main["command"] == ["python", "-m", "avatar_operator"]
    peering = one(docs, "KopfPeering", FULLNAME)
    assert main["args"] == [
        f"--peering={peering['metadata']['name']}",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ports == {"health": 8080, "metrics": 9090}
    metrics = one(docs, "Service", f"{OPERATOR}-metrics")
    assert metrics["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()


def test_standalone_without_peering(helm: Helm) -> None:
    docs = render(helm, sets=["operator.peering.enabled=false"])
    assert container(one(docs, "Deployment", OPERATOR))["args"][0] == "--standalone"
    assert not of_kind(docs, "KopfPeering")
    rules = one(docs, "Role", OPERATOR)["rules"]
    assert all("kopf.dev" not in rule["apiGroups"] for rule in rules)


def test_api_deployment_service_and_budget(helm: Helm, example: str) -> None:
    docs = rendered(helm, example)
    deployment = one(docs, "Deployment", API)
    main = container(deployment)
    assert main["command"] == ["python", "-m", "api_shim"]
    env = literal_env(main)
    settings = ApiSettings.from_env(env)
    assert settings.namespace == "facecast"
    assert env["FACECAST_AVATAR_STORE"] == contract.AVATAR_STORE_DIR
    (port,) = main["ports"]
    assert port["containerPort"] == settings.port
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service", API)
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budgets = of_kind(docs, "PodDisruptionBudget")
    if example == "kind":
        assert not budgets
    else:
        (budget,) = budgets
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    ingresses = of_kind(docs, "Ingress")
    assert bool(ingresses) == (example == "production")


def _ip_blocks(rule: dict[str, Any], direction: str) -> list[dict[str, Any]]:
    return [peer["ipBlock"] for peer in rule.get(direction, []) if "ipBlock" in peer]


def _admits(block: dict[str, Any], network: Network) -> bool:
    """Whether the ipBlock lets any address of `network` through (IPv4 or IPv6)."""
    cidr = ipaddress.ip_network(block["cidr"])
    if cidr.version != network.version:
        return False
    if not network.subnet_of(cidr):  # type: ignore[arg-type]  # same version, checked above
        return network.overlaps(cidr)
    excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
    return not any(network.subnet_of(e) for e in excepted)  # type: ignore[arg-type]


def test_workers_reach_no_private_or_cluster_address_by_default(helm: Helm) -> None:
    """Every egress rule of the workers' policy (the API server's included) leaves out every
    private, loopback, link-local and cluster range, IPv4 and IPv6, and still lets public
    addresses of both families through: customers' LiveKit servers live there."""
    docs = render(helm)
    worker = one(docs, "NetworkPolicy", f"{FULLNAME}-worker")["spec"]
    by_address = [rule for rule in worker["egress"] if _ip_blocks(rule, "to")]
    assert len(by_address) == 2, "the API server and LiveKit"
    for rule in by_address:
        ports = {p["port"] for p in rule["ports"]}
        for block in _ip_blocks(rule, "to"):
            for network in NOT_PUBLIC:
                assert not _admits(block, network), f"workers may reach {network} on {ports}"
        for public in PUBLIC:
            assert any(_admits(b, public) for b in _ip_blocks(rule, "to")), (public, ports)
    # The operator and the API keep the API server rule they need, as configured.
    assert _ip_blocks(one(docs, "NetworkPolicy", OPERATOR)["spec"]["egress"][1], "to") == [
        {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}
    ]


def test_network_policies(helm: Helm, example: str) -> None:
    docs = rendered(helm, example)
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind(docs, "NetworkPolicy")}
    deny = policies.pop(f"{FULLNAME}-default-deny")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert set(policies) == {f"{FULLNAME}-worker", OPERATOR, API}
    for name, spec in policies.items():
        assert spec["policyTypes"] == ["Ingress", "Egress"], name
        for rule in spec["egress"]:
            assert rule.get("ports"), f"{name}: an egress rule open on every port"
            for block in _ip_blocks(rule, "to"):
                assert not _admits(block, METADATA), f"{name} may reach cloud metadata"
            for peer in rule["to"]:
                if "podSelector" in peer or "namespaceSelector" in peer:
                    # The only in-cluster destination is cluster DNS.
                    assert {p["port"] for p in rule["ports"]} == {53}, name

    worker = policies[f"{FULLNAME}-worker"]
    assert worker["ingress"] == []
    api_server, livekit = worker["egress"][1], worker["egress"][2]
    assert {p["port"] for p in api_server["ports"]} <= {443, 6443}
    for block in _ip_blocks(livekit, "to"):
        for private in PRIVATE:
            assert not _admits(block, private), "workers may reach in-cluster addresses"
    protocols = {(p["protocol"], p["port"], p.get("endPort")) for p in livekit["ports"]}
    assert ("TCP", 443, None) in protocols
    assert ("TCP", 7880, None) in protocols
    assert ("UDP", 3478, None) in protocols
    assert any(proto == "UDP" and end for proto, _, end in protocols), "no UDP media range"

    api = policies[API]
    (ingress,) = api["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    image_fetch = api["egress"][2]
    assert {p["port"] for p in image_fetch["ports"]} == {80, 443, 8080, 8443}
    for block in _ip_blocks(image_fetch, "to"):
        for private in PRIVATE:
            assert not _admits(block, private), "the API may fetch from in-cluster addresses"


def test_rbac_never_lists_or_watches_secrets_and_has_no_wildcards(helm: Helm, example: str) -> None:
    docs = rendered(helm, example)
    roles = of_kind(docs, "Role") + of_kind(docs, "ClusterRole")
    assert {r["metadata"]["name"] for r in of_kind(docs, "Role")} == {OPERATOR, API}
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], role["metadata"]["name"]
            if "secrets" in rule["resources"]:
                assert not {"list", "watch"} & set(rule["verbs"]), role["metadata"]["name"]
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
    (cluster_role,) = of_kind(docs, "ClusterRole")
    # Read-only nodes, to notice a lost one; no pods anywhere: GPUs are the scheduler's to place.
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    ]


def test_the_operator_is_given_no_gpu_accounting_pod_sweep_or_worker_shape(
    helm: Helm, example: str
) -> None:
    """The scheduler places pool workers and the pool controller removes them: the operator
    gets neither the setting to count other workloads' GPUs nor an orphan sweep interval (and
    its ClusterRole no pods, above), nor a worker image or size of its own."""
    env = literal_env(container(one(rendered(helm, example), "Deployment", OPERATOR)))
    assert "FACECAST_COUNT_OTHER_PODS" not in env
    assert "FACECAST_SWEEP_INTERVAL_SECONDS" not in env
    assert "FACECAST_NAMESPACE" in env  # the env read is the operator's
    # The worker's shape is its pool's alone: the operator is not given one of its own.
    assert not env.keys() & {
        "FACECAST_WORKER_IMAGE",
        "FACECAST_WORKER_GPU_COUNT",
        "FACECAST_WORKER_NODE_SELECTOR",
        "FACECAST_WORKER_TOLERATIONS",
        "FACECAST_WORKER_RESOURCES",
    }


@pytest.mark.parametrize(
    ("removed", "refusal"),
    [
        ("operator.gpuAccounting.countOtherPods=false", "'gpuAccounting' not allowed"),
        ("operator.timeouts.sweepIntervalSeconds=60", "'sweepIntervalSeconds' not allowed"),
    ],
    ids=["gpu_accounting", "sweep_interval"],
)
def test_removed_operator_values_are_refused(helm: Helm, removed: str, refusal: str) -> None:
    """An install that still sets them fails, rather than silently losing what they meant."""
    failed = helm.run(*template_args("facecast", sets=[removed]), check=False)
    assert failed.returncode != 0
    assert "values don't meet the specifications of the schema" in failed.stderr
    assert refusal in failed.stderr, failed.stderr


def test_tenant_admin_can_be_taken_off_the_api(helm: Helm) -> None:
    def tenant_verbs(docs: list[Manifest]) -> list[str]:
        (rule,) = [r for r in one(docs, "Role", API)["rules"] if r["resources"] == ["tenants"]]
        verbs: list[str] = rule["verbs"]
        return verbs

    assert tenant_verbs(render(helm)) == ["get", "list"]  # off unless asked for
    assert tenant_verbs(render(helm, sets=["api.rbac.tenantAdmin=true"])) == [
        "get", "list", "create", "patch",
    ]  # fmt: skip
    production = render(helm, values=VALUES_EXAMPLES["production"])
    assert tenant_verbs(production) == ["get", "list"]


def test_face_model_pack_is_mounted_read_only_when_given(helm: Helm) -> None:
    def api_container(docs: list[Manifest]) -> dict[str, Any]:
        container: dict[str, Any] = one(docs, "Deployment", API)["spec"]["template"]["spec"][
            "containers"
        ][0]
        return container

    default = api_container(render(helm))
    assert "FACECAST_FACE_MODEL_DIR" not in {e["name"] for e in default["env"]}
    docs = render(helm, sets=["faceModels.claimName=insightface-buffalo"])
    container = api_container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "face-models")
    assert mount["readOnly"] is True
    assert env["FACECAST_FACE_MODEL_DIR"] == mount["mountPath"]
    volumes = one(docs, "Deployment", API)["spec"]["template"]["spec"]["volumes"]
    claim = next(v for v in volumes if v["name"] == "face-models")["persistentVolumeClaim"]
    assert claim == {"claimName": "insightface-buffalo", "readOnly": True}
    assert ApiSettings.from_env(env).face_model_dir == mount["mountPath"]  # the API reads it


def test_images_and_digests(helm: Helm) -> None:
    digest = "sha256:" + "a" * 64
    docs = render(helm, sets=[f"operator.image.digest={digest}", "worker.image.tag=1.2.3"])
    image = container(one(docs, "Deployment", OPERATOR))["image"]
    assert image == f"ghcr.io/facecast/operator@{digest}"
    assert {pool["spec"]["worker"]["image"] for pool in of_kind(docs, "WorkerPool")} == {
        "ghcr.io/facecast/worker:1.2.3"
    }
    assert container(one(docs, "Deployment", API))["image"] == "ghcr.io/facecast/api:0.1.0"


def test_service_monitor_is_optional(helm: Helm) -> None:
    assert not of_kind(render(helm), "ServiceMonitor")
    docs = render(helm, sets=["serviceMonitor.enabled=true"])
    (monitor,) = of_kind(docs, "ServiceMonitor")
    metrics = one(docs, "Service", f"{OPERATOR}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    failed = helm.run(
        *template_args(
            "facecast", sets=["serviceMonitor.enabled=true", "operator.metrics.enabled=false"]
        ),
        check=False,
    )
    assert failed.returncode != 0
    assert "serviceMonitor.enabled needs operator.metrics.enabled" in failed.stderr


def test_crds_come_with_the_chart(helm: Helm) -> None:
    output = helm.run("template", "x", CHART, "--include-crds").stdout
    crds = [d for d in yaml.safe_load_all(output) if d and d["kind"] == "CustomResourceDefinition"]
    names = {crd["metadata"]["name"] for crd in crds}
    assert names == {
        "avatarsessions.facecast.io",
        "avatars.facecast.io",
        "tenants.facecast.io",
        "workerpools.facecast.io",
        "kopfpeerings.kopf.dev",
    }


@pytest.mark.controlplane
@pytest.mark.parametrize("example", EXAMPLES)
def test_notes_tell_the_installer_what_to_do_next(
    helm: Helm, chart_crds: None, control_plane: ControlPlane, example: str
) -> None:
    """The NOTES helm prints after an install: tenant and key, the API's address, a portrait
    and a first session, for the way the values expose and administer the API."""
    args: list[str | Path] = ["install", "--dry-run=client", "fc", CHART, "-n", "facecast"]
    values = VALUES_EXAMPLES[example]
    if values is not None:
        args += ["--values", values]
    # helm maps every kind even on a dry run: no Prometheus Operator CRDs in the test cluster.
    args += ["--set", "serviceMonitor.enabled=false"]
    output = helm.with_kubeconfig(control_plane.kubeconfig).run(*args).stdout
    notes = output[output.index("NOTES:") :]
    assert "create-tenant acme" in notes
    assert "create-key acme" in notes
    assert "/v1/avatars" in notes
    assert "POST $FACECAST_URL/v1/sessions" in notes
    served = "mock,lite,standard,pro" if example == "production" else "mock,lite"
    assert f"kubectl -n facecast get workerpools   # one per tier ({served})" in notes
    if example == "kind":  # tenantAdmin on, for a trial: the CLI runs in the API pod
        assert f"kubectl -n facecast exec deploy/{API} -c api --" in notes
    else:  # tenantAdmin off: the CLI runs with the installer's kubeconfig
        assert "kubectl -n facecast exec" not in notes
        assert "uv run python -m api_shim.admin --namespace facecast" in notes
    if example == "production":
        assert "export FACECAST_URL=https://avatars.example.com" in notes
    if example == "kind":
        assert "export FACECAST_URL=http://<a node address>:30080" in notes
    if example == "default":
        assert f"port-forward svc/{API} 8080:80" in notes
        assert "only the `mock`" in notes

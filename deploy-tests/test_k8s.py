"""k8s/: renders, validates strictly, and hangs together."""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import (EXTERNAL_IMAGES, K8S, check_config, compose_services,
                      REPO, kubectl_f_objects, kustomize_render)

K8S_VERSION = kubernetes_validate.latest_version()


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return kustomize_render()


def _id(o: dict) -> str:
    return f"{o['kind']}/{o['metadata']['name']}"


def _by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def _pod_containers(dep):
    spec = dep["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_kustomize_renders_expected_objects(objects):
    ids = {_id(o) for o in objects}
    for want in ["Namespace/test", "Deployment/proxy", "Deployment/target", "Deployment/target-v2",
                 "Deployment/gateway", "Deployment/jaeger", "Service/proxy", "Service/proxy-v1",
                 "Service/target", "Service/target-v1", "Service/target-v2", "Service/gateway",
                 "Service/jaeger", "ConfigMap/gateway-config"]:
        assert want in ids, f"{want} missing from `kubectl kustomize k8s`"


def test_every_object_validates_strictly(objects):
    failures = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{_id(o)}: {str(e).splitlines()[0]}")
    assert not failures, "\n".join(failures)


def test_apply_f_and_apply_k_give_the_same_objects(objects):
    # `kubectl apply -f k8s` reads *.yaml/*.yml/*.json; a kustomization.yaml there
    # would be sent as an object. The kustomization is therefore `k8s/Kustomization`.
    for f in K8S.iterdir():
        if f.suffix in {".yaml", ".yml", ".json"}:
            for d in yaml.safe_load_all(f.read_text()):
                assert d is None or ("apiVersion" in d and "kind" in d), f"{f.name}: not a k8s object"
                assert not d or d.get("kind") != "Kustomization", f"{f.name} would break `kubectl apply -f k8s`"
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
    assert sorted(map(key, kubectl_f_objects())) == sorted(map(key, objects))


def test_everything_lives_in_namespace_test(objects):
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "test", _id(o)


def test_tutorial_labels():
    objs = {(_id(o)): o for o in kustomize_render()}
    want = {"proxy": {"app": "proxy", "version": "v1"},
            "target": {"app": "target", "version": "v1"},
            "target-v2": {"app": "target", "version": "v2"}}
    for name, labels in want.items():
        tmpl = objs[f"Deployment/{name}"]["spec"]["template"]["metadata"]["labels"]
        assert labels.items() <= tmpl.items(), f"Deployment/{name} pod labels {tmpl} != {labels}"


def test_deployment_selectors_match_their_pods(objects):
    for d in _by_kind(objects, "Deployment"):
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert sel.items() <= labels.items(), _id(d)


def test_services_select_pods_and_target_existing_ports(objects):
    deps = _by_kind(objects, "Deployment")
    for svc in _by_kind(objects, "Service"):
        sel = svc["spec"].get("selector") or {}
        assert sel, f"{_id(svc)} has no selector"
        matched = [d for d in deps
                   if d["metadata"]["namespace"] == svc["metadata"]["namespace"]
                   and sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matched, f"{_id(svc)} selector {sel} matches no Deployment's pods"
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort", port["port"])
            for d in matched:
                cports = [p for c in _pod_containers(d) for p in c.get("ports", [])]
                ok = any(p.get("name") == tp for p in cports) if isinstance(tp, str) \
                    else any(p["containerPort"] == tp for p in cports)
                assert ok, f"{_id(svc)} targetPort {tp!r} not a container port of {_id(d)}"


REQUIRED_CTX = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}


def test_pods_are_hardened_and_bounded(objects):
    for d in _by_kind(objects, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, _id(d)
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", _id(d)
        assert spec.get("terminationGracePeriodSeconds") == 30, _id(d)
        # Service links would put GATEWAY_PORT=tcp://... etc. into the gateway's
        # environment, which it reads (GATEWAY_*) as settings and rejects.
        assert spec.get("enableServiceLinks") is False, _id(d)
        for c in spec["containers"]:
            where = f"{_id(d)} container {c['name']}"
            sc = c.get("securityContext", {})
            for k, v in REQUIRED_CTX.items():
                assert sc.get(k) is v, f"{where}: securityContext.{k} must be {v}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert c.get("imagePullPolicy") == "IfNotPresent", where
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}: resources.{kind}"
            assert "readinessProbe" in c and "livenessProbe" in c, f"{where}: probes"


def test_app_probes_use_readyz_and_healthz(objects):
    for d in _by_kind(objects, "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["image"] in EXTERNAL_IMAGES:
                continue
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", _id(d)
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", _id(d)


def test_images_are_ones_the_build_produces(objects):
    built = {s["image"] for s in compose_services(REPO / "compose.yaml").values() if "build" in s}
    for d in _by_kind(objects, "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert c["image"] in built | EXTERNAL_IMAGES, \
                f"{_id(d)}: image {c['image']} is neither built by compose.yaml nor a pinned external image"


def _gateway_configmap(objects, key: str = "gateway.yaml") -> str:
    cms = [o for o in _by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "gateway-config"]
    assert len(cms) == 1
    return cms[0]["data"][key]


def _check_config_files(objects, keys) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for key in keys:
            f = Path(tmp) / key
            f.write_text(_gateway_configmap(objects, key))
            paths.append(f)
        return check_config(*paths)


def test_gateway_runs_the_tutorials_istio_yaml_unchanged(objects):
    assert _gateway_configmap(objects, "istio.yaml") == (REPO / "examples/istio/istio.yaml").read_text(), \
        "the ConfigMap's istio.yaml must be the tutorial's file, byte for byte"
    gw = [d for d in _by_kind(objects, "Deployment") if d["metadata"]["name"] == "gateway"][0]
    args = gw["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--config", "/etc/mirror-gateway/istio.yaml", "--config", "/etc/mirror-gateway/service-entries.yaml"]


def test_gateway_configmap_passes_check_config(objects):
    res = _check_config_files(objects, ["istio.yaml", "service-entries.yaml"])
    assert res.returncode == 0, f"gateway --check-config rejected the ConfigMap:\n{res.stdout}\n{res.stderr}"
    assert "scoped out" not in res.stdout, res.stdout
    assert "ok: 2 routes, 1 mirrors, 3 destinations" in res.stdout, res.stdout
    res = _check_config_files(objects, ["gateway.yaml"])
    assert res.returncode == 0, f"gateway --check-config rejected the native alternative:\n{res.stdout}\n{res.stderr}"


def test_service_entries_place_each_subset_on_its_per_version_service(objects):
    svcs = {s["metadata"]["name"]: s for s in _by_kind(objects, "Service")}
    entries = [d for d in yaml.safe_load_all(_gateway_configmap(objects, "service-entries.yaml")) if d]
    subsets = [(d["spec"]["host"], s) for d in yaml.safe_load_all(_gateway_configmap(objects, "istio.yaml"))
               if d and d["kind"] == "DestinationRule" for s in d["spec"]["subsets"]]
    assert entries and subsets
    for host, subset in subsets:
        se = [e for e in entries if host in e["spec"]["hosts"]]
        assert len(se) == 1, f"{host}: one ServiceEntry"
        assert se[0]["spec"]["resolution"] == "DNS"
        eps = [e for e in se[0]["spec"]["endpoints"] if subset["labels"].items() <= e["labels"].items()]
        assert len(eps) == 1, f"{host}/{subset['name']}: exactly one endpoint has its labels"
        m = re.fullmatch(r"([a-z0-9-]+)\.test\.svc\.cluster\.local", eps[0]["address"])
        assert m and m.group(1) in svcs, f"{host}/{subset['name']}: {eps[0]['address']} names no Service"
        svc = svcs[m.group(1)]
        assert svc["spec"]["selector"] == subset["labels"], f"{host}/{subset['name']}: Service {svc['metadata']['name']} selects {svc['spec']['selector']}"
        for p in se[0]["spec"]["ports"]:
            assert p["number"] in [sp["port"] for sp in svc["spec"]["ports"]], f"{host}: port {p['number']} not on Service {svc['metadata']['name']}"


def test_gateway_endpoints_are_per_version_services(objects):
    cfg = yaml.safe_load(_gateway_configmap(objects))
    svcs = {s["metadata"]["name"]: s for s in _by_kind(objects, "Service")}
    endpoints = []
    for host, subsets in cfg["services"].items():
        if isinstance(subsets, dict):
            endpoints += [(f"{host}/{k}", e) for k, eps in subsets.items() for e in eps]
        else:
            endpoints += [(host, e) for e in subsets]
    assert endpoints
    for dest, ep in endpoints:
        m = re.fullmatch(r"([a-z0-9-]+)(?:\.test(?:\.svc(?:\.cluster\.local)?)?)?:(\d+)", ep)
        assert m, f"{dest}: endpoint {ep!r} is not <service>[.test.svc...]:<port>"
        name, port = m.group(1), int(m.group(2))
        assert name in svcs, f"{dest}: endpoint {ep} names no Service"
        assert port in [p["port"] for p in svcs[name]["spec"]["ports"]], f"{dest}: {ep} port"
        if "/" in dest:  # a subset must be routed to the Service selecting exactly that version
            host, subset = dest.split("/")
            assert svcs[name]["spec"]["selector"] == {"app": host, "version": subset}, \
                f"{dest}: Service {name} selects {svcs[name]['spec']['selector']}"


def test_native_alternative_routes_like_the_tutorial(objects):
    cfg = yaml.safe_load(_gateway_configmap(objects))
    routes = {r["match"]["prefix"]: r for r in cfg["routes"]}
    assert routes["/proxy/"]["to"] == "proxy/v1" and routes["/proxy/"]["rewrite"] == "/"
    assert routes["/target/"]["to"] == "target/v1" and routes["/target/"]["rewrite"] == "/"
    assert [m["to"] for m in routes["/target/"]["mirrors"]] == ["target/v2"]

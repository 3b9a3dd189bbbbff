#!/usr/bin/env python3
"""Assertions on the conntrack-exporter Helm chart, run by deploy/check.sh.

Subcommands:
  rendered CHART_DIR RENDERED_YAML [--values FILE]... [--differs-from OTHER_RENDERED_YAML]
      Check the output of `helm template` against the values it was rendered
      with (the chart's values.yaml overlaid with each --values file, as Helm
      merges them). With --differs-from, also check that the config checksum
      annotation differs from the one in the other rendering, whose config
      must differ.
  readme CHART_DIR
      Check that README.md documents every value of values.yaml.
"""

import argparse
import copy
import json
import os
import re
import sys
import tomllib

import yaml

CONFIG_PATH = "/etc/conntrack-exporter/config.toml"
CONFIG_DIR = os.path.dirname(CONFIG_PATH)
WEB_CONFIG_PATH = "/etc/conntrack-exporter-web/web-config.yml"
TLS_DIR = "/etc/conntrack-exporter-tls"
CLIENT_CERT_REQUIRED = {"RequireAnyClientCert", "RequireClientCert", "RequireAndVerifyClientCert"}
DEFAULT_LISTEN_PORT = 9318
DEFAULT_LISTEN_PATH = "/metrics"
MONITORING_API = "monitoring.coreos.com/v1"


def merge_values(base, overlay):
    """Helm's value coalescing: maps merge recursively, a null deletes the
    key, anything else (lists included) replaces."""
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_values(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def drop_nulls(mapping):
    return {key: value for key, value in mapping.items() if value is not None}


class Checker:
    def __init__(self):
        self.problems = []

    def expect(self, condition, message):
        if not condition:
            self.problems.append(message)
        return condition

    def equal(self, actual, expected, what):
        return self.expect(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def load_documents(path):
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def by_kind(documents):
    kinds = {}
    for doc in documents:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def config_checksum(documents):
    daemonset = by_kind(documents)["DaemonSet"][0]
    return daemonset["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config")


def check_rendered(args):
    chart_dir = args.chart_dir
    with open(os.path.join(chart_dir, "Chart.yaml"), encoding="utf-8") as handle:
        chart = yaml.safe_load(handle)
    with open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    for path in args.values:
        with open(path, encoding="utf-8") as handle:
            values = merge_values(values, yaml.safe_load(handle) or {})

    documents = load_documents(args.rendered)
    kinds = by_kind(documents)
    check = Checker()

    config = drop_nulls(values.get("config", {}))
    namespaces = values["namespaces"]
    if namespaces["enabled"]:
        # The chart sets these two keys from its namespaces values: the patterns are file
        # names in the mounted directory.
        directory = namespaces["hostPath"].rstrip("/")
        config["namespaces"] = [f"{directory}/{pattern}" for pattern in namespaces["patterns"]]
        config["watch_own_namespace"] = namespaces["watchOwnNamespace"]
    listen_port = config.get("listen_port", DEFAULT_LISTEN_PORT)
    listen_path = config.get("listen_path", DEFAULT_LISTEN_PATH)

    web = values["webConfig"]
    web_content = web.get("content") or {}
    web_enabled = bool(web_content or web["existingSecret"])
    tls_section = web_content.get("tls_server_config") or {}
    scheme = "https" if web_enabled and (web["tlsSecretName"] or tls_section) else "http"
    client_cert_required = str(tls_section.get("client_auth_type")) in CLIENT_CERT_REQUIRED

    # Which resources exist.
    expected_counts = {
        "Secret": 1 if web_content and not web["existingSecret"] else 0,
        "DaemonSet": 1,
        "ConfigMap": 1,
        "ServiceAccount": 1 if values["serviceAccount"]["create"] else 0,
        "Service": 1 if values["service"]["enabled"] else 0,
        "ServiceMonitor": 1 if values["serviceMonitor"]["enabled"] else 0,
        "PodMonitor": 1 if values["podMonitor"]["enabled"] else 0,
        "PrometheusRule": 1 if values["prometheusRule"]["enabled"] else 0,
    }
    for kind, count in expected_counts.items():
        check.equal(len(kinds.get(kind, [])), count, f"number of {kind} resources")
    unexpected = set(kinds) - set(expected_counts)
    check.expect(not unexpected, f"unexpected resource kinds {sorted(unexpected)}")
    if check.problems:
        return check.problems

    # DaemonSet and pod.
    daemonset = kinds["DaemonSet"][0]
    pod_template = daemonset["spec"]["template"]
    pod = pod_template["spec"]
    pod_labels = pod_template["metadata"]["labels"]
    selector = daemonset["spec"]["selector"]["matchLabels"]
    check.expect(selector.items() <= pod_labels.items(), "DaemonSet selector does not match its pod labels")
    check.equal(pod.get("hostNetwork"), True, "pod hostNetwork")
    check.equal(pod.get("dnsPolicy"), "ClusterFirstWithHostNet", "pod dnsPolicy")
    check.equal(daemonset["spec"].get("updateStrategy"), values["updateStrategy"], "updateStrategy")
    check.equal(pod.get("nodeSelector"), values["nodeSelector"] or None, "nodeSelector")
    check.equal(pod.get("tolerations"), values["tolerations"] or None, "tolerations")
    check.equal(pod.get("affinity"), values["affinity"] or None, "affinity")
    check.equal(pod.get("priorityClassName"), values["priorityClassName"] or None, "priorityClassName")
    for key, value in values["podLabels"].items():
        check.equal(pod_labels.get(key), value, f"pod label {key}")
    annotations = pod_template["metadata"].get("annotations", {})
    for key, value in values["podAnnotations"].items():
        check.equal(annotations.get(key), value, f"pod annotation {key}")
    check.expect(
        re.fullmatch(r"[0-9a-f]{64}", str(annotations.get("checksum/config"))),
        "pod template has no sha256 checksum/config annotation",
    )

    containers = pod["containers"]
    check.equal(len(containers), 1, "number of containers")
    container = containers[0]
    tag = values["image"]["tag"] or chart["appVersion"]
    expected_image = (
        f"{values['image']['repository']}@{values['image']['digest']}"
        if values["image"].get("digest")
        else f"{values['image']['repository']}:{tag}"
    )
    check.equal(container["image"], expected_image, "container image")
    web_args = []
    if web_enabled:
        web_args = ["--web.config.file", WEB_CONFIG_PATH]
        if web["publicHealthEndpoints"]:
            web_args.append("--public-health-endpoints")
    check.equal(container.get("args"), ["--config", CONFIG_PATH] + web_args + values["extraArgs"], "container args")
    check.equal(container.get("resources"), values["resources"], "container resources")

    # Entering other network namespaces needs SYS_ADMIN (setns); following another process's
    # /proc/<pid>/ns/net, for its pod UID, needs SYS_PTRACE. Both only when asked for.
    extra_capabilities = []
    if namespaces["enabled"]:
        extra_capabilities.append("SYS_ADMIN")
    if namespaces["podUid"]:
        extra_capabilities.append("SYS_PTRACE")
    expected_security = copy.deepcopy(values["securityContext"])
    if extra_capabilities:
        added = expected_security.setdefault("capabilities", {}).get("add", [])
        expected_security["capabilities"]["add"] = added + [c for c in extra_capabilities if c not in added]
    security = container.get("securityContext", {})
    check.equal(security, expected_security, "container securityContext")
    check.equal(security.get("capabilities", {}).get("add"), ["NET_ADMIN"] + extra_capabilities, "capabilities added")
    # The node's processes, for pod UIDs, and nothing of the node's PID namespace otherwise.
    check.equal(pod.get("hostPID"), True if namespaces["podUid"] else None, "pod hostPID (namespaces.podUid)")
    check.expect(not pod.get("hostIPC"), "pod shares the node's IPC namespace")
    check.equal(security.get("capabilities", {}).get("drop"), ["ALL"], "capabilities dropped")
    check.equal(security.get("readOnlyRootFilesystem"), True, "readOnlyRootFilesystem")
    check.expect(not security.get("privileged"), "container is privileged")
    if security.get("runAsUser") == 0:
        # Root needs no file capability, so nothing may be gained on exec.
        check.equal(security.get("allowPrivilegeEscalation"), False, "allowPrivilegeEscalation when running as root")

    ports = {port["name"]: port for port in container.get("ports", [])}
    check.expect("metrics" in ports, "container has no port named metrics")
    metrics_port = ports.get("metrics", {})
    check.equal(metrics_port.get("containerPort"), listen_port, "containerPort (config.listen_port)")

    def probe_target(probe_name):
        """The probe's path (None for a TCP check), port number and scheme."""
        probe = container.get(probe_name)
        if not check.expect(probe, f"container has no {probe_name}"):
            return None, None, None
        action = probe.get("httpGet") or probe.get("tcpSocket") or {}
        port = action.get("port")
        # A named port resolves through the container's ports.
        port_number = ports.get(port, {}).get("containerPort") if isinstance(port, str) else port
        return action.get("path"), port_number, action.get("scheme", "HTTP") if "httpGet" in probe else None

    for probe_name, health_path in [
        ("readinessProbe", "/-/ready"),
        ("livenessProbe", "/-/healthy"),
    ]:
        if not values[probe_name]["enabled"]:
            continue
        path, port, probe_scheme = probe_target(probe_name)
        check.equal(port, listen_port, f"{probe_name} port (config.listen_port)")
        if client_cert_required:
            # A kubelet presents no client certificate: the TCP port is all it can check.
            check.equal((path, probe_scheme), (None, None), f"{probe_name} is a TCP check (client certificates required)")
        else:
            check.equal(path, health_path, f"{probe_name} path")
            check.equal(probe_scheme, scheme.upper(), f"{probe_name} scheme")

    # The web configuration: a Secret (made from the values, or existing) and the TLS Secret,
    # mounted where the flag and the file point.
    mounts_by_path = {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}
    volumes_by_name = {volume["name"]: volume for volume in pod.get("volumes", [])}

    def secret_mounted_at(directory):
        mount = mounts_by_path.get(directory)
        if not mount:
            return None
        check.equal(mount.get("readOnly"), True, f"{directory} mounted read-only")
        return volumes_by_name.get(mount["name"], {}).get("secret", {}).get("secretName")

    web_secret = secret_mounted_at(os.path.dirname(WEB_CONFIG_PATH))
    if web_enabled:
        expected_secret = web["existingSecret"] or (kinds["Secret"][0]["metadata"]["name"] if kinds.get("Secret") else None)
        check.equal(web_secret, expected_secret, "Secret mounted with the web configuration")
    else:
        check.equal(web_secret, None, "web configuration mounted without webConfig values")
    check.equal(secret_mounted_at(TLS_DIR), web["tlsSecretName"] or None, "TLS Secret mounted")
    if kinds.get("Secret"):
        secret = kinds["Secret"][0]
        text = secret.get("stringData", {}).get("web-config.yml", "")
        check.equal(yaml.safe_load(text), web_content, "web-config.yml content")
        check.expect(
            re.fullmatch(r"[0-9a-f]{64}", str(pod_template["metadata"].get("annotations", {}).get("checksum/web-config"))),
            "pod template has no checksum/web-config annotation",
        )

    # The runtime's namespace directory: mounted read-only at the same path, following the
    # node's later bind mounts; no other directory of the node is mounted.
    host_volumes = {name: volume["hostPath"] for name, volume in volumes_by_name.items() if "hostPath" in volume}
    if namespaces["enabled"]:
        check.equal(list(host_volumes.values()), [{"path": namespaces["hostPath"], "type": "DirectoryOrCreate"}],
                    "hostPath volumes (namespaces.hostPath)")
        mount = mounts_by_path.get(namespaces["hostPath"], {})
        check.equal(host_volumes.get(mount.get("name")), {"path": namespaces["hostPath"], "type": "DirectoryOrCreate"},
                    f"volume mounted at {namespaces['hostPath']}")
        check.equal((mount.get("readOnly"), mount.get("mountPropagation")), (True, "HostToContainer"),
                    f"{namespaces['hostPath']} mount: readOnly and mountPropagation")
    else:
        check.equal(host_volumes, {}, "hostPath volumes without namespaces.enabled")

    # The config file: mounted from the ConfigMap, content equal to the values.
    configmap = kinds["ConfigMap"][0]
    mounts = {mount["name"]: mount for mount in container.get("volumeMounts", [])}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    config_volumes = [
        name for name, volume in volumes.items()
        if volume.get("configMap", {}).get("name") == configmap["metadata"]["name"]
    ]
    if check.expect(config_volumes, "no volume mounts the ConfigMap"):
        mount = mounts.get(config_volumes[0], {})
        check.equal(mount.get("mountPath"), CONFIG_DIR, "ConfigMap mount path")
    toml_text = configmap.get("data", {}).get("config.toml")
    if check.expect(toml_text is not None, "ConfigMap has no config.toml"):
        try:
            rendered_config = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as error:
            check.expect(False, f"config.toml is not valid TOML: {error}\n{toml_text}")
        else:
            check.equal(rendered_config, config, "config.toml content")

    # Service and monitors.
    if values["service"]["enabled"]:
        service = kinds["Service"][0]
        service_ports = service["spec"]["ports"]
        check.equal(
            [(p["name"], p["port"], p["targetPort"]) for p in service_ports],
            [("metrics", listen_port, "metrics")],
            "Service ports",
        )
        check.equal(service["spec"].get("clusterIP"), values["service"]["clusterIP"] or None, "Service clusterIP")
        check.expect(service["spec"]["selector"].items() <= pod_labels.items(), "Service selector does not match pod labels")

    def check_monitor(monitor, endpoints_key, monitor_values, selected_labels, kind):
        endpoints = monitor["spec"][endpoints_key]
        check.equal(len(endpoints), 1, f"{kind} endpoints")
        endpoint = endpoints[0]
        check.equal(endpoint.get("port"), "metrics", f"{kind} port")
        check.equal(endpoint.get("path"), listen_path, f"{kind} path (config.listen_path)")
        check.equal(endpoint.get("interval"), monitor_values["interval"] or None, f"{kind} interval")
        check.equal(endpoint.get("scheme"), monitor_values["scheme"] or scheme, f"{kind} scheme")
        check.equal(endpoint.get("tlsConfig"), monitor_values["tlsConfig"] or None, f"{kind} tlsConfig")
        check.equal(endpoint.get("basicAuth"), monitor_values["basicAuth"] or None, f"{kind} basicAuth")
        job_relabels = [
            r for r in endpoint.get("relabelings", [])
            if r.get("targetLabel") == "job" and r.get("replacement") == "conntrack-exporter"
        ]
        check.expect(job_relabels, f"{kind} does not set job=\"conntrack-exporter\"")
        check.expect(
            monitor["spec"]["selector"]["matchLabels"].items() <= selected_labels.items(),
            f"{kind} selector does not match its targets",
        )
        for key, value in monitor_values["additionalLabels"].items():
            check.equal(monitor["metadata"]["labels"].get(key), value, f"{kind} label {key}")

    if values["serviceMonitor"]["enabled"]:
        check_monitor(kinds["ServiceMonitor"][0], "endpoints", values["serviceMonitor"],
                      kinds["Service"][0]["metadata"]["labels"], "ServiceMonitor")
    if values["podMonitor"]["enabled"]:
        check_monitor(kinds["PodMonitor"][0], "podMetricsEndpoints", values["podMonitor"], pod_labels, "PodMonitor")

    # PrometheusRule: the groups of files/alerts.yaml, plus the critical hosts.
    if values["prometheusRule"]["enabled"]:
        rule = kinds["PrometheusRule"][0]
        with open(os.path.join(chart_dir, "files", "alerts.yaml"), encoding="utf-8") as handle:
            expected_groups = yaml.safe_load(handle)["groups"]
        alert_labels = values["prometheusRule"]["alertLabels"]
        for group in expected_groups:
            for item in group["rules"]:
                if "alert" in item and alert_labels:
                    item["labels"] = {**alert_labels, **item.get("labels", {})}
        hosts = values["prometheusRule"]["criticalHosts"]
        if hosts:
            expected_groups.append({
                "name": "conntrack-exporter-critical-hosts",
                "rules": [
                    {"record": "conntrack_exporter:critical_host", "expr": "vector(1)", "labels": {"host": host}}
                    for host in hosts
                ],
            })
        check.equal(rule["spec"]["groups"], expected_groups, "PrometheusRule groups")
        for key, value in values["prometheusRule"]["additionalLabels"].items():
            check.equal(rule["metadata"]["labels"].get(key), value, f"PrometheusRule label {key}")

    if args.differs_from:
        other = load_documents(args.differs_from)
        other_config = by_kind(other)["ConfigMap"][0]["data"]["config.toml"]
        if check.expect(other_config != toml_text, "--differs-from rendering has the same config.toml"):
            check.expect(
                config_checksum(other) != config_checksum(documents),
                "checksum/config annotation did not change with the config",
            )
    return check.problems


def value_paths(values, schema, prefix=""):
    """Dotted paths of the values to document. Objects whose schema fixes
    their keys are documented key by key; free-form maps and lists as a
    whole."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        node = schema.get("properties", {}).get(key, {})
        fixed_keys = "properties" in node and node.get("additionalProperties") is False
        if isinstance(value, dict) and fixed_keys:
            paths += value_paths(value, node, path + ".")
        else:
            paths.append(path)
    return paths


def check_readme(args):
    chart_dir = args.chart_dir
    with open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    with open(os.path.join(chart_dir, "values.schema.json"), encoding="utf-8") as handle:
        schema = json.load(handle)
    with open(os.path.join(chart_dir, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    return [f"README.md does not document `{path}`" for path in value_paths(values, schema)
            if f"`{path}`" not in readme]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rendered = commands.add_parser("rendered")
    rendered.add_argument("chart_dir")
    rendered.add_argument("rendered")
    rendered.add_argument("--values", action="append", default=[])
    rendered.add_argument("--differs-from")
    readme = commands.add_parser("readme")
    readme.add_argument("chart_dir")
    args = parser.parse_args(argv)

    problems = check_rendered(args) if args.command == "rendered" else check_readme(args)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

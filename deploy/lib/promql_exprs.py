#!/usr/bin/env python3
"""PromQL expressions of the Grafana dashboard and the alert rules.

Used by deploy/check.sh (static checks) and deploy/e2e.sh (queries against a
live Prometheus). Grafana template variables are replaced by values that keep
the expression valid PromQL, so the expressions can be parsed by promtool and
evaluated by Prometheus outside Grafana.

Subcommands:
  check-dashboard DASHBOARD        structural checks of the dashboard JSON
  rules-file OUT DASHBOARD [RULES...]
                                   write a Prometheus rule file with one
                                   recording rule per expression, so that
                                   `promtool check rules OUT` parses them all
  list DASHBOARD [RULES...]        print one JSON object per expression:
                                   {"source": ..., "expr": ...}
"""

import json
import re
import sys

import yaml

# Values substituted for Grafana variables. Every dashboard variable is used
# inside a regex matcher (label=~"$var"), where ".*" keeps the query valid
# and selects everything; interval variables need a real duration.
GRAFANA_INTERVALS = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
}
VARIABLE_PATTERN = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES_PATTERN = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)

# Metrics the dashboard must show (the panels the deployment issue asks for).
REQUIRED_DASHBOARD_METRICS = [
    "conntrack_opening_connections_total",
    "conntrack_open_connections_total",
    "conntrack_closing_connections_total",
    "conntrack_closed_connections_total",
    "conntrack_exporter_events_lost_total",
    "conntrack_exporter_resync_corrected_entries",
    "conntrack_connections_opened_total",
    "conntrack_connections_failed_total",
    "conntrack_sent_bytes_total",
    "conntrack_exporter_kernel_stat_total",
    "scrape_duration_seconds",
]


def substitute_variables(expr):
    def replace(match):
        name = match.group(1) or match.group(2) or match.group(3)
        return GRAFANA_INTERVALS.get(name, ".*")

    return VARIABLE_PATTERN.sub(replace, expr)


def iter_panels(panels):
    for panel in panels:
        yield panel
        # Collapsed rows keep their panels nested.
        yield from iter_panels(panel.get("panels", []))


def dashboard_expressions(path):
    with open(path, encoding="utf-8") as handle:
        dashboard = json.load(handle)
    found = []
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                source = f"dashboard panel {panel.get('title')!r} query {target.get('refId')}"
                found.append((source, substitute_variables(target["expr"])))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        match = LABEL_VALUES_PATTERN.match(query or "")
        if match:
            # label_values(SELECTOR, label) is Grafana syntax; its selector is PromQL.
            found.append((f"dashboard variable {variable['name']!r}", substitute_variables(match.group(1))))
    return found


def rule_expressions(path):
    with open(path, encoding="utf-8") as handle:
        rule_file = yaml.safe_load(handle)
    found = []
    for group in rule_file.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            found.append((f"{path} group {group['name']!r} rule {name!r}", rule["expr"]))
    return found


def check_dashboard(path):
    with open(path, encoding="utf-8") as handle:
        dashboard = json.load(handle)
    problems = []
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    datasource = variables.get("datasource")
    if not datasource or datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
        problems.append("no 'datasource' variable of type datasource for prometheus")
    if "host" not in variables or variables["host"].get("type") != "query":
        problems.append("no 'host' query variable")

    seen_ids = set()
    occupied = {}
    text = json.dumps(dashboard)
    for panel in iter_panels(dashboard.get("panels", [])):
        title = panel.get("title")
        if panel.get("id") in seen_ids:
            problems.append(f"duplicate panel id {panel.get('id')}")
        seen_ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        for x in range(grid.get("x", 0), grid.get("x", 0) + grid.get("w", 0)):
            for y in range(grid.get("y", 0), grid.get("y", 0) + grid.get("h", 0)):
                if (x, y) in occupied:
                    problems.append(f"panel {title!r} overlaps panel {occupied[(x, y)]!r}")
                    break
                occupied[(x, y)] = title
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"panel {title!r} has no query")
        # Every query must go through the datasource variable, so the
        # dashboard works with whichever Prometheus data source is picked.
        for item in [panel] + panel.get("targets", []):
            uid = (item.get("datasource") or {}).get("uid")
            if uid != "${datasource}":
                problems.append(f"panel {title!r} uses data source {uid!r} instead of ${{datasource}}")
    for metric in REQUIRED_DASHBOARD_METRICS:
        if metric not in text:
            problems.append(f"no panel shows {metric}")
    for problem in problems:
        print(f"dashboard: {problem}", file=sys.stderr)
    return 1 if problems else 0


def write_rules_file(out_path, dashboard, rule_files):
    expressions = dashboard_expressions(dashboard)
    for path in rule_files:
        expressions += rule_expressions(path)
    rules = [
        {"record": f"check:expression_{index}", "expr": expr, "labels": {"source": source}}
        for index, (source, expr) in enumerate(expressions)
    ]
    with open(out_path, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"groups": [{"name": "expressions-under-check", "rules": rules}]}, handle, sort_keys=False)
    print(f"{len(rules)} expressions written to {out_path}")
    return 0


def list_expressions(dashboard, rule_files):
    expressions = dashboard_expressions(dashboard)
    for path in rule_files:
        expressions += rule_expressions(path)
    for source, expr in expressions:
        print(json.dumps({"source": source, "expr": expr}))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "check-dashboard":
        return check_dashboard(argv[1])
    if len(argv) >= 3 and argv[0] == "rules-file":
        return write_rules_file(argv[1], argv[2], argv[3:])
    if len(argv) >= 2 and argv[0] == "list":
        return list_expressions(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

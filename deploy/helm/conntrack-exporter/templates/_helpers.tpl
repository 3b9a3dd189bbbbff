{{/* Chart name, overridable with nameOverride. */}}
{{- define "conntrack-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name. Kubernetes names are limited to 63 characters; the
release name is not repeated when it already contains the chart name.
*/}}
{{- define "conntrack-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "conntrack-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the DaemonSet's pods; must never change on upgrade. */}}
{{- define "conntrack-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conntrack-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "conntrack-exporter.labels" -}}
helm.sh/chart: {{ include "conntrack-exporter.chart" . }}
{{ include "conntrack-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: metrics
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "conntrack-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conntrack-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: a digest wins over a tag; the tag defaults to appVersion. */}}
{{- define "conntrack-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The port and path the exporter serves on, taken from the config map so the
container port, probes, Service and monitors always agree with config.toml.
The fallbacks are the exporter's built-in defaults.
*/}}
{{- define "conntrack-exporter.listenPort" -}}
{{- if kindIs "invalid" .Values.config.listen_port }}9318{{ else }}{{ int64 .Values.config.listen_port }}{{ end }}
{{- end }}

{{- define "conntrack-exporter.listenPath" -}}
{{- default "/metrics" .Values.config.listen_path }}
{{- end }}

{{/*
One TOML value. Strings are emitted as JSON strings, which are valid TOML
basic strings (same quoting and \uXXXX escapes). Numbers arrive as float64
or int64 depending on where the value was set (values file or --set), so
whole numbers are printed as integers to avoid 1e+06 style output.
Arguments: dict "key" (for error messages) "value".
*/}}
{{- define "conntrack-exporter.tomlValue" -}}
{{- $v := .value -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- ternary "true" "false" $v -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- $v -}}
{{- else if kindIs "float64" $v -}}
{{- if eq (float64 (int64 $v)) $v }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $item := $v }}{{ if $i }}, {{ end }}{{ include "conntrack-exporter.tomlValue" (dict "key" $.key "value" $item) }}{{ end }}]
{{- else -}}
{{- fail (printf "config.%s: values of type %s cannot be rendered into the exporter's flat TOML config" .key (kindOf $v)) -}}
{{- end -}}
{{- end }}

{{/*
config.toml: one line per non-null key of .Values.config, and with
namespaces.enabled the keys the chart sets from the namespaces values (the
patterns become paths in the mounted directory), sorted.
*/}}
{{- define "conntrack-exporter.configToml" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.namespaces.enabled }}
{{- $directory := trimSuffix "/" .Values.namespaces.hostPath }}
{{- $paths := list }}
{{- range .Values.namespaces.patterns }}
{{- $paths = append $paths (printf "%s/%s" $directory .) }}
{{- end }}
{{- $_ := set $config "namespaces" $paths }}
{{- $_ := set $config "watch_own_namespace" .Values.namespaces.watchOwnNamespace }}
{{- end -}}
# Rendered by the conntrack-exporter Helm chart from the `config` values.
{{- range $key := keys $config | sortAlpha }}
{{- $value := index $config $key }}
{{- if not (kindIs "invalid" $value) }}
{{ if regexMatch "^[A-Za-z0-9_-]+$" $key }}{{ $key }}{{ else }}{{ toJson $key }}{{ end }} = {{ include "conntrack-exporter.tomlValue" (dict "key" $key "value" $value) }}
{{- end }}
{{- end }}
{{ end }}

{{/*
Relabelings shared by the ServiceMonitor and the PodMonitor: a fixed job
name, which the alert rules and the dashboard select on, and the node name,
since with host networking the instance label is only the node IP.
*/}}
{{- define "conntrack-exporter.relabelings" -}}
- action: replace
  targetLabel: job
  replacement: conntrack-exporter
- action: replace
  sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
{{- with .relabelings }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The web configuration file (TLS and authentication): given when webConfig has
content or names an existing Secret. Empty when not.
*/}}
{{- define "conntrack-exporter.webConfig" -}}
{{- if or .Values.webConfig.existingSecret .Values.webConfig.content }}true{{ end }}
{{- end }}

{{- define "conntrack-exporter.webConfigSecret" -}}
{{- default (printf "%s-web-config" (include "conntrack-exporter.fullname" .) | trunc 63 | trimSuffix "-") .Values.webConfig.existingSecret }}
{{- end }}

{{/* "https" when the exporter serves TLS, else "http". */}}
{{- define "conntrack-exporter.scheme" -}}
{{- if and (include "conntrack-exporter.webConfig" .) (or .Values.webConfig.tlsSecretName .Values.webConfig.content.tls_server_config) }}https{{ else }}http{{ end }}
{{- end }}

{{/*
Whether every TLS client must present a certificate, which a kubelet probe
cannot: then the probes check the TCP port. Empty when not.
*/}}
{{- define "conntrack-exporter.clientCertRequired" -}}
{{- $tls := .Values.webConfig.content.tls_server_config | default dict }}
{{- if has (toString $tls.client_auth_type) (list "RequireAnyClientCert" "RequireClientCert" "RequireAndVerifyClientCert") }}true{{ end }}
{{- end }}

{{/*
Scheme, TLS and basic auth of a monitor's endpoint. Argument: dict "root" (the
chart context) "monitor" (the monitor's values).
*/}}
{{- define "conntrack-exporter.monitorAccess" -}}
scheme: {{ default (include "conntrack-exporter.scheme" .root) .monitor.scheme }}
{{- with .monitor.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A probe's action. Argument: dict "root" (the chart context) "path" (a health
endpoint; HTTPS with a web configuration, a TCP check with client certificates).
*/}}
{{- define "conntrack-exporter.probeAction" -}}
{{- if include "conntrack-exporter.clientCertRequired" .root -}}
tcpSocket:
  port: metrics
{{- else -}}
httpGet:
  path: {{ .path }}
  port: metrics
  {{- if include "conntrack-exporter.webConfig" .root }}
  scheme: {{ include "conntrack-exporter.scheme" .root | upper }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
The container's security context: the values' own, plus the capabilities that
watching other network namespaces needs: SYS_ADMIN to enter them (setns), and
SYS_PTRACE for pod UIDs (following another process's /proc/<pid>/ns/net is a
ptrace read access, denied for other users' processes and for processes holding
capabilities the exporter lacks).
*/}}
{{- define "conntrack-exporter.securityContext" -}}
{{- $context := deepCopy (default (dict) .Values.securityContext) }}
{{- $extra := list }}
{{- if .Values.namespaces.enabled }}
{{- $extra = append $extra "SYS_ADMIN" }}
{{- end }}
{{- if .Values.namespaces.podUid }}
{{- $extra = append $extra "SYS_PTRACE" }}
{{- end }}
{{- if $extra }}
{{- $capabilities := default (dict) $context.capabilities }}
{{- $_ := set $capabilities "add" (concat (default (list) $capabilities.add) $extra | uniq) }}
{{- $_ := set $context "capabilities" $capabilities }}
{{- end }}
{{- with $context }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* The chart's name, and the release's full name (both cut to 63 characters for DNS). */}}
{{- define "telex.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "telex.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "telex.headless" -}}
{{- printf "%s-headless" (include "telex.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "telex.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "telex.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "telex.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: telex
{{- end -}}

{{- define "telex.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "telex.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "telex.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The DNS domain of the pods under the headless Service. */}}
{{- define "telex.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "telex.headless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The stable DNS name of pod N (its node-to-node address is this with port 7401). */}}
{{- define "telex.podHost" -}}
{{- printf "%s-%d.%s" (include "telex.fullname" .root) .ordinal (include "telex.podDomain" .root) -}}
{{- end -}}

{{/* Every pod's node-to-node address, pod 0 first: the node listed first starts the cluster. */}}
{{- define "telex.joinList" -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $addrs = append $addrs (printf "%s:7401" (include "telex.podHost" (dict "root" $ "ordinal" $i))) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{- define "telex.nodeTlsPrefix" -}}
{{- default (printf "%s-node-tls" (include "telex.fullname" .)) .Values.nodeTls.secretPrefix -}}
{{- end -}}

{{/* The label a pod needs to reach the admin API when the NetworkPolicy is on. */}}
{{- define "telex.adminClientLabel" -}}
{{- printf "%s-admin-client" (include "telex.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Whether an optional Prometheus Operator object is on: true, false, or null (auto). */}}
{{- define "telex.operatorEnabled" -}}
{{- $on := index . 0 -}}
{{- $ctx := index . 1 -}}
{{- if kindIs "bool" $on -}}
{{- $on -}}
{{- else -}}
{{- $ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}
{{- end -}}
{{- end -}}

{{/* The node's TOML configuration: the chart's settings, then .Values.config over them. */}}
{{- define "telex.config" -}}
{{- $cfg := dict
  "data_dir" "/data"
  "bootstrap_tenant" .Values.bootstrapTenant
  "listen" (dict
    "client" "0.0.0.0:7400"
    "node" "0.0.0.0:7401"
    "admin" (ternary "0.0.0.0:7402" "127.0.0.1:7402" .Values.admin.enabled)
    "http" "0.0.0.0:7480"
    "xmpp" "0.0.0.0:5222"
    "xmpp_tls" "0.0.0.0:5223")
  "raft" (dict "shards" (int .Values.raft.shards) "replicas" (int .Values.raft.replicas))
  "log" (dict "format" .Values.logFormat) -}}
{{- if .Values.xmppTls.existingSecret -}}
{{- $_ := set $cfg "xmpp" (dict "cert" "/etc/telex/xmpp-tls/tls.crt" "key" "/etc/telex/xmpp-tls/tls.key") -}}
{{- end -}}
{{- $merged := mergeOverwrite $cfg (deepCopy .Values.config) -}}
{{- include "telex.intify" $merged -}}
{{- toToml $merged -}}
{{- end -}}

{{/* Values arrive as JSON numbers (float64): whole numbers go back to integers, in place, so
     the TOML says 50, not 50.0 (the node's integer fields refuse floats). */}}
{{- define "telex.intify" -}}
{{- $m := . -}}
{{- range $k, $v := $m -}}
{{- if kindIs "map" $v -}}
{{- include "telex.intify" $v -}}
{{- else if and (kindIs "float64" $v) (eq (float64 (int64 $v)) $v) -}}
{{- $_ := set $m $k (int64 $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

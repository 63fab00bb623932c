{{/*
Names and labels.
*/}}
{{- define "inventory.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inventory.fullname" -}}
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

{{- define "inventory.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inventory.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inventory.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "inventory.labels" -}}
helm.sh/chart: {{ include "inventory.chart" . }}
{{ include "inventory.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inventory
{{- end }}

{{- define "inventory.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inventory.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "inventory.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The Secret the pods read (INVENTORY_DATABASE_URL, INVENTORY_REDIS_URL,
INVENTORY_ADMIN_TOKEN_SHA256): an existing one, or the one this chart renders.
*/}}
{{- define "inventory.secretName" -}}
{{- default (include "inventory.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/*
The migration hook Job runs before the release's own Secret exists, so it reads either the
existing Secret or a hook-scoped copy made just before it.
*/}}
{{- define "inventory.migrationSecretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else }}
{{- printf "%s-migration" (include "inventory.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Secret data, shared by the release Secret and the migration hook Secret.
*/}}
{{- define "inventory.secretData" -}}
INVENTORY_DATABASE_URL: {{ required "postgresql.url is required" .Values.postgresql.url | quote }}
INVENTORY_REDIS_URL: {{ .Values.redis.url | quote }}
INVENTORY_ADMIN_TOKEN_SHA256: {{ .Values.auth.adminTokenSha256 | default list | toJson | quote }}
{{- end }}

{{/*
A setting's value as the string pydantic-settings parses. Helm reads numbers in values as
float64, which would print 1000000 as "1e+06": whole numbers are printed as integers, and
lists or maps as JSON.
*/}}
{{- define "inventory.settingValue" -}}
{{- if kindIs "float64" . }}
{{- if eq . (. | int64 | float64) }}{{ . | int64 }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "slice" .) (kindIs "map" .) }}
{{- toJson . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
Per-role env: the role's config overrides (same names as .Values.config) and the TLS files.
Call with (dict "root" $ "config" .Values.api.config "tls" true).
*/}}
{{- define "inventory.env" -}}
{{- range $key, $value := .config }}
- name: {{ printf "INVENTORY_%s" (upper $key) }}
  value: {{ include "inventory.settingValue" $value | quote }}
{{- end }}
{{- if and .tls .root.Values.tls.enabled }}
- name: INVENTORY_TLS_CERT_FILE
  value: /etc/inventory/tls/tls.crt
- name: INVENTORY_TLS_KEY_FILE
  value: /etc/inventory/tls/tls.key
{{- if .root.Values.tls.clientAuth }}
- name: INVENTORY_TLS_CLIENT_CA_FILE
  value: /etc/inventory/tls/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{- define "inventory.envFrom" -}}
- configMapRef:
    name: {{ include "inventory.fullname" . }}
- secretRef:
    name: {{ include "inventory.secretName" . }}
{{- end }}

{{/*
Checks that make a bad combination of values fail at render time.
*/}}
{{- define "inventory.validate" -}}
{{- if gt (int .Values.worker.replicas) (int .Values.config.topic_partitions) }}
{{- fail (printf "worker.replicas (%d) must not exceed config.topic_partitions (%d): a partition has one consumer per group, extra workers sit idle" (int .Values.worker.replicas) (int .Values.config.topic_partitions)) }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName" }}
{{- end }}
{{- end }}

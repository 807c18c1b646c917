{{/* Names and labels shared by every template. */}}

{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: include with (list $ "data-plane"). */}}
{{- define "switchyard.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "switchyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "switchyard.secretName" -}}
{{- default (printf "%s-secrets" (include "switchyard.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.controlPlaneGrpcUrl" -}}
{{- printf "http://%s-control-plane:%d" (include "switchyard.fullname" .) (int .Values.controlPlane.ports.grpc) -}}
{{- end -}}

{{- define "switchyard.collectorUrl" -}}
{{- printf "http://%s-collector:%d" (include "switchyard.fullname" .) (int .Values.collector.ports.grpc) -}}
{{- end -}}

{{/* One environment variable from the chart's (or the named) Secret. */}}
{{- define "switchyard.secretEnv" -}}
{{- $root := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.secretName" $root }}
      key: {{ index . 2 }}
{{- end -}}

{{/* Environment every service shares: logs, traces, etcd. */}}
{{- define "switchyard.commonEnv" -}}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: SWITCHYARD_REPLICA_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if .Values.etcd.endpoints }}
- name: SWITCHYARD_ETCD_ENDPOINTS
  value: {{ join "," .Values.etcd.endpoints | quote }}
- name: SWITCHYARD_ETCD_PREFIX
  value: {{ .Values.etcd.prefix | quote }}
{{- end }}
{{- if .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
{{- range $name, $value := .Values.otel.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Refuse settings the schema cannot express. */}}
{{- define "switchyard.validate" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- range $key := list "kek" "rootKey" "controlPlaneDatabaseUrl" "usageDatabaseUrl" -}}
{{- if not (index $.Values.secrets $key) -}}
{{- fail (printf "secrets.%s is required unless secrets.existingSecret names a Secret holding it" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int .Values.controlPlane.replicas) 1) (not .Values.etcd.endpoints) -}}
{{- fail "controlPlane.replicas > 1 needs etcd.endpoints: replicas hear each other's changes and elect leaders through etcd" -}}
{{- end -}}
{{- if and (gt (int .Values.collector.replicas) 1) (not .Values.etcd.endpoints) -}}
{{- fail "collector.replicas > 1 needs etcd.endpoints: one collector at a time leads retention cleanup" -}}
{{- end -}}
{{- if and .Values.dataPlane.autoscaling.enabled (gt (int .Values.dataPlane.autoscaling.minReplicas) (int .Values.dataPlane.autoscaling.maxReplicas)) -}}
{{- fail "dataPlane.autoscaling.minReplicas must not exceed dataPlane.autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and .Values.controlPlane.ingress.enabled (not .Values.controlPlane.ingress.host) -}}
{{- fail "controlPlane.ingress.enabled needs controlPlane.ingress.host: the console's sessions and same-origin checks are per host" -}}
{{- end -}}
{{- $dp := .Values.dataPlane -}}
{{- $shutdown := add $dp.preStopSleepSeconds $dp.drainTimeoutSeconds $dp.usageFlushTimeoutSeconds -}}
{{- if le (int $dp.terminationGracePeriodSeconds) (int $shutdown) -}}
{{- fail (printf "dataPlane.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainTimeoutSeconds + usageFlushTimeoutSeconds (%d), or Kubernetes kills streams and usage still in flight" (int $dp.terminationGracePeriodSeconds) (int $shutdown)) -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

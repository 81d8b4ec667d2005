{{- define "goodput.name" -}}goodput-operator{{- end -}}
{{- define "goodput.fullname" -}}
{{- if contains "goodput-operator" .Release.Name -}}{{ .Release.Name | trunc 63 }}{{- else -}}{{ printf "%s-goodput-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "goodput.labels" -}}
app.kubernetes.io/name: {{ include "goodput.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "goodput.selector" -}}
app.kubernetes.io/name: {{ include "goodput.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "goodput.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "goodput.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
{{/* The operator's permissions, exact verbs, one comment per rule (kopf's deployment-rbac.yaml). */}}
{{- define "goodput.rules" -}}
# Watch policies; kopf patches its progress annotations and the daemon writes status.
- apiGroups: ["goodput.dev"]
  resources: ["goodputpolicies"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["goodput.dev"]
  resources: ["goodputpolicies/status"]
  verbs: ["get", "patch"]
# Explain every decision as an Event.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
# Read and scale the pools and KV tiers through /scale; read the workload for its
# pod template's nvidia.com/gpu limit.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "patch"]
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get"]
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets/scale"]
  verbs: ["get", "patch"]
# Count the pods that hold GPUs (terminating ones too) before growing a pool.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Refuse to fight another autoscaler on the same target.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list"]
# Prometheus bearer token and CA named by a policy's metrics.auth.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

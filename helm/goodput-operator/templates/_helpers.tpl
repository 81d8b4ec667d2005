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
{{/* What the operator itself uses, in every watched namespace (a ClusterRole when it
watches all): exact verbs, one comment per rule (kopf's deployment-rbac.yaml). Checked by
tests/integration/test_operator_rbac.py against the API server's audit log of a real run. */}}
{{- define "goodput.rules" -}}
# kopf lists and watches the policies (one control loop each). patch: kopf removes the
# finalizer that versions with a kopf daemon put on policies. The loop writes status
# through the /status subresource.
- apiGroups: ["goodput.dev"]
  resources: ["goodputpolicies"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["goodput.dev"]
  resources: ["goodputpolicies/status"]
  verbs: ["patch"]
# Explain every decision as an Event (kopf posts core/v1 Events).
- apiGroups: [""]
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
# Count the pods that hold GPUs (terminating ones too) before growing a pool. patch:
# before a Deployment shrinks, mark its least busy pods with the
# controller.kubernetes.io/pod-deletion-cost annotation so its ReplicaSet removes them
# first (drain-aware scale-down; `goodput run --no-drain` turns it off).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "patch"]
# traffic split between model variants (issue 13)
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "patch"]
# Refuse to fight another autoscaler on the same target.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list"]
# Prometheus bearer token and CA named by a policy's metrics.auth (by name, never listed).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

{{/* kopf's own needs. Peering: every replica patches its keep-alive into the peering
object and lists/watches it for the others' (ClusterKopfPeering when cluster-wide,
KopfPeering in each namespace otherwise); the policy loops and `goodput run` get it by
name to see whether this replica acts (goodput.operator.peering). Scanning: kopf lists and watches CRDs so a
CRD installed after the operator started (or re-installed) is noticed without a restart;
a namespaced kopf also lists and watches namespaces (a watched namespace created later
is picked up). */}}
{{- define "goodput.peeringRules" -}}
{{- if .Values.watchNamespaces }}
# kopf peering: keep-alives of every replica in this namespace's KopfPeering (get and
# patch only the chart's object; kopf lists and watches without a name).
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  resourceNames: [{{ .Values.peering.name | quote }}]
  verbs: ["get", "patch"]
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch"]
{{- else }}
# kopf peering: keep-alives of every replica in the ClusterKopfPeering (get and patch
# only the chart's object; kopf lists and watches without a name).
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  resourceNames: [{{ .Values.peering.name | quote }}]
  verbs: ["get", "patch"]
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}

{{- define "goodput.scanningRules" -}}
# kopf's resource scanning: notice CRDs (ours, kopf's peering) added or changed later.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
# A namespaced kopf lists and watches namespaces to follow the watched ones.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}

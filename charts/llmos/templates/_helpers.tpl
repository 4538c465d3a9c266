{{- define "llmos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llmos.serviceAccountName" -}}
{{- default (include "llmos.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "llmos.labels" -}}
app.kubernetes.io/name: llmos-operator
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/part-of: llmos
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{- define "llmos.selector" -}}
app.kubernetes.io/name: llmos-operator
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/* The operator's permissions, shared by the ClusterRole and the per-namespace Roles. */}}
{{- define "llmos.rules" -}}
- apiGroups: [llmos.dev]
  resources: [languagemodels, trainingjobs, modelendpoints]
  verbs: [get, list, watch]
- apiGroups: [llmos.dev]
  resources: [languagemodels/status, trainingjobs/status, modelendpoints/status]
  verbs: [get, patch, update]
# Children name their owner with blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement
# admission plugin allows only to who may update the owner's finalizers.
- apiGroups: [llmos.dev]
  resources: [languagemodels/finalizers, trainingjobs/finalizers, modelendpoints/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods, persistentvolumeclaims]
  verbs: [get, list, watch]
# An endpoint's API-key Secret is checked to exist (its keys are mounted, never read).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

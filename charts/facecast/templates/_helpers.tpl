{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "facecast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "facecast.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "facecast.operatorName" -}}{{ include "facecast.fullname" . }}-operator{{- end -}}
{{- define "facecast.apiName" -}}{{ include "facecast.fullname" . }}-api{{- end -}}

{{/* Cluster-scoped objects are shared by every install: the namespace keeps them apart. */}}
{{- define "facecast.clusterName" -}}
{{- printf "%s-%s-operator" .Release.Namespace (include "facecast.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "facecast.peeringName" -}}
{{- default (include "facecast.fullname" .) .Values.operator.peering.name -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------- */}}

{{- define "facecast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "facecast.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Chart objects are managed by Helm; the operator labels its worker pods managed-by=facecast. */}}
{{- define "facecast.labels" -}}
{{ include "facecast.selectorLabels" . }}
app.kubernetes.io/part-of: facecast
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Worker pods, as the operator labels them (avatar_crds.contract). */}}
{{- define "facecast.workerSelector" -}}
app.kubernetes.io/managed-by: facecast
app.kubernetes.io/component: worker
{{- end -}}

{{/* Served tiers ----------------------------------------------------------------------- */}}

{{/* The quality tiers this install serves, comma-separated: mock and lite, plus standard and
pro where workers mount the model weights (worker.modelVolumeClaim); api.servedQualities
narrows that, and cannot add a tier without weights. The API is told them, and each gets a
WorkerPool: one definition for both. */}}
{{- define "facecast.servedQualities" -}}
{{- $served := list "mock" "lite" -}}
{{- if .Values.worker.modelVolumeClaim -}}
{{- $served = concat $served (list "standard" "pro") -}}
{{- end -}}
{{- with .Values.api.servedQualities -}}
{{- range . -}}
{{- if not (has . $served) -}}
{{- fail (printf "api.servedQualities: %s needs the model weights (worker.modelVolumeClaim)" .) -}}
{{- end -}}
{{- end -}}
{{- $served = . -}}
{{- end -}}
{{- join "," $served -}}
{{- end -}}

{{/* Images ----------------------------------------------------------------------------- */}}

{{/* "repo@sha256:..." when a digest is given, else "repo:tag" (tag defaults to appVersion). */}}
{{- define "facecast.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Restricted Pod Security ------------------------------------------------------------ */}}

{{/* The images run as this user (see the Dockerfiles); the worker's is fixed by the operator. */}}
{{- define "facecast.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "facecast.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Node network (`hostNetwork`, `kubernetesApi`) ------------------------------------ */}}

{{/* A pod spec's networking: its own, or its node's. */}}
{{- define "facecast.podNetwork" -}}
enableServiceLinks: false
{{- if .Values.hostNetwork }}
hostNetwork: true
{{- end }}
{{- end -}}

{{/* Env items pointing a container's in-cluster client at `kubernetesApi` instead of the
`kubernetes` Service; they override what the kubelet sets from that Service. */}}
{{- define "facecast.kubernetesApiEnv" -}}
{{- with .Values.kubernetesApi.host }}
- {name: KUBERNETES_SERVICE_HOST, value: {{ . | quote }}}
- {name: KUBERNETES_SERVICE_PORT, value: {{ $.Values.kubernetesApi.port | int | toString | quote }}}
{{- end }}
{{- end -}}

{{/* Network policy pieces -------------------------------------------------------------- */}}

{{- define "facecast.ipBlocks" -}}
{{- $out := list -}}
{{- range . -}}
{{- $block := dict "cidr" .cidr -}}
{{- if .except }}{{ $_ := set $block "except" .except }}{{ end -}}
{{- $out = append $out (dict "ipBlock" $block) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "facecast.egressDns" -}}
- to:
    - namespaceSelector:
        {{- toYaml .dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .dns.podSelector | nindent 8 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{- define "facecast.egressApiServer" -}}
- to:
    {{- include "facecast.ipBlocks" .apiServer.cidrs | nindent 4 }}
  ports:
    {{- range .apiServer.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}

{{/* The worker's requests and limits, quantities as strings, for each WorkerPool's worker. */}}
{{- define "facecast.workerResourcesJson" -}}
{{- $out := dict -}}
{{- range $kind, $values := .Values.worker.resources -}}
{{- $q := dict -}}
{{- range $name, $quantity := $values -}}
{{- $_ := set $q $name (toString $quantity) -}}
{{- end -}}
{{- $_ := set $out $kind $q -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

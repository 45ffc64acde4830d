{{/* vim: set filetype=mustache: */}}
{{/*
Names of the project's own objects. The two subcharts use fixed names inside the
release's namespace (`hub`, `proxy-public`, `traefik-dask-gateway`, ...) because
jupyterhub.fullnameOverride is "" and dask-gateway.fullnameOverride is
"dask-gateway": one project = one release = one namespace. The team storage PVC
and the catalog ConfigMap are referenced by name from `jupyterhub.singleuser`, so
their names come from values (`teamStorage.claimName`, `catalog.configMapName`)
and the same values are used there.
*/}}

{{- define "esdl-project.name" -}}
{{- .Values.project.name | default .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "esdl-project.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of this chart. */}}
{{- define "esdl-project.labels" -}}
app.kubernetes.io/name: esdl-project
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: esdl
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "esdl-project.chart" . }}
esdl.io/project: {{ include "esdl-project.name" . }}
{{- end -}}

{{/* Name of an object: <prefix>-<suffix>, where the prefix is `esdl`. */}}
{{- define "esdl-project.objectName" -}}
{{- printf "esdl-%s" . | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Pod selector of the dask-gateway chart's pods (api, controller, traefik) and the
     scheduler/worker pods its controller creates: all carry this label. */}}
{{- define "esdl-project.daskGatewayPods" -}}
app.kubernetes.io/name: dask-gateway
{{- end -}}

{{/* Egress to the cluster DNS (kube-system, port 53). */}}
{{- define "esdl-project.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/* Egress to object storage: public IPs (if allowed) and the listed CIDRs, on the listed ports. */}}
{{- define "esdl-project.objectStorageEgress" -}}
{{- $os := .Values.networkPolicy.objectStorage -}}
{{- if or $os.allowPublic $os.cidrs -}}
- to:
    {{- if $os.allowPublic }}
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          - 10.0.0.0/8
          - 172.16.0.0/12
          - 192.168.0.0/16
          - 169.254.0.0/16
    {{- end }}
    {{- range $os.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- with $os.ports }}
  ports:
    {{- range . }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

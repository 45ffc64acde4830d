{{/* vim: set filetype=mustache: */}}
{{/*
Names of the project's own objects. The jupyterhub subchart uses fixed names inside the
release's namespace (`hub`, `proxy-public`, ...: jupyterhub.fullnameOverride is ""), the
dask-gateway subchart its default `<release>-dask-gateway` (`traefik-<release>-dask-gateway`,
ClusterRoles, the `gateway.dask.org/instance` label): one project = one release = one namespace. The team storage PVC
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

{{/* The dask-gateway subchart's fullname in this release (its default; platform_lib.plan.gateway_fullname). */}}
{{- define "esdl-project.daskGatewayName" -}}
{{- if contains "dask-gateway" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-dask-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Pod selector of this release's dask-gateway pods (api, controller, traefik) and the
     scheduler/worker pods its controller creates: all carry both labels. */}}
{{- define "esdl-project.daskGatewayPods" -}}
app.kubernetes.io/name: dask-gateway
gateway.dask.org/instance: {{ include "esdl-project.daskGatewayName" . }}
{{- end -}}

{{/* Egress to DNS on port 53, where clusters serve it (as z2jh's dnsPorts* rules): kube-system, private
     ranges (a DNS service outside kube-system), NodeLocal DNSCache's link-local address, and the cloud
     metadata server's address (some clouds serve DNS there; only port 53 is allowed to it). */}}
{{- define "esdl-project.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
    - ipBlock:
        cidr: 10.0.0.0/8
    - ipBlock:
        cidr: 172.16.0.0/12
    - ipBlock:
        cidr: 192.168.0.0/16
    - ipBlock:
        cidr: 169.254.20.10/32
    - ipBlock:
        cidr: 169.254.169.254/32
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

{{/*
Names and labels, as `helm create` makes them.
*/}}
{{- define "shardgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shardgate.fullname" -}}
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

{{- define "shardgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shardgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shardgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shardgate.labels" -}}
helm.sh/chart: {{ include "shardgate.chart" . }}
{{ include "shardgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "shardgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shardgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the pod reads its bootstrap file. */}}
{{- define "shardgate.configPath" -}}/etc/shardgate/shardgate.yaml{{- end }}

{{/* The Secret holding the admin key, and the key in it. */}}
{{- define "shardgate.adminSecretName" -}}
{{- default (printf "%s-admin" (include "shardgate.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{/*
The port a listener entry binds: `addr` is a port (8888), "ip:port" or
"[v6]:port"; the long form is a map with `addr`.
*/}}
{{- define "shardgate.listenerPort" -}}
{{- $addr := . -}}
{{- if kindIs "map" . }}{{ $addr = .addr }}{{ end -}}
{{- $s := toString $addr -}}
{{- if contains ":" $s }}{{ last (splitList ":" $s) }}{{ else }}{{ $s }}{{ end -}}
{{- end }}

{{/* Every listener as {name, port, servicePort, protocol}, as JSON (for Service and container ports). */}}
{{- define "shardgate.listeners" -}}
{{- $out := list -}}
{{- range .Values.stream.tcp -}}
{{- $port := include "shardgate.listenerPort" . | int -}}
{{- $sp := $port -}}
{{- if and (kindIs "map" .) .servicePort }}{{ $sp = int .servicePort }}{{ end -}}
{{- $out = append $out (dict "name" (printf "tcp-%d" $port) "port" $port "servicePort" $sp "protocol" "TCP") -}}
{{- end -}}
{{- range .Values.stream.udp -}}
{{- $port := include "shardgate.listenerPort" . | int -}}
{{- $sp := $port -}}
{{- if and (kindIs "map" .) .servicePort }}{{ $sp = int .servicePort }}{{ end -}}
{{- $out = append $out (dict "name" (printf "udp-%d" $port) "port" $port "servicePort" $sp "protocol" "UDP") -}}
{{- end -}}
{{- range .Values.edge.http -}}
{{- $port := include "shardgate.listenerPort" . | int -}}
{{- $sp := $port -}}
{{- if and (kindIs "map" .) .servicePort }}{{ $sp = int .servicePort }}{{ end -}}
{{- $out = append $out (dict "name" (printf "http-%d" $port) "port" $port "servicePort" $sp "protocol" "TCP") -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/* A listener entry without the chart's own keys (servicePort). */}}
{{- define "shardgate.stripListeners" -}}
{{- $out := list -}}
{{- range . -}}
{{- if kindIs "map" . }}{{ $out = append $out (omit . "servicePort") }}{{ else }}{{ $out = append $out . }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/* etcd endpoints as URLs (http:// when the value has no scheme, as the seed's "apisix-etcd:2379"). */}}
{{- define "shardgate.etcdEndpoints" -}}
{{- $out := list -}}
{{- range .Values.etcd.endpoints -}}
{{- if regexMatch "^[a-zA-Z][a-zA-Z0-9+.-]*://" . }}{{ $out = append $out . }}{{ else }}{{ $out = append $out (printf "http://%s" .) }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/* drain.delay + drain.timeout + 5 s (the gateway's grace after the deadline). */}}
{{- define "shardgate.drainSeconds" -}}
{{- add (int .Values.drain.delaySeconds) (int .Values.drain.timeoutSeconds) 5 -}}
{{- end }}

{{- define "shardgate.terminationGracePeriodSeconds" -}}
{{- $need := include "shardgate.drainSeconds" . | int -}}
{{- if eq (toString .Values.terminationGracePeriodSeconds) "" -}}
{{- add $need 10 -}}
{{- else -}}
{{- $set := int .Values.terminationGracePeriodSeconds -}}
{{- if le $set $need -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed drain.delaySeconds + drain.timeoutSeconds + 5 (%d): the kubelet would kill the gateway before its drain ends" $set $need) -}}
{{- end -}}
{{- $set -}}
{{- end -}}
{{- end }}

{{/*
Keys of the bootstrap file the chart writes from its own values, each with
the value to set instead. Given under `config` they would win over the
chart's (mergeOverwrite) while the grace period, the preStop hook, probes,
ports, volumes and Services still follow the chart's value: refused.
*/}}
{{- define "shardgate.refuseOwnedConfig" -}}
{{- $owned := dict
  "stream.only" "stream.only"
  "stream.tcp" "stream.tcp"
  "stream.udp" "stream.udp"
  "edge.http" "edge.http"
  "admin.listen" "admin.port"
  "admin.cors" "admin.cors"
  "metrics.listen" "metrics.port"
  "store.data_dir" "persistence.* (the chart mounts the data volume at /data)"
  "store.backend" "etcd.endpoints (etcd when set, else the embedded store)"
  "store.prefix" "etcd.prefix"
  "store.etcd.host" "etcd.endpoints"
  "store.etcd.timeout" "etcd.timeout"
  "store.etcd.user" "etcd.user and etcd.existingSecret"
  "store.etcd.tls.ca" "etcd.tls.existingSecret"
  "store.etcd.tls.cert" "etcd.tls.existingSecret and etcd.tls.clientCertificate"
  "store.etcd.tls.key" "etcd.tls.existingSecret and etcd.tls.clientCertificate"
  "drain.delay" "drain.delaySeconds"
  "drain.timeout" "drain.timeoutSeconds"
  "data_encryption.keyring" "dataEncryption.keyring"
  "dashboard.users" "dashboard.users"
-}}
{{- range $path, $use := $owned -}}
{{- $node := $.Values.config -}}
{{- $found := true -}}
{{- range splitList "." $path -}}
{{- if and $found (kindIs "map" $node) (hasKey $node .) -}}
{{- $node = index $node . -}}
{{- else -}}
{{- $found = false -}}
{{- end -}}
{{- end -}}
{{- if $found -}}
{{- fail (printf "config.%s: the chart writes this key from %s; set that instead (under config it would win over the chart's value while the manifests still follow that value)" $path $use) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The bootstrap file: what the chart decides (listeners, addresses inside the
pod, store, drain), under what `config` adds (never a key the chart decides:
see shardgate.refuseOwnedConfig).
*/}}
{{- define "shardgate.config" -}}
{{- include "shardgate.refuseOwnedConfig" . -}}
{{- $v := .Values -}}
{{- $stream := dict "only" $v.stream.only "tcp" (include "shardgate.stripListeners" $v.stream.tcp | fromJsonArray) "udp" (include "shardgate.stripListeners" $v.stream.udp | fromJsonArray) -}}
{{- $store := dict "data_dir" "/data" "prefix" $v.etcd.prefix -}}
{{- if $v.etcd.endpoints -}}
{{- $etcd := dict "host" (include "shardgate.etcdEndpoints" . | fromJsonArray) "timeout" (printf "%ds" (int $v.etcd.timeout)) -}}
{{- if $v.etcd.user }}{{ $_ := set $etcd "user" $v.etcd.user }}{{ end -}}
{{- if $v.etcd.tls.existingSecret -}}
{{- $tls := dict "ca" "/etc/shardgate-etcd-tls/ca.crt" -}}
{{- if $v.etcd.tls.clientCertificate -}}
{{- $_ := set $tls "cert" "/etc/shardgate-etcd-tls/tls.crt" -}}
{{- $_ := set $tls "key" "/etc/shardgate-etcd-tls/tls.key" -}}
{{- end -}}
{{- $_ := set $etcd "tls" $tls -}}
{{- end -}}
{{- $_ := set $store "backend" "etcd" -}}
{{- $_ := set $store "etcd" $etcd -}}
{{- else -}}
{{- $_ := set $store "backend" "embedded" -}}
{{- end -}}
{{- $c := dict
  "stream" $stream
  "edge" (dict "http" (include "shardgate.stripListeners" $v.edge.http | fromJsonArray))
  "admin" (dict "listen" (printf "0.0.0.0:%d" (int $v.admin.port)) "cors" $v.admin.cors)
  "metrics" (dict "listen" (printf "0.0.0.0:%d" (int $v.metrics.port)))
  "store" $store
  "drain" (dict "delay" (printf "%ds" (int $v.drain.delaySeconds)) "timeout" (printf "%ds" (int $v.drain.timeoutSeconds)))
-}}
{{- if $v.dataEncryption.keyring -}}
{{- $_ := set $c "data_encryption" (dict "keyring" $v.dataEncryption.keyring) -}}
{{- end -}}
{{- $dashboard := dict -}}
{{- if $v.dashboard.users -}}
{{- $_ := set $dashboard "users" $v.dashboard.users -}}
{{- end -}}
{{- /* Reached over HTTPS through the Ingress: the session cookie is Secure. */ -}}
{{- if and $v.admin.ingress.enabled $v.admin.ingress.tls -}}
{{- $_ := set $dashboard "secure_cookie" true -}}
{{- end -}}
{{- if $dashboard -}}
{{- $_ := set $c "dashboard" $dashboard -}}
{{- end -}}
{{- toYaml (mergeOverwrite $c (deepCopy $v.config)) -}}
{{- end }}

{{/*
Names, labels and the agent's configuration file. Paths inside the pod are fixed here, so the
rendered config.yaml, the volume mounts and the probes agree.
*/}}

{{- define "kafka-autopilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kafka-autopilot.fullname" -}}
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

{{/* Name of cluster-scoped objects: unique per release namespace too. */}}
{{- define "kafka-autopilot.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "kafka-autopilot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kafka-autopilot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kafka-autopilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-autopilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kafka-autopilot.labels" -}}
helm.sh/chart: {{ include "kafka-autopilot.chart" . }}
{{ include "kafka-autopilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kafka-autopilot
autopilot.kafka.io/region: {{ .Values.config.region | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kafka-autopilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kafka-autopilot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kafka-autopilot.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Paths inside the pod. */}}
{{- define "kafka-autopilot.configDir" -}}/etc/kafka-autopilot/config{{- end }}
{{- define "kafka-autopilot.policyDir" -}}/etc/kafka-autopilot/policies{{- end }}
{{- define "kafka-autopilot.secretsDir" -}}/etc/kafka-autopilot/secrets{{- end }}
{{- define "kafka-autopilot.stateDir" -}}/var/lib/kafka-autopilot{{- end }}
{{- define "kafka-autopilot.auditDir" -}}/var/log/kafka-autopilot{{- end }}
{{- define "kafka-autopilot.backupDir" -}}/var/lib/kafka-autopilot-backups{{- end }}

{{/* "https" when the agent serves TLS, else "http" (also the Service's port name). */}}
{{- define "kafka-autopilot.scheme" -}}
{{- if .Values.api.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The clusters with backend `real`: the only ones the agent reaches Kubernetes and Kafka for. */}}
{{- define "kafka-autopilot.realClusters" -}}
{{- $out := list }}
{{- range .Values.config.clusters }}
{{- if eq .backend "real" }}
{{- $out = append $out . }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Namespaces whose Strimzi resources the agent reads and changes: rbac.namespaces, or else the
namespaces of the real clusters. Every real cluster's namespace must be in an explicit list.
*/}}
{{- define "kafka-autopilot.watchNamespaces" -}}
{{- $clusters := include "kafka-autopilot.realClusters" . | fromJsonArray }}
{{- $fromClusters := list }}
{{- range $clusters }}
{{- $fromClusters = append $fromClusters .namespace }}
{{- end }}
{{- $out := $fromClusters | uniq | sortAlpha }}
{{- if .Values.rbac.namespaces }}
{{- range $fromClusters }}
{{- if not (has . $.Values.rbac.namespaces) }}
{{- fail (printf "rbac.namespaces lists %v but a cluster with backend real is in namespace %q: add it" $.Values.rbac.namespaces .) }}
{{- end }}
{{- end }}
{{- $out = .Values.rbac.namespaces | uniq | sortAlpha }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The Lease's name: the agent's default is kafka-autopilot-<region>. */}}
{{- define "kafka-autopilot.leaseName" -}}
{{- default (printf "kafka-autopilot-%s" .Values.config.region) .Values.leaderElection.lease }}
{{- end }}

{{/*
The agent's config.yaml: .Values.config plus what the chart decides (the API's address and key
files, the policy directory, the journal, the audit log, leader election, backups). Keys the
agent defaults are left out rather than repeated, so the agent's defaults apply.
*/}}
{{- define "kafka-autopilot.config" -}}
{{- $v := .Values }}
{{- $c := deepCopy $v.config }}
{{- if and (hasKey $c "alertmanager") (empty $c.alertmanager) }}
{{- $_ := unset $c "alertmanager" }}
{{- end }}
{{- if and (hasKey $c "notifications") (empty $c.notifications) }}
{{- $_ := unset $c "notifications" }}
{{- end }}
{{- /* Helm drops keys set to null, so `false` stands for the agent's null: no throttle. */}}
{{- if and $c.limits (hasKey $c.limits "replication_throttle") (kindIs "bool" $c.limits.replication_throttle) }}
{{- $_ := set $c.limits "replication_throttle" nil }}
{{- end }}
{{- /* The policies ConfigMap is mounted beside the config directory. */}}
{{- $policy := deepCopy (default (dict) $c.policy) }}
{{- $_ := set $policy "dir" "../policies" }}
{{- $_ := set $c "policy" $policy }}
{{- $secrets := include "kafka-autopilot.secretsDir" . }}
{{- $api := dict "listen" (printf "%s:%d" $v.api.listenAddress (int $v.api.port)) }}
{{- $auth := dict }}
{{- if $v.api.auth.jwt.enabled }}
{{- $jwt := dict "algorithm" $v.api.auth.jwt.algorithm "key_file" (printf "%s/jwt/%s" $secrets $v.api.auth.jwt.secretKey) }}
{{- with $v.api.auth.jwt.issuer }}{{ $_ := set $jwt "issuer" . }}{{ end }}
{{- with $v.api.auth.jwt.audience }}{{ $_ := set $jwt "audience" . }}{{ end }}
{{- with $v.api.auth.jwt.rolesClaim }}{{ $_ := set $jwt "roles_claim" . }}{{ end }}
{{- $_ := set $auth "jwt" $jwt }}
{{- end }}
{{- if $v.api.auth.webhookToken.enabled }}
{{- $_ := set $auth "webhook_token_file" (printf "%s/webhook-token/%s" $secrets $v.api.auth.webhookToken.secretKey) }}
{{- end }}
{{- if $auth }}
{{- $_ := set $api "auth" $auth }}
{{- end }}
{{- if $v.api.tls.enabled }}
{{- $tls := dict "cert_file" (printf "%s/tls/%s" $secrets $v.api.tls.certKey) "key_file" (printf "%s/tls/%s" $secrets $v.api.tls.keyKey) }}
{{- if $v.api.tls.clientCA.enabled }}
{{- $_ := set $tls "client_ca_file" (printf "%s/client-ca/%s" $secrets $v.api.tls.clientCA.secretKey) }}
{{- end }}
{{- $_ := set $api "tls" $tls }}
{{- end }}
{{- if $v.api.rateLimit.enabled }}
{{- $_ := set $api "rate_limit" (dict "per_second" (int $v.api.rateLimit.perSecond) "burst" (int $v.api.rateLimit.burst)) }}
{{- end }}
{{- $_ := set $c "api" $api }}
{{- if eq $v.journal.type "kubernetes" }}
{{- $_ := set $c "kubernetes_journal" (dict "namespace" .Release.Namespace) }}
{{- else }}
{{- $_ := set $c "journal_path" (printf "%s/journal.json" (include "kafka-autopilot.stateDir" .)) }}
{{- end }}
{{- if $v.auditLog.enabled }}
{{- $_ := set $c "audit_log" (printf "%s/audit.jsonl" (include "kafka-autopilot.auditDir" .)) }}
{{- end }}
{{- if $v.leaderElection.enabled }}
{{- $le := dict "namespace" .Release.Namespace "duration" $v.leaderElection.duration }}
{{- with $v.leaderElection.lease }}{{ $_ := set $le "lease" . }}{{ end }}
{{- $_ := set $c "leader_election" $le }}
{{- end }}
{{- if $v.backups.enabled }}
{{- $b := dict "dir" (include "kafka-autopilot.backupDir" .) }}
{{- with $v.backups.concurrency }}{{ $_ := set $b "concurrency" (int .) }}{{ end }}
{{- with $v.backups.idleTimeout }}{{ $_ := set $b "idle_timeout" . }}{{ end }}
{{- $_ := set $c "backups" $b }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/* Checks across values that the schema cannot express. */}}
{{- define "kafka-autopilot.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled: only the Lease holder may act" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (ne .Values.journal.type "kubernetes") }}
{{- fail "replicas > 1 needs journal.type kubernetes: a new leader must find the operations the old one journaled" }}
{{- end }}
{{- if and .Values.api.auth.jwt.enabled (not .Values.api.auth.jwt.secretName) }}
{{- fail "api.auth.jwt.secretName: name the Secret holding the JWT key" }}
{{- end }}
{{- if and .Values.api.auth.webhookToken.enabled (not .Values.api.auth.webhookToken.secretName) }}
{{- fail "api.auth.webhookToken.secretName: name the Secret holding the Alertmanager webhook token" }}
{{- end }}
{{- if and .Values.api.tls.enabled (not .Values.api.tls.secretName) }}
{{- fail "api.tls.secretName: name the Secret (kubernetes.io/tls) holding the API's certificate and key" }}
{{- end }}
{{- if and .Values.api.tls.clientCA.enabled (not .Values.api.tls.enabled) }}
{{- fail "api.tls.clientCA (mutual TLS) needs api.tls.enabled" }}
{{- end }}
{{- if and .Values.api.tls.clientCA.enabled (not .Values.api.tls.clientCA.secretName) }}
{{- fail "api.tls.clientCA.secretName: name the Secret holding the client CA certificate" }}
{{- end }}
{{- if and .Values.backups.enabled (not .Values.backups.existingClaim) }}
{{- fail "backups.existingClaim: name the PersistentVolumeClaim the backups are written to" }}
{{- end }}
{{- end }}

{{/* The TCP port of an http(s) URL: its explicit port, else 80 or 443. */}}
{{- define "kafka-autopilot.urlPort" -}}
{{- $u := urlParse . }}
{{- $p := regexFind ":[0-9]+$" $u.host | trimPrefix ":" }}
{{- if $p }}{{ $p }}{{ else if eq $u.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}

{{/* Names and labels. */}}
{{- define "medai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "medai.fullname" -}}
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

{{/* Labels of every object; call with (dict "ctx" $ "component" "web"). */}}
{{- define "medai.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "medai.selectorLabels" . }}
{{- end }}

{{- define "medai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "medai.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "medai.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "medai.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "medai.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "medai.secretName" -}}
{{- default (include "medai.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Triton's address as the platform dials it. */}}
{{- define "medai.tritonUrl" -}}
{{- if .Values.triton.enabled }}
{{- printf "%s-triton:%d" (include "medai.fullname" .) (ternary 8001 8000 (eq .Values.triton.protocol "grpc") | int) }}
{{- else }}
{{- required "triton.url is required when triton.enabled is false" .Values.triton.url }}
{{- end }}
{{- end }}

{{/* The Ingress body limit: the app's STOW limit plus 16 MiB, so the app's own 413 answers first. */}}
{{- define "medai.maxBodySize" -}}
{{- printf "%dm" (add (div (int64 .Values.config.dicomweb.maxStowBytes) 1048576) 17) }}
{{- end }}

{{/* A password for a URL's userinfo: urlquery writes a space as "+", which a URL would keep. */}}
{{- define "medai.urlPassword" -}}
{{- . | urlquery | replace "+" "%20" }}
{{- end }}

{{/* Non-secret settings (the ConfigMap, and the migration hook's copy of it); extraEnv adds or overrides. */}}
{{- define "medai.configData" -}}
{{- $fullname := include "medai.fullname" . -}}
{{- $hosts := list "localhost" (printf "%s-web" $fullname) (printf "%s-web.%s.svc" $fullname .Release.Namespace) -}}
{{- if .Values.ingress.enabled }}{{ $hosts = concat $hosts .Values.ingress.hosts }}{{ end -}}
{{- $hosts = concat $hosts .Values.config.allowedHosts | uniq -}}
{{- $dicomweb := .Values.config.dicomweb -}}
{{- $data := dict
  "DJANGO_DEBUG" "false"
  "DJANGO_ALLOWED_HOSTS" (join "," $hosts)
  "MEDAI_HOME" "/var/lib/medai"
  "LOG_LEVEL" .Values.config.logLevel
  "DATABASE_CONN_MAX_AGE" .Values.config.databaseConnMaxAge
  "S3_ENDPOINT_URL" .Values.objectStorage.endpoint
  "S3_BUCKET" .Values.objectStorage.bucket
  "S3_REGION" .Values.objectStorage.region
  "TRITON_URL" (include "medai.tritonUrl" .)
  "TRITON_PROTOCOL" .Values.triton.protocol
  "KEYCLOAK_URL" .Values.keycloak.url
  "KEYCLOAK_REALM" .Values.keycloak.realm
  "KEYCLOAK_CLIENT_ID" .Values.keycloak.clientId
  "DICOMWEB_MAX_STOW_BYTES" ($dicomweb.maxStowBytes | int64)
  "DICOMWEB_MAX_CONCURRENT_STOW" $dicomweb.maxConcurrentStow
  "DICOMWEB_RETRY_AFTER_SECONDS" $dicomweb.retryAfterSeconds
  "DICOMWEB_SPOOL_MEMORY_BYTES" ($dicomweb.spoolMemoryBytes | int64)
  "DICOMWEB_QIDO_MAX_LIMIT" $dicomweb.qidoMaxLimit
  "STUDY_QUIET_SECONDS" .Values.config.studyQuietSeconds
-}}
{{- range $name, $value := merge (deepCopy .Values.config.extraEnv) $data }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The Django secret key: the values', else the one already in the cluster, else a new one. */}}
{{- define "medai.djangoSecretKey" -}}
{{- if .Values.secrets.djangoSecretKey }}
{{- .Values.secrets.djangoSecretKey }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "medai.fullname" .) }}
{{- if and $existing (index ($existing.data | default dict) "DJANGO_SECRET_KEY") }}
{{- index $existing.data "DJANGO_SECRET_KEY" | b64dec }}
{{- else }}
{{- randAlphaNum 64 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Credentials (the Secret, and the migration hook's copy of it), base64-encoded. */}}
{{- define "medai.secretData" -}}
{{- $pg := .Values.postgresql -}}
{{- $redis := .Values.redis -}}
{{- $redisAuth := ternary (printf ":%s@" (include "medai.urlPassword" $redis.password)) "" (ne $redis.password "") -}}
DJANGO_SECRET_KEY: {{ include "medai.djangoSecretKey" . | b64enc | quote }}
DATABASE_URL: {{ printf "postgresql://%s:%s@%s:%d/%s?sslmode=%s&connect_timeout=%d" ($pg.username | urlquery) (include "medai.urlPassword" $pg.password) $pg.host ($pg.port | int) $pg.database $pg.sslmode ($pg.connectTimeout | int) | b64enc | quote }}
CELERY_BROKER_URL: {{ printf "%s://%s%s:%d/%d%s" (ternary "rediss" "redis" $redis.tls) $redisAuth $redis.host ($redis.port | int) ($redis.db | int) (ternary "?ssl_cert_reqs=required" "" $redis.tls) | b64enc | quote }}
S3_ACCESS_KEY: {{ .Values.objectStorage.accessKey | b64enc | quote }}
S3_SECRET_KEY: {{ .Values.objectStorage.secretKey | b64enc | quote }}
KEYCLOAK_CLIENT_SECRET: {{ .Values.keycloak.clientSecret | b64enc | quote }}
{{- end }}

{{/* Pod-level security: never root. $sc is securityContext values with runAsUser/runAsGroup/fsGroup. */}}
{{- define "medai.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "medai.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Settings and credentials for the platform's containers. */}}
{{- define "medai.envFrom" -}}
- configMapRef:
    name: {{ include "medai.fullname" . }}
- secretRef:
    name: {{ include "medai.secretName" . }}
{{- end }}

{{/* Restart pods when their settings change. */}}
{{- define "medai.configChecksums" -}}
checksum/config: {{ include "medai.configData" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include "medai.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{/* The writable paths of a platform container under a read-only root filesystem. */}}
{{- define "medai.writableMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /var/lib/medai
{{- end }}

{{- define "medai.writableVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSize | default "1Gi" }}
- name: home
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{/* Scheduling: pass the component's values. */}}
{{- define "medai.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Spread a component's pods over nodes and zones where the cluster allows. */}}
{{- define "medai.topologySpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "medai.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "medai.selectorLabels" . | nindent 8 }}
{{- end }}

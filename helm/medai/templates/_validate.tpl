{{/* Rules across values that values.schema.json cannot state. */}}
{{- define "medai.validate" -}}
{{- $web := .Values.web }}
{{- if le (int $web.terminationGracePeriodSeconds) (add $web.preStopSeconds $web.gracefulTimeout | int) }}
{{- fail (printf "web.terminationGracePeriodSeconds (%v) must exceed web.preStopSeconds + web.gracefulTimeout (%v): gunicorn would be killed mid-request" $web.terminationGracePeriodSeconds (add $web.preStopSeconds $web.gracefulTimeout)) }}
{{- end }}
{{- if and $web.autoscaling.enabled (gt (int $web.autoscaling.minReplicas) (int $web.autoscaling.maxReplicas)) }}
{{- fail "web.autoscaling.minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- range $name, $worker := .Values.workers }}
{{- if and $worker.autoscaling.enabled (gt (int $worker.autoscaling.minReplicas) (int $worker.autoscaling.maxReplicas)) }}
{{- fail (printf "workers.%s.autoscaling.minReplicas must not exceed maxReplicas" $name) }}
{{- end }}
{{- end }}
{{- end }}

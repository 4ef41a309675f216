output "iot_endpoint" {
  description = "MQTT endpoint LocalStack reports for IoT (LocalStack Pro, enable_iot = true), else null."
  value       = module.vigil.iot_endpoint
}

output "ingest_queue_url" {
  description = "SQS ingest queue (ingest_mode = sqs): where telemetry goes without IoT (docs/deploy.md, LocalStack)."
  value       = module.vigil.ingest_queue_url
}

output "ingest_stream_name" {
  description = "Kinesis ingest stream (ingest_mode = kinesis), else null."
  value       = module.vigil.ingest_stream_name
}

output "baselines_url" {
  description = "Where `vigil calibrate --to` publishes calibrated baselines for the function."
  value       = module.vigil.baselines_url
}

output "device_setup" {
  description = "Device set-up commands (enable_iot = true only)."
  value       = module.vigil.device_setup
}

output "device_topics" {
  description = "Topics of each device."
  value       = module.vigil.device_topics
}

output "function_name" {
  description = "Ingest Lambda function."
  value       = module.vigil.function_name
}

output "table_name" {
  description = "DynamoDB state table."
  value       = module.vigil.table_name
}

output "rejects_queue_url" {
  description = "SQS queue of rejected messages."
  value       = module.vigil.rejects_queue_url
}

output "failures_queue_url" {
  description = "SQS queue of failed deliveries and invocations."
  value       = module.vigil.failures_queue_url
}

output "archive_bucket" {
  description = "S3 bucket of archived windows."
  value       = module.vigil.archive_bucket
}

output "iot_endpoint" {
  description = "MQTT endpoint LocalStack reports for IoT (LocalStack Pro)."
  value       = module.vigil.iot_endpoint
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

output "iot_data_endpoint" {
  description = "Host name of the account's IoT data endpoint (iot:Data-ATS): devices connect to it on port 8883. null without IoT (enable_iot = false)."
  value       = local.iot_endpoint_address
}

output "iot_enabled" {
  description = "Whether the IoT topic rule exists (enable_iot)."
  value       = var.enable_iot
}

output "topic_rule_name" {
  description = "Name of the telemetry topic rule (also the <rule> of the Basic Ingest topic $aws/rules/<rule>/dt/vigil/<thing>/telemetry); null without IoT."
  value       = one(aws_iot_topic_rule.ingest[*].name)
}

output "topic_rule_arn" {
  description = "ARN of the telemetry topic rule; null without IoT."
  value       = one(aws_iot_topic_rule.ingest[*].arn)
}

output "function_name" {
  description = "Name of the ingest Lambda function."
  value       = aws_lambda_function.ingest.function_name
}

output "function_arn" {
  description = "ARN of the ingest Lambda function."
  value       = aws_lambda_function.ingest.arn
}

output "function_role_arn" {
  description = "ARN of the ingest function's execution role."
  value       = aws_iam_role.ingest.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the ingest function."
  value       = aws_cloudwatch_log_group.ingest.name
}

output "table_name" {
  description = "DynamoDB state table (window buffer, device state, device registry)."
  value       = aws_dynamodb_table.state.name
}

output "table_arn" {
  description = "ARN of the DynamoDB state table."
  value       = aws_dynamodb_table.state.arn
}

output "alerts_topic_arn" {
  description = "SNS topic of condition alerts."
  value       = aws_sns_topic.alerts.arn
}

output "alarms_topic_arn" {
  description = "SNS topic of operational alarms."
  value       = aws_sns_topic.alarms.arn
}

output "operators_policy_arn" {
  description = "Managed IAM policy for operators (act on alarm shadows, read condition shadows); null without IoT Core."
  value       = var.enable_iot ? aws_iam_policy.operators[0].arn : null
}

output "models_bucket" {
  description = "S3 bucket of models (models/), profiles (profiles/), SageMaker artifacts (models/sagemaker/) and calibrated baselines (baselines/)."
  value       = aws_s3_bucket.models.id
}

output "baselines_url" {
  description = "Where `vigil calibrate --to` publishes baselines for the function (s3://<models bucket>/baselines)."
  value       = "s3://${aws_s3_bucket.models.id}/baselines"
}

output "models_bucket_arn" {
  description = "ARN of the models bucket."
  value       = aws_s3_bucket.models.arn
}

output "archive_bucket" {
  description = "S3 bucket of archived windows (windows/)."
  value       = aws_s3_bucket.archive.id
}

output "access_logs_bucket" {
  description = "S3 bucket of the other buckets' server access logs."
  value       = aws_s3_bucket.access_logs.id
}

output "rejects_queue_url" {
  description = "SQS queue of messages the function rejected as malformed."
  value       = aws_sqs_queue.rejects.url
}

output "failures_queue_url" {
  description = "SQS queue of deliveries and invocations that failed for good (rule errors, async and stream failures)."
  value       = aws_sqs_queue.failures.url
}

output "ingest_queue_url" {
  description = "SQS ingest queue (sqs mode), else null."
  value       = one(aws_sqs_queue.ingest[*].url)
}

output "ingest_stream_name" {
  description = "Kinesis ingest stream (kinesis mode), else null."
  value       = one(aws_kinesis_stream.ingest[*].name)
}

output "kms_key_arn" {
  description = "ARN of the stack's KMS key."
  value       = aws_kms_key.this.arn
}

output "dashboard_url" {
  description = "CloudWatch dashboard of the pipeline (console host of the partition: aws, aws-us-gov, aws-cn)."
  value       = "https://${local.console_host}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this.dashboard_name}"
}

# Everything a user needs after `make deploy`: how to connect a device, where to look.

output "iot_endpoint" {
  description = "MQTT endpoint of the account (port 8883, mutual TLS): the --endpoint of the device agent."
  value       = module.vigil.iot_endpoint
}

output "device_topics" {
  description = "Topics of each device: telemetry (publish), basic_ingest (publish, cheaper), condition (subscribe), shadow_get / shadow_documents (the `condition` named shadow)."
  value       = module.vigil.device_topics
}

output "device_certificate_pems" {
  description = "Device certificate (PEM) by thing name: the --cert of the device agent."
  value       = module.vigil.device_certificate_pems
  sensitive   = true
}

output "device_private_keys" {
  description = "Generated private key (PEM) by thing name, for things without a CSR: the --key of the device agent. Also in the Terraform state, in plaintext."
  value       = module.vigil.device_private_keys
  sensitive   = true
}

output "device_setup" {
  description = "Per device, shell commands that install `vigil`, write the device's certificate and key under .vigil/devices/<thing>/ of the repository and start the device agent; they work from any directory."
  value       = module.vigil.device_setup
}

output "thing_names" {
  description = "Things of the fleet."
  value       = module.vigil.thing_names
}

output "device_policy_name" {
  description = "IoT policy attached to every device certificate."
  value       = module.vigil.device_policy_name
}

output "topic_rule_name" {
  description = "Telemetry topic rule."
  value       = module.vigil.topic_rule_name
}

output "function_name" {
  description = "Ingest Lambda function."
  value       = module.vigil.function_name
}

output "log_group_name" {
  description = "Log group of the ingest Lambda."
  value       = module.vigil.log_group_name
}

output "table_name" {
  description = "DynamoDB state table."
  value       = module.vigil.table_name
}

output "models_bucket" {
  description = "S3 bucket of models and profiles."
  value       = module.vigil.models_bucket
}

output "baselines_url" {
  description = "Where `vigil calibrate --to` publishes calibrated baselines for the function (docs/calibrate.md)."
  value       = module.vigil.baselines_url
}

output "archive_bucket" {
  description = "S3 bucket of archived windows."
  value       = module.vigil.archive_bucket
}

output "alerts_topic_arn" {
  description = "SNS topic of condition alerts."
  value       = module.vigil.alerts_topic_arn
}

output "alarms_topic_arn" {
  description = "SNS topic of operational alarms."
  value       = module.vigil.alarms_topic_arn
}

output "operators_policy_arn" {
  description = "Managed IAM policy to attach to operators' roles or groups: act on alarm shadows, read condition shadows."
  value       = module.vigil.operators_policy_arn
}

output "rejects_queue_url" {
  description = "SQS queue of rejected messages."
  value       = module.vigil.rejects_queue_url
}

output "failures_queue_url" {
  description = "SQS queue of failed deliveries and invocations."
  value       = module.vigil.failures_queue_url
}

output "ingest_queue_url" {
  description = "SQS ingest queue (ingest_mode = sqs), else null."
  value       = module.vigil.ingest_queue_url
}

output "ingest_stream_name" {
  description = "Kinesis ingest stream (ingest_mode = kinesis), else null."
  value       = module.vigil.ingest_stream_name
}

output "dashboard_url" {
  description = "CloudWatch dashboard of the pipeline."
  value       = module.vigil.dashboard_url
}

output "sagemaker_endpoint_name" {
  description = "SageMaker scoring endpoint, or null when SageMaker is off."
  value       = module.vigil.sagemaker_endpoint_name
}

output "next_steps" {
  description = "What to do now."
  value       = <<-EOT
    Set up and start a device (needs jq; the commands cd to the repository):
      terraform -chdir=infra/envs/aws output -json device_setup | jq -r '.["<thing>"]' | sh
    Watch results: AWS IoT console > MQTT test client > subscribe to dt/vigil/+/condition
    Walkthrough: docs/deploy.md
  EOT
}

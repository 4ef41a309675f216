output "iot_endpoint" {
  description = "MQTT endpoint of the account (port 8883, mutual TLS): the --endpoint of the device agent."
  value       = module.pipeline.iot_data_endpoint
}

output "device_topics" {
  description = "Topics of each device: telemetry (publish), basic_ingest (publish, cheaper), condition (subscribe), shadow_get / shadow_documents (the `condition` named shadow)."
  value       = module.fleet.device_topics
}

output "device_certificate_pems" {
  description = "Device certificate (PEM) by thing name: the --cert of the device agent."
  value       = module.fleet.certificate_pems
  sensitive   = true
}

output "device_private_keys" {
  description = "Generated private key (PEM) by thing name, for things without a CSR: the --key of the device agent."
  value       = module.fleet.private_keys
  sensitive   = true
}

output "device_setup" {
  description = "Shell commands that write a device's certificate and key files and start the device agent with them."
  value = {
    for thing in module.fleet.thing_names : thing => join("\n", concat(
      [
        "terraform output -json device_certificate_pems | jq -r '.[\"${thing}\"]' > ${thing}.cert.pem",
      ],
      contains(keys(var.certificate_csrs), thing) ? [] : [
        "terraform output -json device_private_keys | jq -r '.[\"${thing}\"]' > ${thing}.private.key && chmod 600 ${thing}.private.key",
      ],
      [
        "curl -sSo AmazonRootCA1.pem https://www.amazontrust.com/repository/AmazonRootCA1.pem",
        "vigil device --endpoint ${module.pipeline.iot_data_endpoint} --cert ${thing}.cert.pem --key ${thing}.private.key --ca AmazonRootCA1.pem --thing ${thing} --state .vigil/device/${thing} --batch 10 --source replay-hydraulic:models/samples/hydraulic --speed 1",
      ],
    ))
  }
}

output "thing_names" {
  description = "Things of the fleet."
  value       = module.fleet.thing_names
}

output "device_policy_name" {
  description = "IoT policy attached to every device certificate."
  value       = module.fleet.policy_name
}

output "topic_rule_name" {
  description = "Telemetry topic rule."
  value       = module.pipeline.topic_rule_name
}

output "function_name" {
  description = "Ingest Lambda function."
  value       = module.pipeline.function_name
}

output "log_group_name" {
  description = "Log group of the ingest Lambda."
  value       = module.pipeline.log_group_name
}

output "table_name" {
  description = "DynamoDB state table."
  value       = module.pipeline.table_name
}

output "models_bucket" {
  description = "S3 bucket of models and profiles."
  value       = module.pipeline.models_bucket
}

output "archive_bucket" {
  description = "S3 bucket of archived windows."
  value       = module.pipeline.archive_bucket
}

output "alerts_topic_arn" {
  description = "SNS topic of condition alerts."
  value       = module.pipeline.alerts_topic_arn
}

output "alarms_topic_arn" {
  description = "SNS topic of operational alarms."
  value       = module.pipeline.alarms_topic_arn
}

output "rejects_queue_url" {
  description = "SQS queue of rejected messages."
  value       = module.pipeline.rejects_queue_url
}

output "failures_queue_url" {
  description = "SQS queue of failed deliveries and invocations."
  value       = module.pipeline.failures_queue_url
}

output "dashboard_url" {
  description = "CloudWatch dashboard of the pipeline."
  value       = module.pipeline.dashboard_url
}

output "sagemaker_endpoint_name" {
  description = "SageMaker scoring endpoint, or null when SageMaker is off."
  value       = one(module.sagemaker[*].endpoint_name)
}

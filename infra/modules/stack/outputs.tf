output "iot_endpoint" {
  description = "MQTT endpoint of the account (port 8883, mutual TLS): the --endpoint of the device agent."
  value       = module.pipeline.iot_data_endpoint
}

output "device_topics" {
  description = "Topics of each device: telemetry (publish), basic_ingest (publish, cheaper), condition (subscribe), shadow_get / shadow_documents (the `condition` named shadow)."
  value       = var.enable_iot ? module.fleet[0].device_topics : {}
}

output "device_certificate_pems" {
  description = "Device certificate (PEM) by thing name: the --cert of the device agent."
  value       = var.enable_iot ? module.fleet[0].certificate_pems : {}
  sensitive   = true
}

output "device_private_keys" {
  description = "Generated private key (PEM) by thing name, for things without a CSR: the --key of the device agent. Also in the Terraform state, in plaintext."
  value       = var.enable_iot ? module.fleet[0].private_keys : {}
  sensitive   = true
}

output "device_setup" {
  description = "Per device, shell commands that install `vigil`, write the device's certificate and key under .vigil/devices/<thing>/ of the repository, and start the device agent replaying the committed hydraulic sample. They work from any directory (they cd to the repository first)."
  value = {
    for thing in local.thing_names : thing => join("\n", concat(
      [
        "cd '${local.repo_root}'",
        "cargo install --path crates/cli --locked  # builds and installs the `vigil` binary into ~/.cargo/bin (once)",
        "mkdir -p .vigil/devices/${thing} && chmod 700 .vigil/devices/${thing}",
        "terraform -chdir=${var.terraform_dir} output -json device_certificate_pems | jq -r '.[\"${thing}\"]' > .vigil/devices/${thing}/cert.pem",
      ],
      contains(keys(var.certificate_csrs), thing) ? [
        "# ${thing} has its own key (certificate_csrs): copy it, from where its CSR was made, to .vigil/devices/${thing}/private.key",
        ] : [
        "(umask 077 && terraform -chdir=${var.terraform_dir} output -json device_private_keys | jq -r '.[\"${thing}\"]' > .vigil/devices/${thing}/private.key)",
      ],
      [
        "curl -sSfo .vigil/AmazonRootCA1.pem https://www.amazontrust.com/repository/AmazonRootCA1.pem",
        "vigil device --endpoint ${module.pipeline.iot_data_endpoint} --cert .vigil/devices/${thing}/cert.pem --key .vigil/devices/${thing}/private.key --ca .vigil/AmazonRootCA1.pem --thing ${thing} --state .vigil/devices/${thing}/state --batch 10 --source replay-hydraulic:models/samples/hydraulic --speed 1",
      ],
    ))
  }
}

output "thing_names" {
  description = "Things of the fleet."
  value       = local.thing_names
}

output "device_policy_name" {
  description = "IoT policy attached to every device certificate; null without IoT."
  value       = var.enable_iot ? module.fleet[0].policy_name : null
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

output "baselines_url" {
  description = "Where `vigil calibrate --to` publishes calibrated baselines for the function (s3://<models bucket>/baselines)."
  value       = module.pipeline.baselines_url
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

output "operators_policy_arn" {
  description = "Managed IAM policy for operators (act on alarm shadows, read condition shadows); null without IoT Core."
  value       = module.pipeline.operators_policy_arn
}

output "rejects_queue_url" {
  description = "SQS queue of rejected messages."
  value       = module.pipeline.rejects_queue_url
}

output "failures_queue_url" {
  description = "SQS queue of failed deliveries and invocations."
  value       = module.pipeline.failures_queue_url
}

output "ingest_queue_url" {
  description = "SQS ingest queue (ingest_mode = sqs), else null: without IoT, send telemetry here (docs/deploy.md, LocalStack)."
  value       = module.pipeline.ingest_queue_url
}

output "ingest_stream_name" {
  description = "Kinesis ingest stream (ingest_mode = kinesis), else null."
  value       = module.pipeline.ingest_stream_name
}

output "dashboard_url" {
  description = "CloudWatch dashboard of the pipeline."
  value       = module.pipeline.dashboard_url
}

output "sagemaker_endpoint_name" {
  description = "SageMaker scoring endpoint, or null when SageMaker is off."
  value       = one(module.sagemaker[*].endpoint_name)
}

# The whole Vigil stack: the device fleet, the pipeline, and (optionally) a SageMaker endpoint.
# envs/aws and envs/localstack configure a provider and call this module.

locals {
  # The repository this stack is deployed from: the device set-up commands run there (the sample data, the
  # `vigil` sources and the Terraform state are all in it).
  repo_root = abspath("${path.module}/../../..")

  thing_names = var.enable_iot ? module.fleet[0].thing_names : []
}

module "pipeline" {
  source = "../pipeline"

  name = var.name
  tags = var.tags

  lambda_zip_path             = var.lambda_zip_path
  lambda_architecture         = var.lambda_architecture
  lambda_memory_mb            = var.lambda_memory_mb
  lambda_timeout_seconds      = var.lambda_timeout_seconds
  lambda_reserved_concurrency = var.lambda_reserved_concurrency
  log_level                   = var.log_level
  log_retention_days          = var.log_retention_days

  default_profile     = var.default_profile
  window_ttl_hours    = var.window_ttl_hours
  load_models_from_s3 = var.load_models_from_s3
  devices             = var.devices

  enable_iot        = var.enable_iot
  iot_data_endpoint = var.iot_data_endpoint

  sagemaker_endpoint_name = var.enable_sagemaker ? module.sagemaker[0].endpoint_name : ""
  sagemaker_fallback      = var.sagemaker_fallback

  ingest_mode             = var.ingest_mode
  batch_size              = var.batch_size
  batching_window_seconds = var.batching_window_seconds
  kinesis_shard_count     = var.kinesis_shard_count

  alert_emails              = var.alert_emails
  archive_expiration_days   = var.archive_expiration_days
  force_destroy_buckets     = var.force_destroy_buckets
  table_deletion_protection = var.table_deletion_protection
}

# Things, certificates and the device policy exist only where IoT Core does.
module "fleet" {
  source = "../fleet"
  count  = var.enable_iot ? 1 : 0

  name = var.name
  tags = var.tags

  devices                = var.devices
  certificate_csrs       = var.certificate_csrs
  allow_generated_keys   = var.allow_generated_keys
  basic_ingest_rule_name = module.pipeline.topic_rule_name
}

module "sagemaker" {
  source = "../sagemaker"
  count  = var.enable_sagemaker ? 1 : 0

  name = var.name
  tags = var.tags

  image_uri             = var.sagemaker_image_uri
  ecr_repository_arn    = var.sagemaker_ecr_repository_arn
  models_bucket         = module.pipeline.models_bucket
  model_data_key        = var.sagemaker_model_data_key
  kms_key_arn           = module.pipeline.kms_key_arn
  container_environment = var.sagemaker_container_environment
  serverless            = var.sagemaker_serverless
  log_retention_days    = var.log_retention_days
}

# Vigil on an AWS account. `make deploy` builds the Lambda package, then runs terraform apply here.
# Variables: see variables.tf and terraform.tfvars.example.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "vigil", Stack = var.name }, var.tags)
  }
}

locals {
  # The package `make build` writes for the chosen architecture, unless a path is given.
  lambda_zip_path = coalesce(var.lambda_zip_path, "${path.root}/../../../dist/ingest-${var.lambda_architecture}.zip")
}

module "vigil" {
  source = "../../modules/stack"

  name = var.name

  devices              = var.devices
  certificate_csrs     = var.certificate_csrs
  allow_generated_keys = var.allow_generated_keys

  lambda_zip_path             = local.lambda_zip_path
  lambda_architecture         = var.lambda_architecture
  lambda_memory_mb            = var.lambda_memory_mb
  lambda_timeout_seconds      = var.lambda_timeout_seconds
  lambda_reserved_concurrency = var.lambda_reserved_concurrency
  log_level                   = var.log_level
  log_retention_days          = var.log_retention_days

  default_profile     = var.default_profile
  window_ttl_hours    = var.window_ttl_hours
  load_models_from_s3 = var.load_models_from_s3

  ingest_mode             = var.ingest_mode
  batch_size              = var.batch_size
  batching_window_seconds = var.batching_window_seconds
  kinesis_shard_count     = var.kinesis_shard_count

  alert_emails              = var.alert_emails
  archive_expiration_days   = var.archive_expiration_days
  force_destroy_buckets     = var.force_destroy_buckets
  table_deletion_protection = var.table_deletion_protection

  enable_sagemaker                = var.enable_sagemaker
  sagemaker_image_uri             = var.sagemaker_image_uri
  sagemaker_ecr_repository_arn    = var.sagemaker_ecr_repository_arn
  sagemaker_model_data_key        = var.sagemaker_model_data_key
  sagemaker_container_environment = var.sagemaker_container_environment
  sagemaker_serverless            = var.sagemaker_serverless
  sagemaker_fallback              = var.sagemaker_fallback
}

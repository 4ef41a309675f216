# Vigil on LocalStack (https://docs.localstack.cloud), for users with Docker: every AWS service of the stack
# is pointed at the LocalStack edge endpoint. AWS IoT Core is a LocalStack Pro feature; without it, use
# ingest_mode = "sqs" and send telemetry straight to the ingest queue (see docs/deploy.md).

provider "aws" {
  region = var.region

  # LocalStack accepts any credentials; "test" is its convention (and selects account 000000000000).
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true

  endpoints {
    cloudwatch = var.localstack_endpoint
    dynamodb   = var.localstack_endpoint
    iam        = var.localstack_endpoint
    iot        = var.localstack_endpoint
    kinesis    = var.localstack_endpoint
    kms        = var.localstack_endpoint
    lambda     = var.localstack_endpoint
    logs       = var.localstack_endpoint
    s3         = var.localstack_endpoint
    sagemaker  = var.localstack_endpoint
    sns        = var.localstack_endpoint
    sqs        = var.localstack_endpoint
    sts        = var.localstack_endpoint
  }

  default_tags {
    tags = { Project = "vigil", Stack = var.name, Environment = "localstack" }
  }
}

module "vigil" {
  source = "../../modules/stack"

  name    = var.name
  devices = var.devices

  lambda_zip_path     = coalesce(var.lambda_zip_path, "${path.root}/../../../dist/ingest-${var.lambda_architecture}.zip")
  lambda_architecture = var.lambda_architecture
  log_level           = var.log_level
  log_retention_days  = 7
  ingest_mode         = var.ingest_mode

  # A throw-away stack: destroy removes everything.
  force_destroy_buckets = true
}

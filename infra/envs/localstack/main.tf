# Vigil on LocalStack, for users who have it (it runs in Docker and asks for an auth token): every AWS
# service of the stack is pointed at the LocalStack endpoint.
#
#   Community (default): enable_iot = false. No things, certificates, device policy nor topic rule; telemetry
#     goes straight to the ingest queue (ingest_mode = "sqs", the default) or stream ("kinesis"), in the
#     document the topic rule would have made (docs/deploy.md, "LocalStack").
#   Pro: enable_iot = true creates the fleet and the topic rule as on AWS (any ingest_mode).

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
    # IoT is only called with enable_iot = true (LocalStack Pro).
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

  name          = var.name
  devices       = var.devices
  terraform_dir = "infra/envs/localstack"

  # The function publishes results through the IoT data plane API: LocalStack's own (Pro), or a stand-in.
  enable_iot        = var.enable_iot
  iot_data_endpoint = coalesce(var.iot_data_endpoint, var.localstack_endpoint)

  lambda_zip_path     = coalesce(var.lambda_zip_path, "${path.root}/../../../dist/ingest-${var.lambda_architecture}.zip")
  lambda_architecture = var.lambda_architecture
  log_level           = var.log_level
  log_retention_days  = 7
  ingest_mode         = var.ingest_mode

  # A throw-away stack: destroy removes everything.
  force_destroy_buckets = true
}

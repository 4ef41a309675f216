# The cloud side of Vigil: IoT topic rule -> ingest Lambda -> DynamoDB / S3 / SNS / IoT data plane.
#
# Files of this module:
#   main.tf        data sources, names, the KMS key, the ingest Lambda and its invocation settings
#   ingest.tf      the topic rule and the three ingestion modes (direct, sqs, kinesis), their queues and role
#   iam.tf         the ingest Lambda's role, statement by statement
#   storage.tf     the DynamoDB state table with the device registry, the S3 buckets
#   alerts.tf      SNS topics for condition alerts and operational alarms
#   monitoring.tf  CloudWatch alarms and dashboard

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

# The account's MQTT/HTTPS data endpoint: devices connect to it, and the function publishes results to it.
# Without IoT (LocalStack Community has none) nothing is looked up and var.iot_data_endpoint is used.
data "aws_iot_endpoint" "data" {
  count = var.enable_iot ? 1 : 0

  endpoint_type = "iot:Data-ATS"
}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id
  dns_suffix = data.aws_partition.current.dns_suffix

  # The AWS console lives at a different host in each partition; others fall back to console.<dns suffix>.
  console_host = lookup({
    "aws"        = "console.aws.amazon.com"
    "aws-us-gov" = "console.amazonaws-us-gov.com"
    "aws-cn"     = "console.amazonaws.cn"
  }, local.partition, "console.${local.dns_suffix}")

  # Prefix of every IoT ARN in this account and region (topics, things, rules).
  iot_arn = "arn:${local.partition}:iot:${local.region}:${local.account_id}"

  function_name = "${var.name}-ingest"
  log_group     = "/aws/lambda/${local.function_name}"
  # IoT rule names allow only letters, digits and underscores.
  rule_name = "${replace(var.name, "-", "_")}_ingest"

  direct_mode  = var.ingest_mode == "direct"
  sqs_mode     = var.ingest_mode == "sqs"
  kinesis_mode = var.ingest_mode == "kinesis"

  # Layout of the package built by `make build` once Lambda unpacks it under /var/task.
  bundled_models_dir = "/var/task/models"
  ort_dylib_path     = "/var/task/lib/libonnxruntime.so.1.31.1"

  lambda_package_found = fileexists(var.lambda_zip_path)

  # Host name devices connect to, and the https URL the function publishes results to.
  iot_endpoint_address = var.enable_iot ? data.aws_iot_endpoint.data[0].endpoint_address : null
  iot_data_endpoint    = var.enable_iot ? "https://${data.aws_iot_endpoint.data[0].endpoint_address}" : var.iot_data_endpoint

  # The SageMaker module names its endpoint, and so its log group, after the stack.
  sagemaker_log_group = "/aws/sagemaker/Endpoints/${var.name}-scorer"

  # SageMaker stores endpoint names in lower case in its ARNs.
  sagemaker_enabled      = var.sagemaker_endpoint_name != ""
  sagemaker_endpoint_arn = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}:endpoint/${lower(var.sagemaker_endpoint_name)}"
}

# The profiles of default_profile and devices exist in the package, and SageMaker settings fit them: checked
# at plan time (the function checks the same at cold start, and alone when profiles come from S3).
module "profiles" {
  source = "../profiles"

  profiles_dir       = coalesce(var.profiles_dir, "${path.module}/../../../models/profiles")
  required_profiles  = concat([var.default_profile], values(var.devices))
  enforce            = !var.load_models_from_s3
  sagemaker_enabled  = local.sagemaker_enabled
  sagemaker_fallback = var.sagemaker_fallback
}

# --- KMS key for the stack's data at rest ------------------------------------

resource "aws_kms_key" "this" {
  description             = "Vigil ${var.name}: state table, buckets, SNS topics, Kinesis stream, logs and Lambda environment"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# Key policy. Principals of this account get access through their IAM policies (first statement, the AWS
# default); the two AWS services that act without an IAM role of ours get exactly what they need.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a KMS key policy: "*" as resource means this key, and the account root statement is the AWS default that lets IAM policies grant use of the key.
  #checkov:skip=CKV_AWS_111:This is a KMS key policy: "*" as resource means this key; write access is held by the account root only.
  #checkov:skip=CKV_AWS_356:This is a KMS key policy: "*" is the only resource a key policy can name and means this key.
  statement {
    sid = "AccountAdministersKeyThroughIam"
    # wildcard: AWS default key policy statement. In a key policy "*" as resource means this key; kms:* for the
    # account root delegates access control to IAM, without it the key could become unmanageable.
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsStackLogGroups"
    # wildcard: in a key policy "*" as resource means this key; the condition pins use to the log groups of the
    # ingest function and of the (optional) SageMaker endpoint.
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.${local.dns_suffix}"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group}",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.sagemaker_log_group}",
      ]
    }
  }

  statement {
    sid = "CloudWatchAlarmsPublishToEncryptedTopic"
    # wildcard: in a key policy "*" as resource means this key. CloudWatch alarms need these two actions to publish
    # to the encrypted alarms topic (AWS's documented statement; the topic's own policy admits only our alarms).
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

# --- ingest Lambda -----------------------------------------------------------

resource "aws_cloudwatch_log_group" "ingest" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_lambda_function" "ingest" {
  #checkov:skip=CKV_AWS_117:The function only calls public AWS service endpoints; a VPC would add NAT gateway cost and cold-start time and protect nothing.
  #checkov:skip=CKV_AWS_116:Failed asynchronous events go to the failures queue through the event invoke config's on-failure destination; a DLQ as well would deliver each of them twice.
  #checkov:skip=CKV_AWS_272:The package is built locally by `make build` (cargo lambda); code signing needs an AWS Signer profile that a first deployment does not have.
  function_name = local.function_name
  description   = "Vigil ingest: buffers telemetry windows, scores them, publishes the condition"
  role          = aws_iam_role.ingest.arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.lambda_architecture]

  filename         = var.lambda_zip_path
  source_code_hash = local.lambda_package_found ? filebase64sha256(var.lambda_zip_path) : null

  memory_size                    = var.lambda_memory_mb
  timeout                        = var.lambda_timeout_seconds
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  kms_key_arn                    = aws_kms_key.this.arn

  # Every variable the function reads (see crates/aws and functions/ingest), each taken from the resource it names.
  environment {
    variables = {
      VIGIL_TABLE_NAME         = aws_dynamodb_table.state.name
      VIGIL_ALERT_TOPIC_ARN    = aws_sns_topic.alerts.arn
      VIGIL_ARCHIVE_BUCKET     = aws_s3_bucket.archive.id
      VIGIL_MODELS_BUCKET      = var.load_models_from_s3 ? aws_s3_bucket.models.id : ""
      VIGIL_REJECTS_QUEUE_URL  = aws_sqs_queue.rejects.url
      VIGIL_IOT_DATA_ENDPOINT  = local.iot_data_endpoint
      VIGIL_DEFAULT_PROFILE    = var.default_profile
      VIGIL_REQUIRED_PROFILES  = join(",", module.profiles.required_profiles)
      VIGIL_MODELS_DIR         = local.bundled_models_dir
      VIGIL_SAGEMAKER_ENDPOINT = var.sagemaker_endpoint_name
      VIGIL_SAGEMAKER_FALLBACK = tostring(var.sagemaker_fallback)
      VIGIL_WINDOW_TTL_HOURS   = tostring(var.window_ttl_hours)
      VIGIL_BASELINES_BUCKET   = aws_s3_bucket.models.id
      VIGIL_BASELINE_TTL_S     = tostring(var.baseline_cache_seconds)
      ORT_DYLIB_PATH           = local.ort_dylib_path
      RUST_LOG                 = var.log_level
    }
  }

  tracing_config {
    mode = var.tracing_mode
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.ingest.name
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.ingest]

  lifecycle {
    precondition {
      condition     = local.lambda_package_found
      error_message = "No Lambda package at ${var.lambda_zip_path}: run `make build` first (it writes dist/ingest-<arch>.zip)."
    }

    precondition {
      condition     = var.enable_iot || !local.direct_mode
      error_message = "ingest_mode = \"direct\" needs the IoT topic rule (enable_iot = true); without IoT use \"sqs\" or \"kinesis\" and send telemetry to the queue or stream."
    }

    precondition {
      condition     = var.enable_iot || var.iot_data_endpoint != null
      error_message = "Without IoT (enable_iot = false) set iot_data_endpoint: the URL the function publishes results to."
    }
  }
}

# Asynchronous invocation (the direct mode's rule action): bounded retries, then the failures queue. This
# on-failure destination is the only one: a dead_letter_config on the function as well would deliver each
# failed event twice (and without the error the destination record carries).
resource "aws_lambda_function_event_invoke_config" "ingest" {
  function_name                = aws_lambda_function.ingest.function_name
  maximum_retry_attempts       = var.retry_attempts
  maximum_event_age_in_seconds = var.max_event_age_seconds

  destination_config {
    on_failure {
      destination = aws_sqs_queue.failures.arn
    }
  }
}

# direct mode: the topic rule, and only it, may invoke the function.
resource "aws_lambda_permission" "iot_rule" {
  count = local.direct_mode && var.enable_iot ? 1 : 0

  statement_id   = "AllowIotTopicRule"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.ingest.function_name
  principal      = "iot.amazonaws.com"
  source_arn     = aws_iot_topic_rule.ingest[0].arn
  source_account = local.account_id
}

# sqs mode: batches from the ingest queue; the function reports the failed messages only.
resource "aws_lambda_event_source_mapping" "sqs" {
  count = local.sqs_mode ? 1 : 0

  event_source_arn                   = aws_sqs_queue.ingest[0].arn
  function_name                      = aws_lambda_function.ingest.arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  lifecycle {
    precondition {
      condition     = var.batch_size <= 10 || var.batching_window_seconds >= 1
      error_message = "An SQS batch_size above 10 needs batching_window_seconds >= 1."
    }
  }
}

# kinesis mode: ordered batches per shard (the partition key is the device), failed records reported,
# a failing batch split in two until the bad record is isolated, then sent to the failures queue.
resource "aws_lambda_event_source_mapping" "kinesis" {
  count = local.kinesis_mode ? 1 : 0

  event_source_arn                   = aws_kinesis_stream.ingest[0].arn
  function_name                      = aws_lambda_function.ingest.arn
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error     = true
  maximum_retry_attempts             = var.retry_attempts
  maximum_record_age_in_seconds      = var.max_event_age_seconds
  parallelization_factor             = 1

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.failures.arn
    }
  }
}

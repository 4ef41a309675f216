# Optional SageMaker scoring: one model served from the models bucket by one endpoint.
# The ingest function may invoke this endpoint alone (its role is granted by the pipeline module).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id

  endpoint_name  = "${var.name}-scorer"
  models_arn     = "arn:${local.partition}:s3:::${var.models_bucket}"
  log_group_name = "/aws/sagemaker/Endpoints/${local.endpoint_name}"
  log_group_arn  = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"
  private_image  = var.ecr_repository_arn != null
  instance_based = !var.serverless
}

resource "aws_iam_role" "sagemaker" {
  name               = "${var.name}-sagemaker"
  description        = "Execution role of the Vigil SageMaker model"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "SageMakerService"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "ReadModelArtifact"
    actions   = ["s3:GetObject"]
    resources = ["${local.models_arn}/${var.model_data_key}"]
  }

  statement {
    sid       = "DecryptModelArtifact"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid = "WriteEndpointLogs"
    # wildcard: "<log group ARN>:*" names the group's streams, which SageMaker creates per instance/variant.
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${local.log_group_arn}:*"]
  }

  statement {
    sid = "PublishEndpointMetrics"
    # wildcard: AWS requires it. cloudwatch:PutMetricData supports no resource-level permissions; the condition
    # restricts it to SageMaker's endpoint namespace.
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/Endpoints"]
    }
  }
}

# The endpoint's log group, made here rather than by SageMaker on first use, so that it has a retention and is
# encrypted with the stack key (the key policy of the pipeline module admits this log group).
resource "aws_cloudwatch_log_group" "endpoint" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "serve-model"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}

# Private image of this account: pull from that one repository.
data "aws_iam_policy_document" "ecr" {
  count = local.private_image ? 1 : 0

  statement {
    sid       = "PullInferenceImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid = "EcrLogin"
    # wildcard: AWS requires it. ecr:GetAuthorizationToken supports no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "ecr" {
  count = local.private_image ? 1 : 0

  name   = "pull-image"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.ecr[0].json
}

resource "aws_sagemaker_model" "this" {
  #checkov:skip=CKV_AWS_370:Network isolation is on for instance-backed endpoints; serverless endpoints reject models that ask for it (the model is then isolated by the serverless runtime, which has no VPC access to give away).
  name               = "${var.name}-model"
  execution_role_arn = aws_iam_role.sagemaker.arn
  # Serverless endpoints do not support network isolation: CreateEndpoint fails for such a model.
  enable_network_isolation = !var.serverless

  primary_container {
    image          = var.image_uri
    model_data_url = "s3://${var.models_bucket}/${var.model_data_key}"
    environment    = var.container_environment
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.sagemaker, aws_iam_role_policy.ecr]
}

resource "aws_sagemaker_endpoint_configuration" "this" {
  name_prefix = "${var.name}-scorer-"
  # SageMaker accepts a volume key only for instance-backed variants.
  kms_key_arn = local.instance_based ? var.kms_key_arn : null

  production_variants {
    variant_name           = "primary"
    model_name             = aws_sagemaker_model.this.name
    initial_instance_count = local.instance_based ? var.instance_count : null
    instance_type          = local.instance_based ? var.instance_type : null

    dynamic "serverless_config" {
      for_each = var.serverless ? [1] : []
      content {
        memory_size_in_mb = var.serverless_memory_mb
        max_concurrency   = var.serverless_max_concurrency
      }
    }
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_sagemaker_endpoint" "this" {
  name                 = local.endpoint_name
  endpoint_config_name = aws_sagemaker_endpoint_configuration.this.name
  tags                 = var.tags

  depends_on = [aws_cloudwatch_log_group.endpoint]
}

# The ingest function's role: one statement per thing it touches, each on that thing alone.
# Statements that only some modes or options need live in their own documents, attached with count.

resource "aws_iam_role" "ingest" {
  name               = local.function_name
  description        = "Execution role of the Vigil ingest function"
  assume_role_policy = data.aws_iam_policy_document.ingest_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "ingest_assume" {
  statement {
    sid     = "LambdaService"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "ingest" {
  statement {
    sid = "WriteOwnLogs"
    # wildcard: "<log group ARN>:*" is how IAM names the log group's streams, which Lambda creates with generated names.
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.ingest.arn}:*"]
  }

  statement {
    sid       = "StateTable"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.state.arn]
  }

  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }

  statement {
    sid = "ArchiveClosedWindows"
    # wildcard: object keys under the windows/ prefix only (one object per closed window).
    # GetObject for HeadObject: a retry of the delivery that committed a close asks whether its
    # window is archived before sending the effects again; DeleteObject withdraws an archive
    # written together with an effect that failed, so that the retry sends again (docs/aws.md).
    # The bucket is versioned: a delete only adds a marker, the window stays recoverable.
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.archive.arn}/windows/*"]
  }

  statement {
    sid = "ReadModelsAndProfiles"
    # wildcard: object keys under the models/ and profiles/ prefixes only.
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.models.arn}/models/*", "${aws_s3_bucket.models.arn}/profiles/*"]
  }

  # No s3:ListBucket on purpose: nothing lists the bucket, and without it S3 answers a missing key with 403
  # instead of 404, which crates/aws treats the same (no profiles/index.json: bundled models; no baseline: not
  # calibrated yet).
  statement {
    sid = "ReadCalibratedBaselines"
    # wildcard: object keys under the baselines/ prefix only (baselines/<profile>/<device>.json, one per device).
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.models.arn}/baselines/*"]
  }

  statement {
    sid       = "SendRejectsAndFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.rejects.arn, aws_sqs_queue.failures.arn]
  }

  statement {
    sid = "PublishConditionResults"
    # wildcard: the thing-name segment. The function answers every device of the fleet, whose names are not
    # known to this module (devices may be registered later); the topic is otherwise fixed to the condition
    # result topic. The shadow is written with UpdateThingShadow (below), not by publishing to its topic.
    actions   = ["iot:Publish"]
    resources = ["${local.iot_arn}:topic/dt/vigil/*/condition"]
  }

  statement {
    sid = "UpdateConditionAndAlarmShadows"
    # wildcard: the thing-name segment, as above. For a named shadow IoT authorizes thing/<thing>/<shadow>,
    # so the resources are pinned to two named shadows: `condition` (the verdicts) and `alarm` (the
    # reported outcome of operators' actions, docs/operators.md). The function cannot touch other shadows.
    actions   = ["iot:UpdateThingShadow"]
    resources = ["${local.iot_arn}:thing/*/condition", "${local.iot_arn}:thing/*/alarm"]
  }

  statement {
    sid       = "UseStackKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }

  statement {
    sid = "WriteTraces"
    # wildcard: AWS requires it. X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level
    # permissions; "*" is the only resource they accept.
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "ingest" {
  name   = "ingest"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest.json
}

# sqs mode: consume the ingest queue.
data "aws_iam_policy_document" "ingest_sqs_source" {
  count = local.sqs_mode ? 1 : 0

  statement {
    sid       = "ConsumeIngestQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.ingest[0].arn]
  }
}

resource "aws_iam_role_policy" "ingest_sqs_source" {
  count = local.sqs_mode ? 1 : 0

  name   = "consume-sqs"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest_sqs_source[0].json
}

# kinesis mode: read the ingest stream (records are decrypted with the stack key, granted above).
data "aws_iam_policy_document" "ingest_kinesis_source" {
  count = local.kinesis_mode ? 1 : 0

  statement {
    sid       = "ConsumeIngestStream"
    actions   = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"]
    resources = [aws_kinesis_stream.ingest[0].arn]
  }
}

resource "aws_iam_role_policy" "ingest_kinesis_source" {
  count = local.kinesis_mode ? 1 : 0

  name   = "consume-kinesis"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest_kinesis_source[0].json
}

# SageMaker scoring: invoke the one endpoint, when there is one.
data "aws_iam_policy_document" "ingest_sagemaker" {
  count = local.sagemaker_enabled ? 1 : 0

  statement {
    sid       = "InvokeScoringEndpoint"
    actions   = ["sagemaker:InvokeEndpoint"]
    resources = [local.sagemaker_endpoint_arn]
  }
}

resource "aws_iam_role_policy" "ingest_sagemaker" {
  count = local.sagemaker_enabled ? 1 : 0

  name   = "invoke-sagemaker"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest_sagemaker[0].json
}

# Telemetry path: devices publish to dt/vigil/<thing>/telemetry (or the Basic Ingest topic
# $aws/rules/<rule>/dt/vigil/<thing>/telemetry, which reaches the rule with the prefix stripped), so
# topic(3) is the thing name, which the device policy pins to the certificate's thing.
#
# Identity only from the topic: the rule hands the device's bytes on as one opaque base64 field, next to
# `device` (topic(3)) and `received_at` (the broker's clock). Nothing a device writes can become a field
# of the event (`SELECT *` would let its own `device` or `Records` keys through), so a device cannot
# speak for another. The same document is the SQS message body and the Kinesis record.

resource "aws_iot_topic_rule" "ingest" {
  count = var.enable_iot ? 1 : 0

  name        = local.rule_name
  description = "Vigil telemetry to the ingest function (${var.ingest_mode} mode)"
  enabled     = true
  sql         = "SELECT encode(*, 'base64') AS payload, topic(3) AS device, timestamp() AS received_at FROM 'dt/vigil/+/telemetry'"
  sql_version = "2016-03-23"

  # direct: asynchronous invocation, retried then parked in the failures queue (event invoke config).
  dynamic "lambda" {
    for_each = local.direct_mode ? [1] : []
    content {
      function_arn = aws_lambda_function.ingest.arn
    }
  }

  # sqs: buffered and batched; the function reports failed messages, the queue redrives them.
  dynamic "sqs" {
    for_each = local.sqs_mode ? [1] : []
    content {
      queue_url  = aws_sqs_queue.ingest[0].url
      role_arn   = aws_iam_role.rule.arn
      use_base64 = false
    }
  }

  # kinesis: ordered per device, because the partition key is the thing name.
  dynamic "kinesis" {
    for_each = local.kinesis_mode ? [1] : []
    content {
      stream_name   = aws_kinesis_stream.ingest[0].name
      role_arn      = aws_iam_role.rule.arn
      partition_key = "$${topic(3)}"
    }
  }

  # Whatever the rule could not deliver lands in the failures queue, with the error.
  error_action {
    sqs {
      queue_url  = aws_sqs_queue.failures.url
      role_arn   = aws_iam_role.rule.arn
      use_base64 = false
    }
  }

  tags = var.tags
}

# --- queues ------------------------------------------------------------------

# Failures: the rule's error action, the function's asynchronous on-failure destination and DLQ,
# and Kinesis batches that exhausted their retries. Anything here needs an operator (alarm below).
resource "aws_sqs_queue" "failures" {
  name                      = "${var.name}-failures"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

# Rejects: messages the function judged malformed (VIGIL_REJECTS_QUEUE_URL). Kept for inspection.
resource "aws_sqs_queue" "rejects" {
  name                      = "${var.name}-rejects"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

# sqs mode: the ingest queue and its own dead-letter queue (same message format, so it can be redriven).
resource "aws_sqs_queue" "ingest" {
  count = local.sqs_mode ? 1 : 0

  name                       = "${var.name}-ingest"
  message_retention_seconds  = 345600
  visibility_timeout_seconds = var.lambda_timeout_seconds * 6 + var.batching_window_seconds
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.ingest_dlq[0].arn
    maxReceiveCount     = var.source_max_receive_count
  })

  tags = var.tags
}

resource "aws_sqs_queue" "ingest_dlq" {
  count = local.sqs_mode ? 1 : 0

  name                      = "${var.name}-ingest-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "ingest_dlq" {
  count = local.sqs_mode ? 1 : 0

  queue_url = aws_sqs_queue.ingest_dlq[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.ingest[0].arn]
  })
}

# --- kinesis mode ------------------------------------------------------------

resource "aws_kinesis_stream" "ingest" {
  count = local.kinesis_mode ? 1 : 0

  name             = "${var.name}-ingest"
  shard_count      = var.kinesis_shard_count == 0 ? null : var.kinesis_shard_count
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.this.arn

  stream_mode_details {
    stream_mode = var.kinesis_shard_count == 0 ? "ON_DEMAND" : "PROVISIONED"
  }

  tags = var.tags
}

# --- the rule's role ---------------------------------------------------------

resource "aws_iam_role" "rule" {
  name               = "${var.name}-iot-rule"
  description        = "Assumed by the Vigil topic rule to deliver telemetry and errors"
  assume_role_policy = data.aws_iam_policy_document.rule_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "rule_assume" {
  statement {
    sid     = "IotRuleOfThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["iot.amazonaws.com"]
    }

    # Confused-deputy guard: only our rule, in our account, may use the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = ["${local.iot_arn}:rule/${local.rule_name}"]
    }
  }
}

data "aws_iam_policy_document" "rule" {
  statement {
    sid       = "ErrorActionToFailuresQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failures.arn]
  }
}

resource "aws_iam_role_policy" "rule" {
  name   = "deliver"
  role   = aws_iam_role.rule.id
  policy = data.aws_iam_policy_document.rule.json
}

data "aws_iam_policy_document" "rule_sqs" {
  count = local.sqs_mode ? 1 : 0

  statement {
    sid       = "TelemetryToIngestQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ingest[0].arn]
  }
}

resource "aws_iam_role_policy" "rule_sqs" {
  count = local.sqs_mode ? 1 : 0

  name   = "deliver-sqs"
  role   = aws_iam_role.rule.id
  policy = data.aws_iam_policy_document.rule_sqs[0].json
}

data "aws_iam_policy_document" "rule_kinesis" {
  count = local.kinesis_mode ? 1 : 0

  statement {
    sid       = "TelemetryToIngestStream"
    actions   = ["kinesis:PutRecord"]
    resources = [aws_kinesis_stream.ingest[0].arn]
  }

  statement {
    sid       = "EncryptStreamRecords"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "rule_kinesis" {
  count = local.kinesis_mode ? 1 : 0

  name   = "deliver-kinesis"
  role   = aws_iam_role.rule.id
  policy = data.aws_iam_policy_document.rule_kinesis[0].json
}

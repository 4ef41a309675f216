# Alarms go to the alarms topic, in and out of ALARM.

resource "aws_cloudwatch_metric_alarm" "ingest_errors" {
  alarm_name          = "${local.function_name}-errors"
  alarm_description   = "The ingest function failed invocations (see log group ${local.log_group})."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.ingest.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.errors_alarm_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ingest_throttles" {
  alarm_name          = "${local.function_name}-throttles"
  alarm_description   = "The ingest function was throttled: raise its concurrency or the account quota."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.ingest.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "failures_depth" {
  alarm_name          = "${var.name}-failures-queue-depth"
  alarm_description   = "Telemetry could not be delivered or processed and waits in ${aws_sqs_queue.failures.name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.failures.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ingest_dlq_depth" {
  count = local.sqs_mode ? 1 : 0

  alarm_name          = "${var.name}-ingest-dlq-depth"
  alarm_description   = "Messages of the ingest queue failed ${var.source_max_receive_count} times and wait in ${aws_sqs_queue.ingest_dlq[0].name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.ingest_dlq[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "ingest_iterator_age" {
  count = local.kinesis_mode ? 1 : 0

  alarm_name          = "${local.function_name}-iterator-age"
  alarm_description   = "The ingest function lags more than a minute behind the Kinesis stream."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = aws_lambda_function.ingest.function_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 60000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

locals {
  fn = aws_lambda_function.ingest.function_name

  queue_names = concat(
    [aws_sqs_queue.failures.name, aws_sqs_queue.rejects.name],
    [for q in aws_sqs_queue.ingest : q.name],
    [for q in aws_sqs_queue.ingest_dlq : q.name],
  )

  dashboard_widgets = [
    {
      type = "metric", x = 0, y = 0, width = 12, height = 6
      properties = {
        title   = "Ingest invocations, errors, throttles"
        region  = local.region
        stat    = "Sum"
        period  = 60
        metrics = [for m in ["Invocations", "Errors", "Throttles"] : ["AWS/Lambda", m, "FunctionName", local.fn]]
      }
    },
    {
      type = "metric", x = 12, y = 0, width = 12, height = 6
      properties = {
        title  = "Ingest duration (ms)"
        region = local.region
        period = 60
        metrics = [
          ["AWS/Lambda", "Duration", "FunctionName", local.fn, { stat = "p50" }],
          ["AWS/Lambda", "Duration", "FunctionName", local.fn, { stat = "p99" }],
          ["AWS/Lambda", "Duration", "FunctionName", local.fn, { stat = "Maximum" }],
        ]
      }
    },
    {
      type = "metric", x = 0, y = 6, width = 12, height = 6
      properties = {
        title   = "Topic rule: messages matched, action failures"
        region  = local.region
        stat    = "Sum"
        period  = 60
        metrics = [for m in ["TopicMatch", "Failure"] : ["AWS/IoT", m, "RuleName", local.rule_name]]
      }
    },
    {
      type = "metric", x = 12, y = 6, width = 12, height = 6
      properties = {
        title   = "Queue depth"
        region  = local.region
        stat    = "Maximum"
        period  = 60
        metrics = [for q in local.queue_names : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q]]
      }
    },
    {
      type = "metric", x = 0, y = 12, width = 12, height = 6
      properties = {
        title  = "State table capacity used"
        region = local.region
        stat   = "Sum"
        period = 60
        metrics = [
          ["AWS/DynamoDB", "ConsumedReadCapacityUnits", "TableName", aws_dynamodb_table.state.name],
          ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", "TableName", aws_dynamodb_table.state.name],
        ]
      }
    },
    {
      type = "alarm", x = 12, y = 12, width = 12, height = 6
      properties = {
        title = "Alarms"
        alarms = concat(
          [
            aws_cloudwatch_metric_alarm.ingest_errors.arn,
            aws_cloudwatch_metric_alarm.ingest_throttles.arn,
            aws_cloudwatch_metric_alarm.failures_depth.arn,
          ],
          [for a in aws_cloudwatch_metric_alarm.ingest_dlq_depth : a.arn],
          [for a in aws_cloudwatch_metric_alarm.ingest_iterator_age : a.arn],
        )
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}

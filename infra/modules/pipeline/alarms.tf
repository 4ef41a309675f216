# Operators' alarm actions (docs/operators.md): an operator's tool writes the desired state of a
# device's named shadow `alarm`; IoT Core publishes the difference on the shadow's delta topic and
# this rule hands it to the ingest function, which applies it to the device state (idempotent per
# shadow version). The device is taken from the topic, never from the document. Devices cannot
# write their `alarm` shadow: the fleet's device policy allows no publish to it.

# Only with IoT Core (LocalStack Community has none: `enable_iot = false`).
resource "aws_iot_topic_rule" "alarm_actions" {
  count       = var.enable_iot ? 1 : 0
  name        = "${replace(var.name, "-", "_")}_alarm_actions"
  description = "Vigil operators' alarm actions (alarm shadow deltas) to the ingest function"
  enabled     = true
  sql         = "SELECT state, version, topic(3) AS thing, 'alarm' AS vigil_event FROM '$aws/things/+/shadow/name/alarm/update/delta'"
  sql_version = "2016-03-23"

  lambda {
    function_arn = aws_lambda_function.ingest.arn
  }

  error_action {
    sqs {
      queue_url  = aws_sqs_queue.failures.url
      role_arn   = aws_iam_role.rule.arn
      use_base64 = false
    }
  }

  tags = var.tags
}

resource "aws_lambda_permission" "alarm_rule" {
  count          = var.enable_iot ? 1 : 0
  statement_id   = "AllowIotAlarmActionsRule"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.ingest.function_name
  principal      = "iot.amazonaws.com"
  source_arn     = aws_iot_topic_rule.alarm_actions[0].arn
  source_account = local.account_id
}

# Who may act on alarms: a managed policy to attach to operators' roles or groups (the account
# chooses who). It allows reading and writing a device's `alarm` shadow (acknowledge, snooze,
# disable, enable, reset) and reading its `condition` shadow (the latest verdict), nothing else:
# not the device's telemetry, not other shadows, not the table.
data "aws_iam_policy_document" "operators" {
  statement {
    sid = "ActOnAlarms"
    # wildcard: the thing-name segment (operators act on every device of the fleet, registered
    # later than this module); the shadow is pinned to `alarm`.
    actions   = ["iot:GetThingShadow", "iot:UpdateThingShadow"]
    resources = ["${local.iot_arn}:thing/*/alarm"]
  }

  statement {
    sid = "ReadVerdicts"
    # wildcard: the thing-name segment, as above; read-only, pinned to the `condition` shadow.
    actions   = ["iot:GetThingShadow"]
    resources = ["${local.iot_arn}:thing/*/condition"]
  }
}

resource "aws_iam_policy" "operators" {
  count       = var.enable_iot ? 1 : 0
  name        = "${var.name}-operators"
  description = "Vigil operators: act on devices' alarm shadows, read their condition shadows"
  policy      = data.aws_iam_policy_document.operators.json
  tags        = var.tags
}

# The operators' view: alarm notifications by state, operators' actions, and each device's latest
# verdict, from the function's structured logs (Logs Insights; fields as the handler logs them).
resource "aws_cloudwatch_dashboard" "operators" {
  dashboard_name = "${var.name}-operators"
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "log", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Alarm notifications by alarm state"
          region = local.region
          view   = "table"
          query  = "SOURCE '${local.log_group}' | fields alarm_state | filter message = 'alert sent' | stats count(*) as notifications by alarm_state"
        }
      },
      {
        type = "log", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Operators' alarm actions by resulting state"
          region = local.region
          view   = "table"
          query  = "SOURCE '${local.log_group}' | fields state, action | filter message = 'alarm action' | stats count(*) as actions by state, action"
        }
      },
      {
        type = "log", x = 0, y = 6, width = 24, height = 8
        properties = {
          title  = "Per-device verdicts (latest window)"
          region = local.region
          view   = "table"
          query  = "SOURCE '${local.log_group}' | fields device, window, label, source | filter message = 'window closed' | stats latest(label) as verdict, latest(window) as last_window, count(*) as windows, max(@timestamp) as last_seen by device | sort device asc"
        }
      },
    ]
  })
}

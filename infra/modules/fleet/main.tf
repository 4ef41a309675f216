# The device fleet in AWS IoT: registry entries, identities, and the one policy they share.
#
# The policy is written once for every device with the policy variable ${iot:Connection.Thing.ThingName}:
# AWS IoT replaces it with the name of the thing the connection's certificate is attached to, so each
# device may connect only as itself and use only its own topics.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  iot_arn = "arn:${data.aws_partition.current.partition}:iot:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}"

  # IoT policy variable (the $$ keeps Terraform from interpolating it).
  thing = "$${iot:Connection.Thing.ThingName}"

  telemetry_topic    = "dt/vigil/${local.thing}/telemetry"
  basic_ingest_topic = "$aws/rules/${var.basic_ingest_rule_name}/dt/vigil/${local.thing}/telemetry"
  condition_topic    = "dt/vigil/${local.thing}/condition"
  shadow_topic       = "$aws/things/${local.thing}/shadow/name/condition"

  # What a device hears back: its condition results and the replies and updates of its `condition` shadow.
  inbound_topics = [
    local.condition_topic,
    "${local.shadow_topic}/get/accepted",
    "${local.shadow_topic}/get/rejected",
    "${local.shadow_topic}/update/accepted",
    "${local.shadow_topic}/update/rejected",
    "${local.shadow_topic}/update/delta",
    "${local.shadow_topic}/update/documents",
  ]
}

resource "aws_iot_thing_type" "device" {
  name = "${var.name}-device"

  properties {
    description           = "Vigil condition-monitored machine"
    searchable_attributes = ["profile"]
  }

  tags = var.tags
}

resource "aws_iot_thing_group" "fleet" {
  name = "${var.name}-fleet"

  properties {
    description = "Every device of the Vigil fleet ${var.name}"
  }

  tags = var.tags
}

resource "aws_iot_thing" "device" {
  for_each = var.devices

  name            = each.key
  thing_type_name = aws_iot_thing_type.device.name
  attributes      = { profile = each.value }
}

resource "aws_iot_thing_group_membership" "device" {
  for_each = var.devices

  thing_name       = aws_iot_thing.device[each.key].name
  thing_group_name = aws_iot_thing_group.fleet.name
}

# One certificate per device: signed from the device's CSR when given, else generated with its key pair. A
# generated private key is stored in the Terraform state in plaintext: docs/deploy.md, security notes.
resource "aws_iot_certificate" "device" {
  for_each = var.devices

  active = true
  csr    = lookup(var.certificate_csrs, each.key, null)
}

resource "aws_iot_thing_principal_attachment" "device" {
  for_each = var.devices

  thing     = aws_iot_thing.device[each.key].name
  principal = aws_iot_certificate.device[each.key].arn
}

resource "aws_iot_policy" "device" {
  name   = "${var.name}-device"
  policy = data.aws_iam_policy_document.device.json
  tags   = var.tags

  lifecycle {
    precondition {
      condition     = length(setsubtract(keys(var.certificate_csrs), keys(var.devices))) == 0
      error_message = "certificate_csrs names things that are not in devices: ${join(", ", setsubtract(keys(var.certificate_csrs), keys(var.devices)))}."
    }

    precondition {
      condition     = var.allow_generated_keys || length(setsubtract(keys(var.devices), keys(var.certificate_csrs))) == 0
      error_message = "allow_generated_keys is false, but these things have no CSR in certificate_csrs: ${join(", ", sort(setsubtract(keys(var.devices), keys(var.certificate_csrs))))}."
    }
  }
}

resource "aws_iot_policy_attachment" "device" {
  for_each = var.devices

  policy = aws_iot_policy.device.name
  target = aws_iot_certificate.device[each.key].arn
}

data "aws_iam_policy_document" "device" {
  statement {
    sid       = "ConnectAsOwnThingOnly"
    actions   = ["iot:Connect"]
    resources = ["${local.iot_arn}:client/${local.thing}"]

    # The certificate must be attached to the thing whose name is the client ID.
    condition {
      test     = "Bool"
      variable = "iot:Connection.Thing.IsAttached"
      values   = ["true"]
    }
  }

  statement {
    sid       = "PublishOwnTelemetry"
    actions   = ["iot:Publish"]
    resources = ["${local.iot_arn}:topic/${local.telemetry_topic}", "${local.iot_arn}:topic/${local.basic_ingest_topic}"]
  }

  # Asking for its own shadow's current document is read-only; updating the shadow is the pipeline's job.
  statement {
    sid       = "RequestOwnConditionShadow"
    actions   = ["iot:Publish"]
    resources = ["${local.iot_arn}:topic/${local.shadow_topic}/get"]
  }

  # No statement allows publishing to the `alarm` shadow: operators act through it
  # (docs/operators.md), never the device itself (implicit deny).

  statement {
    sid       = "SubscribeOwnResults"
    actions   = ["iot:Subscribe"]
    resources = [for t in local.inbound_topics : "${local.iot_arn}:topicfilter/${t}"]
  }

  statement {
    sid       = "ReceiveOwnResults"
    actions   = ["iot:Receive"]
    resources = [for t in local.inbound_topics : "${local.iot_arn}:topic/${t}"]
  }
}

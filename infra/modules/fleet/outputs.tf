output "thing_names" {
  description = "Names of the things of the fleet."
  value       = sort([for t in aws_iot_thing.device : t.name])
}

output "thing_group_name" {
  description = "Thing group holding every device."
  value       = aws_iot_thing_group.fleet.name
}

output "thing_type_name" {
  description = "Thing type of the devices."
  value       = aws_iot_thing_type.device.name
}

output "policy_name" {
  description = "IoT policy attached to every device certificate."
  value       = aws_iot_policy.device.name
}

output "certificate_arns" {
  description = "Certificate ARN by thing name."
  value       = { for k, c in aws_iot_certificate.device : k => c.arn }
}

output "certificate_pems" {
  description = "Device certificate (PEM) by thing name."
  value       = { for k, c in aws_iot_certificate.device : k => c.certificate_pem }
  sensitive   = true
}

output "private_keys" {
  description = "Generated private key (PEM) by thing name, for things without a CSR. Keep it secret: it is the device's identity."
  value       = { for k, c in aws_iot_certificate.device : k => c.private_key if !contains(keys(var.certificate_csrs), k) }
  sensitive   = true
}

output "device_topics" {
  description = "MQTT topics of each device: where it publishes and what it may subscribe to."
  value = {
    for thing in keys(var.devices) : thing => {
      telemetry        = "dt/vigil/${thing}/telemetry"
      basic_ingest     = "$aws/rules/${var.basic_ingest_rule_name}/dt/vigil/${thing}/telemetry"
      condition        = "dt/vigil/${thing}/condition"
      shadow_get       = "$aws/things/${thing}/shadow/name/condition/get"
      shadow_documents = "$aws/things/${thing}/shadow/name/condition/update/documents"
    }
  }
}

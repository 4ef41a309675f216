output "endpoint_name" {
  description = "Name of the scoring endpoint (VIGIL_SAGEMAKER_ENDPOINT)."
  value       = aws_sagemaker_endpoint.this.name
}

output "endpoint_arn" {
  description = "ARN of the scoring endpoint."
  value       = aws_sagemaker_endpoint.this.arn
}

output "model_name" {
  description = "Name of the SageMaker model."
  value       = aws_sagemaker_model.this.name
}

output "role_arn" {
  description = "Execution role of the SageMaker model."
  value       = aws_iam_role.sagemaker.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the endpoint."
  value       = aws_cloudwatch_log_group.endpoint.name
}

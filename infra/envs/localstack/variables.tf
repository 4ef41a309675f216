variable "localstack_endpoint" {
  description = "URL of the LocalStack edge endpoint."
  type        = string
  default     = "http://localhost:4566"

  validation {
    condition     = can(regex("^https?://[^/]+/?$", var.localstack_endpoint))
    error_message = "localstack_endpoint must be a URL such as http://localhost:4566."
  }
}

variable "region" {
  description = "Region LocalStack emulates."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "name" {
  description = "Name prefix for every resource of the stack."
  type        = string
  default     = "vigil"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters: lower case letters, digits and dashes, starting with a letter."
  }
}

variable "devices" {
  description = "The fleet: thing name => profile name."
  type        = map(string)
  default     = { "cooler-001" = "hydraulic-cooler" }
}

variable "lambda_architecture" {
  description = "Instruction set of the ingest Lambda (must match the package and suit the Docker host)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "lambda_zip_path" {
  description = "Path of the ingest package; null means ../../../dist/ingest-<lambda_architecture>.zip from this directory."
  type        = string
  default     = null
}

variable "log_level" {
  description = "RUST_LOG filter of the ingest Lambda."
  type        = string
  default     = "debug"
}

variable "enable_iot" {
  description = "LocalStack Pro only: create the IoT fleet and the topic rule. false (Community) leaves IoT out; telemetry then enters through the ingest queue or stream."
  type        = bool
  default     = false
}

variable "iot_data_endpoint" {
  description = "Where the function publishes results and shadows (the IoT data plane API); null means localstack_endpoint. LocalStack Community has no IoT data plane: point this at a stand-in the Lambda container can reach, e.g. moto server at http://host.docker.internal:5000."
  type        = string
  default     = null
}

variable "ingest_mode" {
  description = "sqs or kinesis (Community: send telemetry to the queue or stream); direct needs enable_iot = true."
  type        = string
  default     = "sqs"

  validation {
    condition     = contains(["direct", "sqs", "kinesis"], var.ingest_mode)
    error_message = "ingest_mode must be \"direct\", \"sqs\" or \"kinesis\"."
  }
}

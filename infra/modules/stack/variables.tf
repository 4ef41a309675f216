# Every knob a user of the stack may turn. The modules below validate them again in detail.

variable "name" {
  description = "Name prefix for every resource of the stack (3-20 of a-z, 0-9, -)."
  type        = string
  default     = "vigil"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters: lower case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "devices" {
  description = "The fleet: thing name => profile name (a profile of models/profiles/). Each device gets a thing, a certificate and a registry entry."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for thing, profile in var.devices : can(regex("^[a-zA-Z0-9_-]{1,128}$", thing)) && can(regex("^[a-z0-9][a-z0-9_-]{0,63}$", profile))])
    error_message = "devices keys must be thing names ([a-zA-Z0-9_-], 1-128) and values profile names ([a-z0-9_-])."
  }
}

variable "certificate_csrs" {
  description = "PEM certificate signing requests by thing name; things not listed get a generated key pair."
  type        = map(string)
  default     = {}
}

variable "allow_generated_keys" {
  description = "Let AWS IoT generate the key pair of devices that have no CSR in certificate_csrs. The private key is then in the Terraform state in plaintext (docs/deploy.md, security notes); false makes a CSR mandatory for every device."
  type        = bool
  default     = true
}

variable "enable_iot" {
  description = "Create the IoT fleet (things, certificates, device policy) and the topic rule. false for an emulator without IoT Core (LocalStack Community): use ingest_mode sqs or kinesis and send telemetry to the queue or stream."
  type        = bool
  default     = true
}

variable "iot_data_endpoint" {
  description = "URL the function publishes results to when enable_iot is false (e.g. the emulator's endpoint); ignored otherwise."
  type        = string
  default     = null
}

variable "terraform_dir" {
  description = "The environment directory, relative to the repository root, whose outputs the device set-up commands read."
  type        = string
  default     = "infra/envs/aws"
}

variable "lambda_zip_path" {
  description = "Path of the ingest package built by `make build` (dist/ingest-<arch>.zip)."
  type        = string

  validation {
    condition     = endswith(var.lambda_zip_path, ".zip")
    error_message = "lambda_zip_path must point at a .zip file."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the ingest Lambda: arm64 or x86_64 (must match the package)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of the ingest Lambda in MB."
  type        = number
  default     = 512
}

variable "lambda_timeout_seconds" {
  description = "Timeout of one ingest invocation in seconds."
  type        = number
  default     = 30
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of the ingest Lambda; -1 leaves it unreserved."
  type        = number
  default     = -1
}

variable "log_level" {
  description = "RUST_LOG filter of the ingest Lambda."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Retention of the ingest Lambda's logs in days."
  type        = number
  default     = 365
}

variable "default_profile" {
  description = "Profile of devices that have no registry entry."
  type        = string
  default     = "hydraulic-cooler"
}

variable "window_ttl_hours" {
  description = "Hours after which buffered samples of an unfinished window expire."
  type        = number
  default     = 48
}

variable "load_models_from_s3" {
  description = "Read models and profiles from the models bucket instead of the package."
  type        = bool
  default     = false
}

variable "ingest_mode" {
  description = "direct (rule invokes the Lambda), sqs (rule -> SQS -> Lambda) or kinesis (rule -> Kinesis -> Lambda)."
  type        = string
  default     = "direct"

  validation {
    condition     = contains(["direct", "sqs", "kinesis"], var.ingest_mode)
    error_message = "ingest_mode must be \"direct\", \"sqs\" or \"kinesis\"."
  }
}

variable "batch_size" {
  description = "Largest batch handed to the function in sqs and kinesis modes."
  type        = number
  default     = 100
}

variable "batching_window_seconds" {
  description = "Seconds records are gathered before an invocation in sqs and kinesis modes."
  type        = number
  default     = 1
}

variable "kinesis_shard_count" {
  description = "Shards of the Kinesis stream in kinesis mode; 0 selects on-demand capacity."
  type        = number
  default     = 1
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to condition alerts and operational alarms."
  type        = list(string)
  default     = []
}

variable "archive_expiration_days" {
  description = "Days after which archived windows are deleted; 0 keeps them."
  type        = number
  default     = 0
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets."
  type        = bool
  default     = false
}

variable "table_deletion_protection" {
  description = "Protect the DynamoDB state table against deletion."
  type        = bool
  default     = false
}

variable "enable_sagemaker" {
  description = "Deploy a SageMaker endpoint and let the function score with it."
  type        = bool
  default     = false
}

variable "sagemaker_image_uri" {
  description = "Inference container image of the SageMaker model (required when enable_sagemaker)."
  type        = string
  default     = null
}

variable "sagemaker_ecr_repository_arn" {
  description = "ECR repository of sagemaker_image_uri when it is a private repository of this account."
  type        = string
  default     = null
}

variable "sagemaker_model_data_key" {
  description = "Key of the model artifact in the models bucket."
  type        = string
  default     = "models/sagemaker/model.tar.gz"
}

variable "sagemaker_container_environment" {
  description = "Environment variables of the inference container."
  type        = map(string)
  default     = {}
}

variable "sagemaker_serverless" {
  description = "Use a serverless endpoint (true) or an instance-backed one (false)."
  type        = bool
  default     = true
}

variable "sagemaker_fallback" {
  description = "Fall back to the bundled ONNX model when the endpoint fails."
  type        = bool
  default     = true
}

variable "name" {
  description = "Name prefix of the model, endpoint configuration, endpoint and role."
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

variable "image_uri" {
  description = "Inference container image that serves the model (for ONNX models, e.g. the SageMaker Triton Inference Server image of your region, or your own image in ECR)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$", var.image_uri))
    error_message = "image_uri must be an ECR image URI: <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> (or @sha256:<digest>)."
  }
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository of image_uri when it is a private repository of this account (the role may pull from it alone); null for images owned by AWS."
  type        = string
  default     = null

  validation {
    condition     = var.ecr_repository_arn == null || can(regex("^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/.+$", var.ecr_repository_arn))
    error_message = "ecr_repository_arn must be null or an ECR repository ARN."
  }
}

variable "models_bucket" {
  description = "Name of the models bucket holding the model artifact."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.models_bucket))
    error_message = "models_bucket must be an S3 bucket name."
  }
}

variable "model_data_key" {
  description = "Key of the model artifact (a .tar.gz in the layout the container expects) in the models bucket, under models/."
  type        = string
  default     = "models/sagemaker/model.tar.gz"

  validation {
    condition     = startswith(var.model_data_key, "models/") && endswith(var.model_data_key, ".tar.gz")
    error_message = "model_data_key must be a .tar.gz key under models/."
  }
}

variable "kms_key_arn" {
  description = "ARN of the stack's KMS key: it encrypts the model artifact, and the endpoint's storage volume when instance-backed."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "container_environment" {
  description = "Environment variables of the inference container (e.g. SAGEMAKER_TRITON_DEFAULT_MODEL_NAME)."
  type        = map(string)
  default     = {}
}

variable "serverless" {
  description = "Serve from a serverless endpoint (scales to zero, pay per request) instead of instances."
  type        = bool
  default     = true
}

variable "serverless_memory_mb" {
  description = "Memory of the serverless endpoint in MB."
  type        = number
  default     = 2048

  validation {
    condition     = contains([1024, 2048, 3072, 4096, 5120, 6144], var.serverless_memory_mb)
    error_message = "serverless_memory_mb must be 1024, 2048, 3072, 4096, 5120 or 6144."
  }
}

variable "serverless_max_concurrency" {
  description = "Concurrent invocations the serverless endpoint accepts."
  type        = number
  default     = 5

  validation {
    condition     = var.serverless_max_concurrency >= 1 && var.serverless_max_concurrency <= 200 && floor(var.serverless_max_concurrency) == var.serverless_max_concurrency
    error_message = "serverless_max_concurrency must be a whole number between 1 and 200."
  }
}

variable "instance_type" {
  description = "Instance type of an instance-backed endpoint (serverless = false)."
  type        = string
  default     = "ml.m5.large"

  validation {
    condition     = can(regex("^ml\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be a SageMaker instance type such as ml.m5.large."
  }
}

variable "instance_count" {
  description = "Instances of an instance-backed endpoint (serverless = false)."
  type        = number
  default     = 1

  validation {
    condition     = var.instance_count >= 1 && floor(var.instance_count) == var.instance_count
    error_message = "instance_count must be a whole number >= 1."
  }
}

variable "log_retention_days" {
  description = "Retention of the endpoint's CloudWatch log group in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ..., 3653)."
  }
}

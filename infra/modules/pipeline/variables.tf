variable "name" {
  description = "Name prefix for every resource of the stack (lower case, digits and dashes)."
  type        = string
  default     = "vigil"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters: lower case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}

# --- ingest Lambda -----------------------------------------------------------

variable "lambda_zip_path" {
  description = "Path of the ingest Lambda package built by `make build` (dist/ingest-<arch>.zip: bootstrap, lib/libonnxruntime.so.1.31.1, models/)."
  type        = string

  validation {
    condition     = endswith(var.lambda_zip_path, ".zip")
    error_message = "lambda_zip_path must point at a .zip file."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the ingest Lambda; must match the package (arm64 is cheaper per GB-second)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of the ingest Lambda in MB (CPU scales with it)."
  type        = number
  default     = 512

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240 && floor(var.lambda_memory_mb) == var.lambda_memory_mb
    error_message = "lambda_memory_mb must be a whole number between 128 and 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of one ingest invocation in seconds."
  type        = number
  default     = 30

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 900 && floor(var.lambda_timeout_seconds) == var.lambda_timeout_seconds
    error_message = "lambda_timeout_seconds must be a whole number between 1 and 900."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of the ingest Lambda; -1 leaves it unreserved (new accounts with a concurrency quota of 10 cannot reserve any)."
  type        = number
  default     = -1

  validation {
    condition     = var.lambda_reserved_concurrency >= -1 && floor(var.lambda_reserved_concurrency) == var.lambda_reserved_concurrency
    error_message = "lambda_reserved_concurrency must be -1 (unreserved) or a whole number >= 0."
  }
}

variable "tracing_mode" {
  description = "X-Ray tracing mode of the ingest Lambda."
  type        = string
  default     = "Active"

  validation {
    condition     = contains(["Active", "PassThrough"], var.tracing_mode)
    error_message = "tracing_mode must be \"Active\" or \"PassThrough\"."
  }
}

variable "log_level" {
  description = "RUST_LOG filter of the ingest Lambda (e.g. info, debug, vigil_core=debug,info)."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_=,:.-]+$", var.log_level))
    error_message = "log_level must be a RUST_LOG filter such as \"info\" or \"vigil_core=debug,info\"."
  }
}

variable "log_retention_days" {
  description = "Retention of the ingest Lambda's CloudWatch log group in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ..., 3653)."
  }
}

# --- IoT ---------------------------------------------------------------------

variable "enable_iot" {
  description = "Create the IoT topic rule and look up the account's IoT data endpoint. false for an AWS emulator without IoT Core (LocalStack Community): telemetry then enters through the SQS queue or the Kinesis stream, and results go to iot_data_endpoint."
  type        = bool
  default     = true
}

variable "iot_data_endpoint" {
  description = "URL the function publishes results and shadows to when enable_iot is false (VIGIL_IOT_DATA_ENDPOINT); ignored otherwise, the account's iot:Data-ATS endpoint is used."
  type        = string
  default     = null

  validation {
    condition     = var.iot_data_endpoint == null || can(regex("^https?://[^/]+/?$", coalesce(var.iot_data_endpoint, "-")))
    error_message = "iot_data_endpoint must be null or an http(s) URL such as http://localhost:4566."
  }
}

# --- scoring -----------------------------------------------------------------

variable "profiles_dir" {
  description = "Directory of the profiles the Lambda package bundles; null means models/profiles of this repository, which `make build` packs. default_profile and the profiles of devices are checked against it at plan time."
  type        = string
  default     = null

  validation {
    condition     = var.profiles_dir == null || length(fileset(coalesce(var.profiles_dir, "."), "*.toml")) > 0
    error_message = "profiles_dir must be null or a directory holding *.toml profiles."
  }
}

variable "default_profile" {
  description = "Profile used for a device that has no entry in the device registry (VIGIL_DEFAULT_PROFILE)."
  type        = string
  default     = "hydraulic-cooler"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,63}$", var.default_profile))
    error_message = "default_profile must be a profile name: lower case letters, digits, '-' and '_'."
  }
}

variable "window_ttl_hours" {
  description = "Hours after which an open window's buffered samples expire from DynamoDB (VIGIL_WINDOW_TTL_HOURS)."
  type        = number
  default     = 48

  validation {
    condition     = var.window_ttl_hours >= 1 && var.window_ttl_hours <= 8760 && floor(var.window_ttl_hours) == var.window_ttl_hours
    error_message = "window_ttl_hours must be a whole number between 1 and 8760."
  }
}

variable "load_models_from_s3" {
  description = "Read models and profiles from the models bucket (models/, profiles/) instead of the ones bundled in the Lambda package."
  type        = bool
  default     = false
}

variable "baseline_cache_seconds" {
  description = "Seconds a calibrated baseline read from the models bucket (baselines/<profile>/<device>.json, published by `vigil calibrate`) is used before the function asks S3 for a newer one (VIGIL_BASELINE_TTL_S); 0 asks at every window."
  type        = number
  default     = 60

  validation {
    condition     = var.baseline_cache_seconds >= 0 && var.baseline_cache_seconds <= 3600 && floor(var.baseline_cache_seconds) == var.baseline_cache_seconds
    error_message = "baseline_cache_seconds must be a whole number between 0 and 3600."
  }
}

variable "sagemaker_endpoint_name" {
  description = "Name of the SageMaker endpoint the function may score with (VIGIL_SAGEMAKER_ENDPOINT; the role may invoke this endpoint alone); empty when SageMaker is off."
  type        = string
  default     = ""

  validation {
    condition     = var.sagemaker_endpoint_name == "" || can(regex("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", var.sagemaker_endpoint_name))
    error_message = "sagemaker_endpoint_name must be empty or a SageMaker endpoint name."
  }
}

variable "sagemaker_fallback" {
  description = "Fall back to the bundled ONNX model when the SageMaker endpoint fails (VIGIL_SAGEMAKER_FALLBACK)."
  type        = bool
  default     = true
}

# --- device registry ---------------------------------------------------------

variable "devices" {
  description = "Device registry: thing name => profile name. Each entry becomes the item pk=DEVICE#<thing>, sk=PROFILE in the state table."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for thing, profile in var.devices : can(regex("^[a-zA-Z0-9_-]{1,128}$", thing)) && can(regex("^[a-z0-9][a-z0-9_-]{0,63}$", profile))])
    error_message = "devices keys must be thing names ([a-zA-Z0-9_-], 1-128) and values profile names ([a-z0-9_-])."
  }
}

# --- ingestion path ----------------------------------------------------------

variable "ingest_mode" {
  description = "How the topic rule reaches the function: direct (rule invokes Lambda asynchronously), sqs (rule -> SQS -> batched Lambda) or kinesis (rule -> Kinesis -> batched Lambda, ordered per device)."
  type        = string
  default     = "direct"

  validation {
    condition     = contains(["direct", "sqs", "kinesis"], var.ingest_mode)
    error_message = "ingest_mode must be \"direct\", \"sqs\" or \"kinesis\"."
  }
}

variable "batch_size" {
  description = "Largest batch the event source mapping hands the function (sqs and kinesis modes)."
  type        = number
  default     = 100

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10000 && floor(var.batch_size) == var.batch_size
    error_message = "batch_size must be a whole number between 1 and 10000."
  }
}

variable "batching_window_seconds" {
  description = "How long the event source mapping gathers records before invoking (sqs and kinesis modes)."
  type        = number
  default     = 1

  validation {
    condition     = var.batching_window_seconds >= 0 && var.batching_window_seconds <= 300 && floor(var.batching_window_seconds) == var.batching_window_seconds
    error_message = "batching_window_seconds must be a whole number between 0 and 300."
  }
}

variable "source_max_receive_count" {
  description = "Receives of one message of the SQS ingest queue before it moves to the ingest dead-letter queue (sqs mode)."
  type        = number
  default     = 5

  validation {
    condition     = var.source_max_receive_count >= 1 && var.source_max_receive_count <= 1000 && floor(var.source_max_receive_count) == var.source_max_receive_count
    error_message = "source_max_receive_count must be a whole number between 1 and 1000."
  }
}

variable "kinesis_shard_count" {
  description = "Shards of the Kinesis ingest stream (kinesis mode); 0 selects on-demand capacity, which costs more for a small fleet."
  type        = number
  default     = 1

  validation {
    condition     = var.kinesis_shard_count >= 0 && var.kinesis_shard_count <= 500 && floor(var.kinesis_shard_count) == var.kinesis_shard_count
    error_message = "kinesis_shard_count must be a whole number between 0 (on-demand) and 500."
  }
}

variable "kinesis_retention_hours" {
  description = "Retention of the Kinesis ingest stream in hours (kinesis mode)."
  type        = number
  default     = 24

  validation {
    condition     = var.kinesis_retention_hours >= 24 && var.kinesis_retention_hours <= 8760 && floor(var.kinesis_retention_hours) == var.kinesis_retention_hours
    error_message = "kinesis_retention_hours must be a whole number between 24 and 8760."
  }
}

variable "retry_attempts" {
  description = "Retries of a failed asynchronous invocation (direct mode) or of a failed Kinesis batch (kinesis mode)."
  type        = number
  default     = 2

  validation {
    condition     = var.retry_attempts >= 0 && var.retry_attempts <= 2 && floor(var.retry_attempts) == var.retry_attempts
    error_message = "retry_attempts must be 0, 1 or 2."
  }
}

variable "max_event_age_seconds" {
  description = "Age after which a pending event is sent to the failures queue instead of being retried."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_event_age_seconds >= 60 && var.max_event_age_seconds <= 21600 && floor(var.max_event_age_seconds) == var.max_event_age_seconds
    error_message = "max_event_age_seconds must be a whole number between 60 and 21600."
  }
}

# --- storage -----------------------------------------------------------------

variable "archive_ia_days" {
  description = "Days after which archived windows move to S3 Standard-IA."
  type        = number
  default     = 30

  validation {
    condition     = var.archive_ia_days >= 30 && floor(var.archive_ia_days) == var.archive_ia_days
    error_message = "archive_ia_days must be a whole number >= 30 (S3's minimum for Standard-IA)."
  }
}

variable "archive_glacier_days" {
  description = "Days after which archived windows move to S3 Glacier Instant Retrieval (must exceed archive_ia_days by 30 or more)."
  type        = number
  default     = 90

  validation {
    condition     = var.archive_glacier_days >= 60 && floor(var.archive_glacier_days) == var.archive_glacier_days
    error_message = "archive_glacier_days must be a whole number >= 60."
  }
}

variable "archive_expiration_days" {
  description = "Days after which archived windows are deleted; 0 keeps them forever."
  type        = number
  default     = 0

  validation {
    condition     = var.archive_expiration_days >= 0 && floor(var.archive_expiration_days) == var.archive_expiration_days
    error_message = "archive_expiration_days must be a whole number >= 0."
  }
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept in the versioned buckets."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1 && floor(var.noncurrent_version_days) == var.noncurrent_version_days
    error_message = "noncurrent_version_days must be a whole number >= 1."
  }
}

variable "access_log_days" {
  description = "Days S3 server access logs are kept."
  type        = number
  default     = 90

  validation {
    condition     = var.access_log_days >= 1 && floor(var.access_log_days) == var.access_log_days
    error_message = "access_log_days must be a whole number >= 1."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete the buckets with their objects and versions. Leave false for a stack whose archive matters."
  type        = bool
  default     = false
}

variable "table_deletion_protection" {
  description = "Protect the DynamoDB state table against deletion (set false before `terraform destroy`)."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the stack's KMS key is deleted after destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30 && floor(var.kms_deletion_window_days) == var.kms_deletion_window_days
    error_message = "kms_deletion_window_days must be a whole number between 7 and 30."
  }
}

# --- alerts and alarms -------------------------------------------------------

variable "alert_emails" {
  description = "E-mail addresses subscribed to the condition alerts topic and the operational alarms topic (each must confirm by e-mail)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@[:space:]]+@[^@[:space:]]+\\.[^@[:space:]]+$", e))])
    error_message = "alert_emails must hold e-mail addresses."
  }
}

variable "errors_alarm_threshold" {
  description = "Function errors in 5 minutes that raise the errors alarm."
  type        = number
  default     = 1

  validation {
    condition     = var.errors_alarm_threshold >= 1
    error_message = "errors_alarm_threshold must be >= 1."
  }
}

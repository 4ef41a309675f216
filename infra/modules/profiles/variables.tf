variable "profiles_dir" {
  description = "Directory of the profiles the Lambda package bundles (models/profiles of the repository)."
  type        = string

  validation {
    condition     = length(fileset(var.profiles_dir, "*.toml")) > 0
    error_message = "profiles_dir holds no *.toml profile."
  }
}

variable "required_profiles" {
  description = "Profiles the stack scores with: default_profile and every profile of devices."
  type        = list(string)

  validation {
    condition     = alltrue([for p in var.required_profiles : can(regex("^[a-z0-9][a-z0-9_-]{0,63}$", p))])
    error_message = "Profile names are lower case letters, digits, '-' and '_'."
  }
}

variable "enforce" {
  description = "Fail the plan when a required profile is not in profiles_dir; false when the function loads its profiles from the models bucket instead (the cold start checks those)."
  type        = bool
  default     = true
}

variable "sagemaker_enabled" {
  description = "A SageMaker endpoint is deployed for the function (VIGIL_SAGEMAKER_ENDPOINT is set)."
  type        = bool
  default     = false
}

variable "sagemaker_fallback" {
  description = "SageMaker profiles fall back to their bundled ONNX model (VIGIL_SAGEMAKER_FALLBACK)."
  type        = bool
  default     = false
}

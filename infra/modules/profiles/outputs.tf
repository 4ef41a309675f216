output "kinds" {
  description = "Scorer kind of each bundled profile, by profile name."
  value       = local.kinds
}

output "required_profiles" {
  description = "The required profiles, sorted and without repeats, once they passed the checks (VIGIL_REQUIRED_PROFILES)."
  value       = sort(distinct(var.required_profiles))

  precondition {
    condition     = !var.enforce || length(local.unknown) == 0
    error_message = "Unknown profiles: ${join(", ", local.unknown)} (used by default_profile or devices). ${var.profiles_dir} has: ${join(", ", sort(keys(local.kinds)))}."
  }

  precondition {
    condition     = !var.enforce || !var.sagemaker_enabled || length(local.sagemaker_used) > 0
    error_message = "enable_sagemaker is true, but no profile of default_profile or devices has scorer kind = \"sagemaker\": the endpoint would never be called. Add a SageMaker profile to ${var.profiles_dir} and give it to a device (docs/deploy.md, \"SageMaker scoring\")."
  }

  precondition {
    condition     = !var.enforce || !(var.sagemaker_enabled && var.sagemaker_fallback) || length(local.sagemaker_unguarded) == 0
    error_message = "sagemaker_fallback is true, but the SageMaker profiles ${join(", ", local.sagemaker_unguarded)} name no fallback_model. Add scorer.fallback_model to them, or set sagemaker_fallback = false."
  }
}

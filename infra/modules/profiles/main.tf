# The profiles the Lambda package bundles (models/profiles/*.toml), read at plan time, and the checks the
# function makes at cold start (functions/ingest/src/config.rs) made here as well, so that a typo in
# default_profile or devices fails `terraform plan` instead of every cold start after a "successful" apply.
#
# No provider: this module is plain Terraform, which is why infra/tests can plan it offline.

locals {
  texts = { for f in fileset(var.profiles_dir, "*.toml") : f => file("${var.profiles_dir}/${f}") }

  # A profile's name is its `name` key (what the function and `devices` use), not its file name. The
  # `[scorer]` table is the text between its header and the next table header.
  scorers = {
    for f, t in local.texts : try(regex("(?m)^name\\s*=\\s*[\"']([^\"']+)[\"']", t)[0], trimsuffix(f, ".toml")) => one([
      for section in split("\n[", "\n${t}") : section if startswith(section, "scorer]")
    ])
  }
  kinds = { for name, s in local.scorers : name => try(regex("(?m)^kind\\s*=\\s*[\"'](\\w+)[\"']", s)[0], "") }
  with_fallback = [
    for name, s in local.scorers : name if can(regex("(?m)^fallback_model\\s*=\\s*[\"'][^\"']+[\"']", s))
  ]

  unknown             = [for p in var.required_profiles : p if !contains(keys(local.kinds), p)]
  sagemaker_used      = [for p in var.required_profiles : p if lookup(local.kinds, p, "") == "sagemaker"]
  sagemaker_unguarded = [for p in local.sagemaker_used : p if !contains(local.with_fallback, p)]
}

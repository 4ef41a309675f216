# --- DynamoDB: window buffer, device state and device registry ----------------

resource "aws_dynamodb_table" "state" {
  name                        = "${var.name}-state"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  # Buffered samples of windows that never close expire on their own (VIGIL_WINDOW_TTL_HOURS).
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  tags = var.tags
}

# Device registry: the function reads a device's profile from pk=DEVICE#<thing>, sk=PROFILE and falls back
# to VIGIL_DEFAULT_PROFILE when there is none.
resource "aws_dynamodb_table_item" "device_profile" {
  for_each = var.devices

  table_name = aws_dynamodb_table.state.name
  hash_key   = aws_dynamodb_table.state.hash_key
  range_key  = aws_dynamodb_table.state.range_key

  item = jsonencode({
    pk      = { S = "DEVICE#${each.key}" }
    sk      = { S = "PROFILE" }
    profile = { S = each.value }
  })
}

# --- S3 ----------------------------------------------------------------------
# Three buckets, each private (public access blocked, ACLs disabled, TLS only), encrypted, versioned and
# with lifecycle rules:
#   models       model files and profiles (models/, profiles/), SageMaker artifacts (models/sagemaker/),
#                calibrated baselines (baselines/<profile>/<device>.json, from `vigil calibrate`)
#   archive      closed windows for retraining (windows/)
#   access_logs  S3 server access logs of the two others

locals {
  bucket_suffix = "${local.account_id}-${local.region}"

  # S3's minimum billable object size in Standard-IA and Glacier Instant Retrieval (128 KiB).
  transition_min_object_bytes = 131072
}

# models ----------------------------------------------------------------------

resource "aws_s3_bucket" "models" {
  #checkov:skip=CKV_AWS_144:Models are rebuilt from the repository and the archive; a replica in a second region would double cost for data that is not unique.
  bucket        = "${var.name}-models-${local.bucket_suffix}"
  force_destroy = var.force_destroy_buckets
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "models" {
  bucket                  = aws_s3_bucket.models.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "models" {
  bucket = aws_s3_bucket.models.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "models" {
  bucket = aws_s3_bucket.models.id

  rule {
    bucket_key_enabled = true

    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
  }
}

resource "aws_s3_bucket_versioning" "models" {
  bucket = aws_s3_bucket.models.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "models" {
  bucket = aws_s3_bucket.models.id

  rule {
    id     = "expire-replaced-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.models]
}

resource "aws_s3_bucket_logging" "models" {
  bucket        = aws_s3_bucket.models.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "models/"
}

# Events of new model and profile objects go to EventBridge, where a roll-out automation can pick them up.
resource "aws_s3_bucket_notification" "models" {
  bucket      = aws_s3_bucket.models.id
  eventbridge = true
}

resource "aws_s3_bucket_policy" "models" {
  bucket     = aws_s3_bucket.models.id
  policy     = data.aws_iam_policy_document.models_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.models]
}

data "aws_iam_policy_document" "models_bucket" {
  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    # wildcard: a Deny that refuses every S3 action on the bucket and its objects over plain HTTP.
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.models.arn, "${aws_s3_bucket.models.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# archive ---------------------------------------------------------------------

resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_144:The archive is training data, not a system of record; versioning and lifecycle rules protect it, cross-region replication is left to users who need it.
  bucket        = "${var.name}-archive-${local.bucket_suffix}"
  force_destroy = var.force_destroy_buckets
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    bucket_key_enabled = true

    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
  }
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id

  versioning_configuration {
    status = "Enabled"
  }
}

# A closed window is a few KB. Standard-IA and Glacier IR bill every object as at least 128 KB, so moving
# small windows would raise their cost: only objects above 128 KB change storage class (the filter, and the
# bucket-wide default made explicit), the rest stay in Standard until they expire.
resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  #checkov:skip=CKV_AWS_300:The expire-replaced-versions rule (filter {}: every object) aborts incomplete uploads; S3 refuses that action in the object-size rule, and checkov does not see past the dynamic rule.
  bucket = aws_s3_bucket.archive.id

  transition_default_minimum_object_size = "all_storage_classes_128K"

  rule {
    id     = "tier-large-archive-objects"
    status = "Enabled"

    filter {
      and {
        prefix                   = "windows/"
        object_size_greater_than = local.transition_min_object_bytes
      }
    }

    transition {
      days          = var.archive_ia_days
      storage_class = "STANDARD_IA"
    }

    transition {
      days          = var.archive_glacier_days
      storage_class = "GLACIER_IR"
    }
  }

  dynamic "rule" {
    for_each = var.archive_expiration_days > 0 ? [var.archive_expiration_days] : []
    content {
      id     = "expire-closed-windows"
      status = "Enabled"

      filter {
        prefix = "windows/"
      }

      expiration {
        days = rule.value
      }
    }
  }

  rule {
    id     = "expire-replaced-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]

  lifecycle {
    precondition {
      condition     = var.archive_glacier_days >= var.archive_ia_days + 30
      error_message = "archive_glacier_days must be at least archive_ia_days + 30 (S3 keeps objects 30 days in Standard-IA)."
    }

    precondition {
      condition     = var.archive_expiration_days == 0 || var.archive_expiration_days > var.archive_glacier_days
      error_message = "archive_expiration_days must be 0 (keep) or later than archive_glacier_days."
    }
  }
}

resource "aws_s3_bucket_logging" "archive" {
  bucket        = aws_s3_bucket.archive.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "archive/"
}

# Events of newly archived windows go to EventBridge, where a retraining pipeline can pick them up.
resource "aws_s3_bucket_notification" "archive" {
  bucket      = aws_s3_bucket.archive.id
  eventbridge = true
}

resource "aws_s3_bucket_policy" "archive" {
  bucket     = aws_s3_bucket.archive.id
  policy     = data.aws_iam_policy_document.archive_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.archive]
}

data "aws_iam_policy_document" "archive_bucket" {
  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    # wildcard: a Deny that refuses every S3 action on the bucket and its objects over plain HTTP.
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# access logs -----------------------------------------------------------------

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself; logging it into itself would loop.
  #checkov:skip=CKV_AWS_144:Access logs are kept for a bounded time (access_log_days); replicating them to a second region is not worth the cost.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new access-log objects; event notifications would only add noise.
  #checkov:skip=CKV_AWS_145:S3 server access log delivery supports only SSE-S3 (AES256) on the target bucket, not SSE-KMS.
  bucket        = "${var.name}-access-logs-${local.bucket_suffix}"
  force_destroy = var.force_destroy_buckets
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = data.aws_iam_policy_document.access_logs_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

data "aws_iam_policy_document" "access_logs_bucket" {
  statement {
    sid = "S3LogDeliveryFromOurBuckets"
    # wildcard: log object keys under the two prefixes the source buckets write to.
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/models/*", "${aws_s3_bucket.access_logs.arn}/archive/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.models.arn, aws_s3_bucket.archive.arn]
    }
  }

  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    # wildcard: a Deny that refuses every S3 action on the bucket and its objects over plain HTTP.
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

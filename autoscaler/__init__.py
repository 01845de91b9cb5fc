"""The autoscaler: observe -> plan -> reconcile, the cluster launcher, and the rayctl CLI."""

import sys

import structlog

if not structlog.is_configured():
    # logs go to stderr: stdout belongs to command output (`rayctl status --json` and friends)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))

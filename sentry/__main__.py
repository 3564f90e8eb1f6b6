"""`python -m sentry` is the `sentry` command."""
from sentry.cli import main

main()

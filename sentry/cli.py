"""Placeholder: the real CLI is being written."""
import sys


def main():
    print("sentry: not built yet", file=sys.stderr)
    sys.exit(125)

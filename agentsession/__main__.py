"""``python -m agentsession`` and the ``agentsession`` console script.

The command line (and click) is imported only when it runs, so ``import agentsession``
stays light.
"""

from __future__ import annotations

__all__ = ("main",)


def main() -> None:
    """Run the ``agentsession`` command line; exits with its status code."""
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()

"""`python -m cli ...` is `multitask ...`."""

from cli.main import main

main()

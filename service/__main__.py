"""`python -m service` is the `kb-ingest` command."""

from service.cli import main

main()

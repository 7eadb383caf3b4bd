"""`python -m bot` is the same as the `wanbot` command."""

from bot.cli import main

raise SystemExit(main())

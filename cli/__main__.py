"""`python -m cli`: the `filterviz` command."""

import sys

from cli.main import main

sys.exit(main())

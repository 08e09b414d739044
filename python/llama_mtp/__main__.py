"""``python -m llama_mtp`` runs the ``llama-mtp`` command."""

import sys

from .cli import main

sys.exit(main())

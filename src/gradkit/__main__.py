"""``python -m gradkit`` runs the ``gradkit`` command."""

import sys

from gradkit.cli import main

sys.exit(main())

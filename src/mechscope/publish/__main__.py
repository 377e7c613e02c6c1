"""``python -m mechscope.publish``: see `mechscope.publish.cli`."""

import sys

from .cli import main

sys.exit(main())

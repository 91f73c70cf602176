"""``python -m finemem_lib.data``: prepare a profile's data (see :mod:`finemem_lib.data.cli`)."""

import sys

from finemem_lib.data.cli import main

sys.exit(main())
